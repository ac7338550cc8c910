"""``flask asyncendpoints …`` commands, through Flask's CLI runner."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, JobStatus
from flask_asyncendpoints.cli import cli
from flask_asyncendpoints.stores import MemoryStore, Store
from flask_asyncendpoints.worker import Worker

from .conftest import FakeClock
from .monitoring_run import MixedRun, mixed_run, register_handlers
from .test_dashboard import DownStore


@pytest.fixture
def app_config() -> dict[str, object]:
    # Execution logs on, so that ``show`` has log lines to print.
    return {"ASYNCENDPOINTS_EXECUTION_LOGS": True}


def setup(ae: AsyncEndpoints, app: Flask) -> list[str]:
    ae.handler("Echo")(lambda ctx: ctx.request)
    ae.handler("Boom", max_retries=0)(lambda ctx: 1 / 0)
    with app.app_context():
        return [ae.submit("Echo", {"n": n}).id for n in range(3)] + [ae.submit("Boom").id]


def test_status_counts_jobs_by_status(ae: AsyncEndpoints, app: Flask) -> None:
    setup(ae, app)
    result = app.test_cli_runner().invoke(cli, ["status"])
    assert result.exit_code == 0
    lines = dict(line.split() for line in result.output.splitlines())
    assert lines == {
        "Queued": "4",
        "Scheduled": "0",
        "InProgress": "0",
        "Completed": "0",
        "Failed": "0",
        "Canceled": "0",
    }


def test_worker_burst_drains_the_queue(ae: AsyncEndpoints, app: Flask, memory_store: MemoryStore) -> None:
    ids = setup(ae, app)
    result = app.test_cli_runner().invoke(cli, ["worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert "ran 4 job(s)" in result.output
    statuses = [memory_store.get(job_id).status for job_id in ids]  # type: ignore[union-attr]
    assert statuses == [JobStatus.COMPLETED] * 3 + [JobStatus.FAILED]


def test_show_prints_the_job_with_its_traceback(ae: AsyncEndpoints, app: Flask) -> None:
    ids = setup(ae, app)
    runner = app.test_cli_runner()
    runner.invoke(cli, ["worker", "--burst"])

    result = runner.invoke(cli, ["show", ids[-1]])

    assert result.exit_code == 0
    job = json.loads(result.output)
    assert job["status"] == "Failed"
    assert job["error"]["code"] == "ZERODIVISIONERROR"
    assert "Traceback" in job["error"]["exception"]["stackTrace"]


def test_show_an_unknown_job_fails(app: Flask) -> None:
    result = app.test_cli_runner().invoke(cli, ["show", "3f1c9a2e-0000-4000-8000-000000000000"])
    assert result.exit_code == 1
    assert "no job" in result.output


def test_health_reads_the_file_age(app: Flask, tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    alive = tmp_path / "alive"
    assert runner.invoke(cli, ["health", str(alive)]).exit_code == 1
    alive.touch()
    assert runner.invoke(cli, ["health", str(alive)]).exit_code == 0
    stale = alive.stat().st_mtime - 600
    os.utime(alive, (stale, stale))
    result = runner.invoke(cli, ["health", str(alive), "--max-age", "60"])
    assert result.exit_code == 1
    assert "last reported" in result.output


def test_requeue_a_failed_job(ae: AsyncEndpoints, app: Flask, memory_store: MemoryStore) -> None:
    ids = setup(ae, app)
    runner = app.test_cli_runner()
    runner.invoke(cli, ["worker", "--burst"])

    result = runner.invoke(cli, ["requeue", ids[-1]])

    assert result.exit_code == 0, result.output
    job = memory_store.get(ids[-1])
    assert job is not None
    assert job.status is JobStatus.QUEUED
    assert runner.invoke(cli, ["requeue", ids[0]]).exit_code == 1  # Completed, not Failed


def test_purge_finished_jobs_older_than(
    ae: AsyncEndpoints, app: Flask, memory_store: MemoryStore, clock: FakeClock
) -> None:
    ids = setup(ae, app)
    runner = app.test_cli_runner()
    runner.invoke(cli, ["worker", "--burst"])
    clock.advance(3600)

    assert "deleted 0 finished job(s)" in runner.invoke(cli, ["purge", "--older-than", "7200"]).output
    assert "deleted 4 finished job(s)" in runner.invoke(cli, ["purge", "--older-than", "60"]).output
    assert all(memory_store.get(job_id) is None for job_id in ids)


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: "), output
    assert "Traceback" not in output
    return lines[0]


def test_an_unreachable_store_is_one_error_line() -> None:
    from flask_asyncendpoints.stores.redis import RedisStore

    ae = AsyncEndpoints()
    app = Flask("down")
    app.config.update(ASYNCENDPOINTS_WORKER=False)
    # Nothing listens on port 1: every command's store call fails at once.
    ae.init_app(app, store=RedisStore.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1))
    runner = app.test_cli_runner()
    for args in (["status"], ["show", "3f1c9a2e-0000-4000-8000-000000000000"], ["purge", "--older-than", "1"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        _one_error_line(result.output)


def test_a_bad_job_id_is_one_error_line(app: Flask) -> None:
    result = app.test_cli_runner().invoke(cli, ["show", "nope"])
    assert result.exit_code == 1
    assert _one_error_line(result.output) == "Error: 'nope' is not a job id (a UUID)."


def test_an_app_without_the_extension_is_one_error_line() -> None:
    result = Flask("bare").test_cli_runner().invoke(cli, ["status"])
    assert result.exit_code == 1
    assert "Did you forget to call init_app()?" in _one_error_line(result.output)


def test_log_level_is_a_choice(app: Flask) -> None:
    result = app.test_cli_runner().invoke(cli, ["worker", "--burst", "--log-level", "LOUD"])
    assert result.exit_code == 2
    assert "'LOUD' is not one of" in result.output
    assert app.test_cli_runner().invoke(cli, ["worker", "--burst", "--log-level", "warning"]).exit_code == 0


# -- monitoring: list, show with history and logs, workers ------------------------------------------------


@pytest.fixture
def run(ae: AsyncEndpoints, app: Flask, worker: Worker, app_store: Store) -> MixedRun:
    register_handlers(ae)
    return mixed_run(ae, app, worker, app_store)


class TestMonitoringOnEveryStore:
    @pytest.fixture
    def app_store(self, store: Store) -> Store:
        return store

    @pytest.fixture
    def app_config(self) -> dict[str, object]:
        # The Flaky job's retry far off: on a store with a real clock it must not come due during the run.
        return {"ASYNCENDPOINTS_EXECUTION_LOGS": True, "ASYNCENDPOINTS_RETRY_DELAY_BASE": 300.0}

    def test_list_prints_one_line_per_job_in_the_stores_order(
        self, app: Flask, run: MixedRun, app_store: Store
    ) -> None:
        result = app.test_cli_runner().invoke(cli, ["list", "--status", "Completed"])
        assert result.exit_code == 0, result.output
        ids = [line.split()[0] for line in result.output.splitlines()]
        assert ids == [job.id for job in app_store.list_jobs(JobStatus.COMPLETED).jobs]
        assert sorted(ids) == sorted(run.completed)
        assert "  Echo  default  " in result.output.splitlines()[0]

    def test_list_failed_jobs_shows_the_error(self, app: Flask, run: MixedRun) -> None:
        result = app.test_cli_runner().invoke(cli, ["list", "--status", "failed", "--name", "Boom"])
        assert result.exit_code == 0, result.output
        [line] = result.output.splitlines()
        assert line.startswith(run.failed)
        assert line.endswith("tries 0/0  VALUEERROR: the input was <b>bad</b>")

    def test_list_filters_by_name_and_queue(self, app: Flask, run: MixedRun) -> None:
        runner = app.test_cli_runner()
        assert runner.invoke(cli, ["list", "--status", "Completed", "--name", "Boom"]).output == "no Completed jobs\n"
        queued = runner.invoke(cli, ["list", "--status", "Queued", "--queue", "default"]).output.splitlines()
        assert [line.split()[0] for line in queued] == run.queued
        assert runner.invoke(cli, ["list", "--status", "Queued", "--queue", "other"]).output == "no Queued jobs\n"

    def test_list_pages_with_the_printed_cursor(self, app: Flask, run: MixedRun) -> None:
        runner = app.test_cli_runner()
        first = runner.invoke(cli, ["list", "--status", "Completed", "--limit", "2"])
        assert first.exit_code == 0
        *lines, more = first.output.splitlines()
        assert len(lines) == 2
        assert more.startswith("more: flask asyncendpoints list --status Completed --limit 2 --cursor ")
        args = shlex.split(more.removeprefix("more: "))[2:]
        second = runner.invoke(cli, args)
        assert second.exit_code == 0, second.output
        rest = second.output.splitlines()
        assert len(rest) == 1 and not rest[0].startswith("more:")
        assert sorted(line.split()[0] for line in [*lines, *rest]) == sorted(run.completed)

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["list", "--status", "Completed", "--cursor", "nonsense"], "Error: "),
            (["list", "--status", "Lost"], "Invalid value for '--status'"),
            (["list"], "Missing option '--status'"),
        ],
    )
    def test_list_refuses_bad_options_in_one_line(
        self, app: Flask, run: MixedRun, args: list[str], message: str
    ) -> None:
        result = app.test_cli_runner().invoke(cli, args)
        assert result.exit_code != 0
        assert message in result.output
        assert "Traceback" not in result.output

    def test_a_bad_cursor_is_one_error_line(self, app: Flask, run: MixedRun) -> None:
        result = app.test_cli_runner().invoke(cli, ["list", "--status", "Completed", "--cursor", "nonsense"])
        assert result.exit_code == 1
        [line] = result.output.splitlines()
        assert line.startswith("Error: ") and line.endswith("Start again without --cursor.")

    def test_show_adds_the_attempts_and_the_log(self, app: Flask, run: MixedRun, app_store: Store) -> None:
        result = app.test_cli_runner().invoke(cli, ["show", run.failed])
        assert result.exit_code == 0, result.output
        shown = json.loads(result.output)
        assert list(shown)[:3] == ["id", "name", "status"]  # the record first, as the job API writes it
        assert shown["attempts"] == [attempt.to_dict() for attempt in app_store.attempts(run.failed)]
        [attempt] = shown["attempts"]
        assert (attempt["outcome"], attempt["errorCode"]) == ("Failed", "VALUEERROR")
        assert [line["message"] for line in shown["logs"]] == ["about to fail"]

    def test_workers_lists_the_registered_workers(self, app: Flask, run: MixedRun, worker: Worker) -> None:
        result = app.test_cli_runner().invoke(cli, ["workers"])
        assert result.exit_code == 0, result.output
        [line] = result.output.splitlines()
        assert line.startswith(f"{worker.worker_id}  host ")
        assert f"pid {os.getpid()}" in line and "queues default" in line and "running 1" in line

    def test_workers_without_any(self, app: Flask) -> None:
        result = app.test_cli_runner().invoke(cli, ["workers"])
        assert (result.exit_code, result.output) == (0, "no worker is registered\n")


def test_an_unreachable_store_is_one_error_line_for_the_monitoring_commands(ae: AsyncEndpoints) -> None:
    app = Flask("down")
    app.config.update(ASYNCENDPOINTS_WORKER=False)
    ae.init_app(app, store=DownStore())
    runner = app.test_cli_runner()
    for args in (["list", "--status", "Failed"], ["workers"], ["show", "3f1c9a2e-0000-4000-8000-000000000000"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1
        [line] = result.output.splitlines()
        assert line.startswith("Error: Could not reach the store")
