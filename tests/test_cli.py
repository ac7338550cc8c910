"""``flask asyncendpoints …`` commands, through Flask's CLI runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, JobStatus
from flask_asyncendpoints.cli import cli
from flask_asyncendpoints.stores import MemoryStore

from .conftest import FakeClock


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
