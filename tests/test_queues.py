"""Named queues and priorities: which queues a worker serves, in what order, and which job runs first.

Driven with ``run_once()``, on every kind of store where the store decides (the order of claims,
the pending limit); the weighted order with a seeded random source.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_asyncendpoints import AsyncEndpoints, ConfigurationError, JobContext, JobStatus
from flask_asyncendpoints.cli import cli
from flask_asyncendpoints.config import QueuePlan, Settings, parse_queues, set_defaults
from flask_asyncendpoints.stores import Store
from flask_asyncendpoints.worker import Worker
from flask_asyncendpoints.worker.queues import QueueOrder

from .conftest import FakeClock


class Recorder:
    """Handlers that record the order in which their jobs ran (by the body's ``n``)."""

    def __init__(self, ae: AsyncEndpoints, *queues: str) -> None:
        self.ran: list[Any] = []
        for queue in queues:
            ae.handler(f"In{queue.title()}", queue=queue)(self)

    def __call__(self, ctx: JobContext) -> None:
        self.ran.append(ctx.request)


def worker_for(app: Flask, queues: str | None) -> Worker:
    state = app.extensions["asyncendpoints"]
    plan = parse_queues(queues) if queues is not None else state.worker_queues()
    return Worker(app, state.settings, state.store, state.registry.find_handler, queues=plan)


class TestQueuePlans:
    def test_names_give_a_strict_order(self) -> None:
        assert parse_queues("high, default") == QueuePlan(("high", "default"))
        assert parse_queues(["high", "default"]) == QueuePlan(("high", "default"))
        assert parse_queues(None) is None

    def test_weights_in_every_spelling(self) -> None:
        expected = QueuePlan(("high", "default"), (5.0, 1.0))
        assert parse_queues("high:5,default:1") == expected
        assert parse_queues({"high": 5, "default": 1}) == expected
        assert parse_queues([["high", 5], ["default", "1"]]) == expected
        # A queue without a weight in a weighted list weighs 1.
        assert parse_queues("high:3,default") == QueuePlan(("high", "default"), (3.0, 1.0))
        assert str(expected) == "high:5,default:1"

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("", "names no queue"),
            ("high,high", "twice"),
            ("high:0", "must be a number > 0"),
            ("high:x", "must be a number > 0"),
            ([1, 2], "non-empty strings"),
            (42, "must be a list of queue names"),
        ],
    )
    def test_bad_lists_say_what_is_wrong(self, value: Any, message: str) -> None:
        with pytest.raises(ConfigurationError, match=message):
            parse_queues(value)

    def test_the_config_key_is_read_and_checked(self) -> None:
        config: dict[str, Any] = {"ASYNCENDPOINTS_QUEUES": "high:5,default:1"}
        set_defaults(config)
        assert Settings.from_config(config).queues == QueuePlan(("high", "default"), (5.0, 1.0))
        config["ASYNCENDPOINTS_QUEUES"] = "high,,high"
        with pytest.raises(ConfigurationError, match="ASYNCENDPOINTS_QUEUES names the queue 'high' twice"):
            Settings.from_config(config)


class TestQueueOrder:
    def test_a_strict_plan_asks_in_its_order_every_turn(self) -> None:
        order = QueueOrder(QueuePlan(("high", "default", "low")))
        assert {order.next_turn() for _ in range(50)} == {("high", "default", "low")}

    def test_a_weighted_plan_puts_each_queue_first_in_proportion_to_its_weight(self) -> None:
        order = QueueOrder(QueuePlan(("high", "default"), (5.0, 1.0)), rand=random.Random(7).random)
        firsts = Counter(order.next_turn()[0] for _ in range(6000))
        # 5 in 6 turns start with "high"; "default" still comes first about 1000 times: never starved.
        assert 4800 < firsts["high"] < 5200
        assert 800 < firsts["default"] < 1200

    def test_every_turn_names_every_queue_once(self) -> None:
        order = QueueOrder(QueuePlan(("a", "b", "c"), (1.0, 2.0, 3.0)), rand=random.Random(1).random)
        for _ in range(100):
            assert sorted(order.next_turn()) == ["a", "b", "c"]


class TestWorkerQueues:
    def test_by_default_a_worker_serves_every_queue_its_handlers_name(self, ae: AsyncEndpoints, app: Flask) -> None:
        Recorder(ae, "low", "high")
        state = app.extensions["asyncendpoints"]
        assert state.worker_queues() == QueuePlan(("default", "high", "low"), (1.0, 1.0, 1.0))
        assert ae.get_worker(app).queues.names == ("default", "high", "low")

    def test_a_handler_needs_a_queue_name(self, ae: AsyncEndpoints) -> None:
        with pytest.raises(ConfigurationError, match="queue must be a non-empty queue name"):
            ae.handler("Nowhere", queue="")


class TestWorkerQueuesOnEveryStore:
    @pytest.fixture
    def app_store(self, store: Store) -> Store:
        return store

    def test_a_strict_worker_drains_the_first_queue_first(self, ae: AsyncEndpoints, app: Flask) -> None:
        recorder = Recorder(ae, "high", "low")
        with app.app_context():
            for n in range(3):
                ae.submit("InLow", {"n": f"low{n}"})
            for n in range(3):
                ae.submit("InHigh", {"n": f"high{n}"})
        worker = worker_for(app, "high,low")
        while worker.run_once():
            pass
        assert [r["n"] for r in recorder.ran] == ["high0", "high1", "high2", "low0", "low1", "low2"]

    def test_a_worker_leaves_the_queues_it_does_not_serve(
        self, ae: AsyncEndpoints, app: Flask, app_store: Store
    ) -> None:
        recorder = Recorder(ae, "high", "low")
        with app.app_context():
            low = ae.submit("InLow", {"n": "low"})
            ae.submit("InHigh", {"n": "high"})
        worker = worker_for(app, "high")
        assert worker.run_once() == 1
        assert worker.run_once() == 0
        assert [r["n"] for r in recorder.ran] == ["high"]
        assert app_store.get(low.id).status is JobStatus.QUEUED  # type: ignore[union-attr]

    def test_the_pending_limit_counts_the_jobs_of_the_queue(self, ae: AsyncEndpoints, app: Flask) -> None:
        Recorder(ae, "high", "low")
        state = app.extensions["asyncendpoints"]
        from dataclasses import replace

        from flask_asyncendpoints import PendingLimitReached

        state.settings = replace(state.settings, max_pending_jobs=2)
        with app.app_context():
            ae.submit("InLow", {"n": 1})
            ae.submit("InLow", {"n": 2})
            with pytest.raises(PendingLimitReached):
                ae.submit("InLow", {"n": 3})
            assert ae.submit("InHigh", {"n": 4}).status is JobStatus.QUEUED

    def test_worker_queues_option_of_the_cli(self, ae: AsyncEndpoints, app: Flask, app_store: Store) -> None:
        recorder = Recorder(ae, "high", "low")
        with app.app_context():
            low = ae.submit("InLow", {"n": "low"})
            ae.submit("InHigh", {"n": "high"})
        runner = app.test_cli_runner()
        result = runner.invoke(cli, ["worker", "--burst", "--queues", "high:3"])
        assert result.exit_code == 0, result.output
        assert "ran 1 job(s)" in result.output
        assert [r["n"] for r in recorder.ran] == ["high"]
        assert app_store.get(low.id).status is JobStatus.QUEUED  # type: ignore[union-attr]

        bad = runner.invoke(cli, ["worker", "--burst", "--queues", "high,high"])
        assert bad.exit_code == 2
        assert "--queues names the queue 'high' twice" in bad.output


class TestPriorityChecks:
    @pytest.mark.parametrize("priority", [1.5, True, "5", 10**7])
    def test_a_priority_must_be_a_whole_number_in_range(self, ae: AsyncEndpoints, app: Flask, priority: Any) -> None:
        Recorder(ae, "default")
        with app.app_context(), pytest.raises(ValueError, match="priority must be a whole number"):
            ae.submit("InDefault", {"n": 0}, priority=priority)
        with pytest.raises(ConfigurationError, match="priority must be a whole number"):
            ae.route("/p", "InDefault", body=True, priority=priority)


class TestPriorities:
    @pytest.fixture
    def app_store(self, store: Store) -> Store:
        return store

    def test_higher_priority_runs_first_and_fifo_within_a_priority(
        self, ae: AsyncEndpoints, app: Flask, worker: Worker, clock: FakeClock
    ) -> None:
        recorder = Recorder(ae, "default")
        with app.app_context():
            for n, priority in enumerate([0, 5, 1, 5, 0]):
                ae.submit("InDefault", {"n": n}, priority=priority)
                clock.advance(1)
        while worker.run_once():
            pass
        assert [r["n"] for r in recorder.ran] == [1, 3, 2, 0, 4]

    def test_a_route_takes_its_priority_from_the_body(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker
    ) -> None:
        recorder = Recorder(ae, "default")
        ae.route("/jobs-by-priority", "InDefault", body=True, priority=lambda body: body["p"])
        ae.route("/urgent", "InDefault", body=True, priority=9, endpoint="urgent")
        for n, p in enumerate([1, 3, 2]):
            assert client.post("/jobs-by-priority", json={"n": n, "p": p}).status_code == 202
        assert client.post("/urgent", json={"n": "urgent", "p": 0}).status_code == 202
        while worker.run_once():
            pass
        assert [r["n"] for r in recorder.ran] == ["urgent", 1, 2, 0]
