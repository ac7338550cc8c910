"""Prometheus metrics in one process: event counters, durations and store gauges after a mixed run,
on every kind of store (the counters follow what the store answered, the gauges read it).

Several processes adding up their counters (prometheus-client's multiprocess mode) are tested with
real processes in ``tests/test_metrics_processes.py``.
"""

from __future__ import annotations

import sys
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_asyncendpoints import AsyncEndpoints, ConfigurationError, JobStatus
from flask_asyncendpoints.stores import MemoryStore, Store
from flask_asyncendpoints.worker import Worker

from .monitoring_run import MixedRun, mixed_run, register_handlers
from .test_dashboard import DownStore

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families

URL = "/metrics"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def app_config() -> dict[str, object]:
    # The Flaky job's retry far off: on a store with a real clock it must not come due during the run.
    return {"ASYNCENDPOINTS_METRICS_URL": URL, "ASYNCENDPOINTS_RETRY_DELAY_BASE": 300.0}


@pytest.fixture
def run(ae: AsyncEndpoints, app: Flask, worker: Worker, app_store: Store) -> MixedRun:
    register_handlers(ae)
    return mixed_run(ae, app, worker, app_store)


def scrape(client: FlaskClient, **kwargs: object) -> Samples:
    response = client.get(URL, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def events(samples: Samples) -> dict[tuple[str, str], float]:
    """``asyncendpoints_job_events_total`` as ``{(job_name, event): count}``, zeros left out."""
    found = {}
    for (name, labels), count in samples.items():
        if name == "asyncendpoints_job_events_total" and count:
            tags = dict(labels)
            found[(tags["job_name"], tags["event"])] = count
    return found


def test_metrics_are_off_by_default(ae: AsyncEndpoints) -> None:
    app = Flask("plain")
    app.config.update(ASYNCENDPOINTS_WORKER=False)
    ae.init_app(app, store=MemoryStore())
    assert app.test_client().get(URL).status_code == 404


class TestOnEveryStore:
    @pytest.fixture
    def app_store(self, store: Store) -> Store:
        return store

    def test_the_counters_count_every_event_of_the_run(self, client: FlaskClient, run: MixedRun) -> None:
        assert events(scrape(client)) == {
            ("Echo", "submitted"): 6,
            ("Echo", "started"): 3,
            ("Echo", "completed"): 3,
            ("Echo", "canceled"): 1,
            ("Boom", "submitted"): 1,
            ("Boom", "started"): 1,
            ("Boom", "failed"): 1,
            ("Flaky", "submitted"): 1,
            ("Flaky", "started"): 1,
            ("Flaky", "retried"): 1,
            ("Slow", "submitted"): 1,  # claimed by the test itself: no worker started it
        }

    def test_a_recovery_and_its_outcome_are_counted(self, client: FlaskClient, run: MixedRun, worker: Worker) -> None:
        # Past the Slow job's lease on every store (the memory store's fake clock is behind): its
        # claimer never renewed it.
        [recovered] = worker.recover_once(now=time.time() + 301)
        assert recovered.id == run.running
        counted = events(scrape(client))
        assert counted[("Slow", "recovered")] == 1
        assert recovered.status is JobStatus.QUEUED  # retries left: queued again, not failed

    def test_the_duration_histogram_has_one_observation_per_finished_attempt(
        self, client: FlaskClient, run: MixedRun
    ) -> None:
        samples = scrape(client)
        count = "asyncendpoints_job_duration_seconds_count"
        assert value(samples, count, job_name="Echo", outcome="completed") == 3
        assert value(samples, count, job_name="Boom", outcome="failed") == 1
        assert value(samples, count, job_name="Flaky", outcome="retried") == 1
        bucket = "asyncendpoints_job_duration_seconds_bucket"
        assert value(samples, bucket, job_name="Echo", outcome="completed", le="+Inf") == 3

    def test_the_gauges_are_read_from_the_store(self, client: FlaskClient, run: MixedRun, app_store: Store) -> None:
        samples = scrape(client)
        assert value(samples, "asyncendpoints_store_up") == 1
        counts = app_store.counts()
        for status in JobStatus:
            assert value(samples, "asyncendpoints_jobs", status=status.value) == counts[status]
        assert value(samples, "asyncendpoints_jobs_in_progress") == 1
        [stats] = app_store.queue_stats()
        for status in JobStatus:
            assert (
                value(samples, "asyncendpoints_queue_jobs", queue="default", status=status.value)
                == stats.counts[status]
            )
        assert value(samples, "asyncendpoints_queue_due_jobs", queue="default") == stats.due == 2
        assert value(samples, "asyncendpoints_jobs_finished_last_hour", outcome="completed") == 3
        assert value(samples, "asyncendpoints_jobs_finished_last_hour", outcome="failed") == 1
        assert value(samples, "asyncendpoints_workers") == 1
        assert value(samples, "asyncendpoints_worker_threads") == 2

    def test_the_gauges_follow_the_store_at_each_scrape(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, run: MixedRun
    ) -> None:
        before = scrape(client)
        with app.app_context():
            ae.submit("Echo", {"n": "late"})
        after = scrape(client)
        assert (
            value(after, "asyncendpoints_jobs", status="Queued")
            == value(before, "asyncendpoints_jobs", status="Queued") + 1
        )  # type: ignore[operator]


def test_an_unreachable_store_still_answers_with_store_up_0(ae: AsyncEndpoints) -> None:
    app = Flask("down")
    app.config.update(ASYNCENDPOINTS_WORKER=False, ASYNCENDPOINTS_METRICS_URL=URL)
    ae.init_app(app, store=DownStore())
    samples = scrape(app.test_client())
    assert value(samples, "asyncendpoints_store_up") == 0
    assert not any(name == "asyncendpoints_jobs" for name, _ in samples)


def test_the_metrics_follow_the_dashboards_access_rule(ae: AsyncEndpoints, client: FlaskClient) -> None:
    refused = client.get(URL, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert refused.status_code == 403
    assert "@ae.dashboard_access" in refused.get_data(as_text=True)
    assert client.get(URL, headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 403

    @ae.dashboard_access
    def prometheus_server() -> bool:
        from flask import request

        return request.remote_addr == "203.0.113.7"

    assert client.get(URL, environ_base={"REMOTE_ADDR": "203.0.113.7"}).status_code == 200
    assert client.get(URL).status_code == 403


def test_two_apps_in_one_process_count_their_own_jobs(ae: AsyncEndpoints, client: FlaskClient, run: MixedRun) -> None:
    other_ae = AsyncEndpoints()
    other_ae.handler("Echo")(lambda ctx: ctx.request)
    other = Flask("other")
    other.config.update(ASYNCENDPOINTS_WORKER=False, ASYNCENDPOINTS_METRICS_URL=URL)
    other_ae.init_app(other, store=MemoryStore())
    with other.app_context():
        other_ae.submit("Echo", {"n": 1})
    assert events(scrape(other.test_client())) == {("Echo", "submitted"): 1}
    assert events(scrape(client))[("Echo", "submitted")] == 6


def test_without_prometheus_client_the_error_says_what_to_install(
    ae: AsyncEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    app = Flask("nometrics")
    app.config.update(ASYNCENDPOINTS_WORKER=False, ASYNCENDPOINTS_METRICS_URL=URL)
    with pytest.raises(ConfigurationError, match=r"pip install 'flask-asyncendpoints\[metrics\]'"):
        ae.init_app(app, store=MemoryStore())


def test_the_registry_can_be_served_elsewhere(app: Flask, run: MixedRun) -> None:
    from prometheus_client import generate_latest

    from flask_asyncendpoints.metrics import metrics_registry

    samples = parse(generate_latest(metrics_registry(app)).decode())
    assert events(samples)[("Echo", "completed")] == 3
    with pytest.raises(ConfigurationError, match="set ASYNCENDPOINTS_METRICS_URL"):
        metrics_registry(Flask("bare"))
