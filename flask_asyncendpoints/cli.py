"""``flask asyncendpoints …`` commands."""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import replace
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .errors import AsyncEndpointsError
from .extension import EXTENSION_KEY, _State
from .jobs import JobStatus


def _state() -> _State:
    state = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise click.ClickException(
            "flask-asyncendpoints is not initialized on this app. Did you forget to call init_app()?"
        )
    return state  # type: ignore[no-any-return]


@click.group("asyncendpoints")
def cli() -> None:
    """Inspect jobs and run workers of flask-asyncendpoints."""


@cli.command("status")
@with_appcontext
def status() -> None:
    """Print how many jobs are in each status."""
    try:
        counts = _state().store.counts()
    except AsyncEndpointsError as exc:
        raise click.ClickException(str(exc)) from exc
    for job_status in JobStatus:
        click.echo(f"{job_status.value:<11} {counts[job_status]}")


@cli.command("show")
@click.argument("job_id")
@with_appcontext
def show(job_id: str) -> None:
    """Print the job record of JOB_ID as JSON (with stack traces)."""
    try:
        job = _state().store.get(job_id)
    except AsyncEndpointsError as exc:
        raise click.ClickException(str(exc)) from exc
    if job is None:
        raise click.ClickException(f"There is no job with the id {job_id!r}.")
    click.echo(json.dumps(job.to_dict(expose_traceback=True), indent=2, ensure_ascii=False))


@cli.command("worker")
@click.option("--concurrency", type=click.IntRange(min=1), help="Worker threads (default: MAX_CONCURRENCY).")
@click.option("--burst", is_flag=True, help="Run the jobs that are due now, then exit.")
@with_appcontext
def worker(concurrency: int | None, burst: bool) -> None:
    """Run jobs in this process until SIGINT or SIGTERM (or, with --burst, until none is due)."""
    app: Any = current_app._get_current_object()  # type: ignore[attr-defined]
    state = _state()
    if concurrency is not None:
        state.settings = replace(state.settings, max_concurrency=concurrency)
    runner = state.get_worker(app)
    if burst:
        total = 0
        while True:
            ran = runner.run_once()
            total += ran
            if not ran:
                break
        click.echo(f"ran {total} job(s)")
        return
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    state.start_worker(app)
    click.echo(f"worker {runner.worker_id} running {runner.settings.max_concurrency} thread(s); Ctrl+C to stop")
    stop.wait()
    click.echo("stopping: waiting for running jobs")
    runner.shutdown()
