"""``flask asyncendpoints …`` commands."""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .config import QueuePlan, parse_queues
from .errors import AsyncEndpointsError, ConfigurationError
from .jobs import Job, JobStatus, from_timestamp, isoformat, parse_job_id
from .state import NOT_INITIALIZED, AppState, app_state
from .stores import MemoryStore
from .stores.monitoring import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from .supervisor import HEALTHY_WITHIN, Supervisor, WorkerCommand, child_command, child_info, serve


def _state() -> AppState:
    state = app_state(current_app)
    if state is None:
        raise click.ClickException(NOT_INITIALIZED)
    return state


def _job_id(raw: str) -> str:
    """A job id as the stores keep it (lower-case UUID); any other text is refused."""
    job_id = parse_job_id(raw)
    if job_id is None:
        raise click.ClickException(f"{raw!r} is not a job id (a UUID).")
    return job_id


@contextmanager
def _store_errors_reported() -> Iterator[None]:
    """Turn a store error into the command's error message (no traceback)."""
    try:
        yield
    except (AsyncEndpointsError, NotImplementedError) as exc:
        # One line, as click prints it ("Error: …"): a store's message may span several. A custom
        # store may still leave a part of the interface unimplemented: that is said the same way.
        raise click.ClickException(" ".join(str(exc).split()) or type(exc).__name__) from exc


@click.group("asyncendpoints")
def cli() -> None:
    """Inspect jobs and run workers of flask-asyncendpoints."""


@cli.command("status")
@with_appcontext
def status() -> None:
    """Print how many jobs are in each status."""
    with _store_errors_reported():
        counts = _state().store.counts()
    for job_status in JobStatus:
        click.echo(f"{job_status.value:<11} {counts[job_status]}")


@cli.command("show")
@click.argument("job_id")
@with_appcontext
def show(job_id: str) -> None:
    """Print the job record of JOB_ID as JSON (with stack traces), with its attempts and log lines.

    The record's members come first, as the job API writes them; ``attempts`` (oldest first) and
    ``logs`` (the execution log, if the app keeps one) follow.
    """
    store = _state().store
    with _store_errors_reported():
        job = store.get(_job_id(job_id))
        if job is None:
            raise click.ClickException(f"There is no job with the id {job_id!r}.")
        record = job.to_dict(expose_traceback=True)
        record["attempts"] = [attempt.to_dict() for attempt in store.attempts(job.id)]
        record["logs"] = [line.to_dict() for line in store.logs(job.id)]
    click.echo(json.dumps(record, indent=2, ensure_ascii=False))


@cli.command("list")
@click.option(
    "--status",
    "status_name",
    type=click.Choice([s.value for s in JobStatus], case_sensitive=False),
    required=True,
    help="The status to list.",
)
@click.option("--name", help="Only jobs of this job name.")
@click.option("--queue", help="Only jobs of this queue.")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE_SIZE), default=DEFAULT_PAGE_SIZE, show_default=True)
@click.option("--cursor", help="Go on from where the previous page ended (it prints the cursor).")
@with_appcontext
def list_jobs(status_name: str, name: str | None, queue: str | None, limit: int, cursor: str | None) -> None:
    """List the jobs in one status, a page at a time: newest first for finished ones, in claim order
    for queued ones, soonest due first for scheduled ones.

    Each line: id, job name, queue, the time that matters for the status (finished, due, started or
    created; UTC), tries (retries so far / allowed) and, for failed or retrying jobs, the error code
    and message. When there is more, the last line is the command for the next page.
    """
    status = next(s for s in JobStatus if s.value.lower() == status_name.lower())
    with _store_errors_reported():
        try:
            page = _state().store.list_jobs(status, queue=queue, name=name, cursor=cursor, limit=limit)
        except ValueError as exc:
            raise click.ClickException(f"{exc} Start again without --cursor.") from None
    if not page.jobs:
        click.echo(f"no {status.value} jobs" + (" on this page" if cursor else ""))
    for job in page.jobs:
        click.echo(_job_line(job))
    if page.cursor is not None:
        args = ["flask", "asyncendpoints", "list", "--status", status.value]
        for option, value in (("--name", name), ("--queue", queue)):
            if value is not None:
                args += [option, value]
        if limit != DEFAULT_PAGE_SIZE:
            args += ["--limit", str(limit)]
        args += ["--cursor", page.cursor]
        click.echo("more: " + shlex.join(args))


def _job_line(job: Job) -> str:
    when = {
        JobStatus.QUEUED: job.created_at,
        JobStatus.SCHEDULED: job.retry_delay_until,
        JobStatus.IN_PROGRESS: job.started_at,
    }.get(job.status, job.completed_at)
    fields = [job.id, job.name, job.queue, _utc(when), f"tries {job.retry_count}/{job.max_retries}"]
    if job.error is not None and job.status in (JobStatus.FAILED, JobStatus.SCHEDULED):
        fields.append(f"{job.error.code}: {_one_line(job.error.message)}")
    return "  ".join(fields)


def _utc(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else "-"


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@cli.command("workers")
@with_appcontext
def workers() -> None:
    """List the worker processes registered with the store, and how many jobs each is running.

    Each line: worker id, host, pid, queues, threads, running jobs, started and last heartbeat (UTC).
    A worker drops off the list when it stops or misses its heartbeats.
    """
    store = _state().store
    with _store_errors_reported():
        registered = store.workers()
        running = store.running_jobs(limit=RUNNING_LISTED)
    if not registered:
        click.echo("no worker is registered")
        return
    busy: dict[str, int] = {}
    for item in running:
        busy[item.worker_id] = busy.get(item.worker_id, 0) + 1
    for info in registered:
        click.echo(
            f"{info.id}  host {info.host}  pid {info.pid}  queues {','.join(info.queues)}  "
            f"threads {info.concurrency}  running {busy.get(info.id, 0)}  "
            f"started {_utc(info.started_at)}  heartbeat {_utc(info.heartbeat_at)}"
        )


#: How many running jobs ``workers`` reads to count each worker's.
RUNNING_LISTED = 1000


@cli.command("requeue")
@click.argument("job_id")
@with_appcontext
def requeue(job_id: str) -> None:
    """Put the Failed job JOB_ID back in the queue with its retries restored."""
    with _store_errors_reported():
        job = _state().store.requeue(_job_id(job_id))
    if job is None:
        raise click.ClickException(f"There is no Failed job with the id {job_id!r}.")
    click.echo(f"requeued {job.id} ({job.name})")


@cli.command("purge")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    required=True,
    help="Delete finished jobs that finished more than this many seconds ago.",
)
@with_appcontext
def purge(older_than: float) -> None:
    """Delete finished (Completed, Failed, Canceled) jobs older than --older-than seconds."""
    with _store_errors_reported():
        deleted = _state().store.purge_finished(older_than)
    click.echo(f"deleted {deleted} finished job(s)")


@cli.command("init-db")
@click.option("--sql", "print_sql", is_flag=True, help="Print the DDL for this database instead of running it.")
@with_appcontext
def init_db(print_sql: bool) -> None:
    """Create the SQL store's tables (they are also created on first use), or print their DDL.

    Stores that keep no tables (memory, Redis) have nothing to create.
    """
    store = _state().store
    init = getattr(store, "init_db", None)
    ddl = getattr(store, "ddl", None)
    if init is None or ddl is None:
        click.echo(f"{store!r} keeps no tables: there is nothing to create.")
        return
    if print_sql:
        click.echo(ddl(), nl=False)
        return
    with _store_errors_reported():
        version = init()
    click.echo(f"the tables of {store!r} are ready (schema version {version})")


@cli.command("worker", cls=WorkerCommand)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes, each with --concurrency threads, under a supervisor that restarts any that dies.",
)
@click.option("--concurrency", type=click.IntRange(min=1), help="Worker threads (default: MAX_CONCURRENCY).")
@click.option(
    "--queues",
    help="Queues to serve: 'high,default' (strict order) or 'high:5,default:1' (weighted); default: QUEUES.",
)
@click.option("--burst", is_flag=True, help="Run jobs until none is due, then exit.")
@click.option(
    "--health-file",
    type=click.Path(dir_okay=False, writable=True),
    help="Touch this file every few seconds while the worker is alive (for a container health check).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Level of the worker's log lines: INFO logs each attempt's start and outcome, WARNING only problems.",
)
@with_appcontext
def worker(
    processes: int, concurrency: int | None, queues: str | None, burst: bool, health_file: str | None, log_level: str
) -> None:
    """Run jobs in this process until SIGINT or SIGTERM (or, with --burst, until none is due).

    SIGINT or SIGTERM stops claiming, lets running jobs finish up to ASYNCENDPOINTS_SHUTDOWN_TIMEOUT
    and re-queues the jobs this process claimed but did not finish; a second SIGINT re-queues the
    running jobs at once. With --processes N, this process supervises N worker processes instead.
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with _store_errors_reported():
        _run_worker(processes, concurrency, queues, burst, health_file)


def _run_worker(
    processes: int, concurrency: int | None, queues: str | None, burst: bool, health_file: str | None
) -> None:
    app: Any = current_app._get_current_object()  # type: ignore[attr-defined]
    state = _state()
    plan: QueuePlan | None = None
    if queues is not None:
        # Checked here, in the supervisor too: a plan its children refuse would only crash them.
        try:
            plan = parse_queues(queues, key="--queues")
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), param_hint="--queues") from None
    child = child_info()
    if processes > 1 and child is None:
        # Each child runs this command again as typed, --concurrency and --queues included.
        _supervise(state, processes, burst, health_file)
        return
    if concurrency is not None:
        state.settings = replace(state.settings, max_concurrency=concurrency)
    if plan is not None:
        state.settings = replace(state.settings, queues=plan)
    runner = state.get_worker(app)
    if burst:
        # The threaded worker, not run_once(): leases are renewed, timeouts enforced and
        # --concurrency honoured while the queue drains.
        state.start_worker(app)
        runner.wait_until_idle()
        runner.shutdown()
        click.echo(f"ran {runner.executed} job(s)")
        return
    serve(runner, lambda: state.start_worker(app), health_file=health_file, child=child)


def _supervise(state: AppState, processes: int, burst: bool, health_file: str | None) -> None:
    """Run ``processes`` worker processes, each this command again, until a signal stops them."""
    if burst:
        raise click.UsageError("--burst runs in one process: drop --processes, or --burst.")
    if isinstance(state.store, MemoryStore):
        raise click.UsageError(
            "--processes needs a store the processes share: with the memory store each process would see "
            "only its own jobs. Set ASYNCENDPOINTS_STORE to a shared store: sqlite:///jobs.db on one machine, "
            "or a PostgreSQL, MySQL or Redis URL."
        )
    ctx = click.get_current_context()
    supervisor = Supervisor(
        child_command(ctx), processes, shutdown_timeout=state.settings.shutdown_timeout, health_file=health_file
    )
    ctx.exit(supervisor.run())


@cli.command("schedules")
@with_appcontext
def schedules() -> None:
    """List the recurring jobs: cron expression, job, queue, last and next occurrence (UTC)."""
    state = _state()
    found = state.schedules
    if not found:
        click.echo("no recurring jobs (ae.schedule() or ASYNCENDPOINTS_SCHEDULES)")
        return
    with _store_errors_reported():
        claimed = state.store.occurrences()
    now = time.time()
    for schedule in found:
        last = claimed.get(schedule.name)
        queue = schedule.queue or _handler_queue(state, schedule.job_name)
        click.echo(
            f"{schedule.name}: {schedule.cron} ({schedule.describe()}, {schedule.timezone}) -> "
            f"{schedule.job_name} on queue {queue}\n"
            f"  last: {isoformat(from_timestamp(last)) if last is not None else 'never'}\n"
            f"  next: {isoformat(from_timestamp(schedule.next_after(now)))}"
        )


def _handler_queue(state: AppState, job_name: str) -> str:
    spec = state.registry.find_handler(job_name)
    return spec.queue if spec is not None else "(no handler)"


@cli.command("openapi")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write it to this file.")
@with_appcontext
def openapi(output: str | None) -> None:
    """Print the app's OpenAPI document (JSON): its async endpoints and job routes."""
    from .views.openapi import openapi_spec

    app: Any = current_app._get_current_object()  # type: ignore[attr-defined]
    with _store_errors_reported():
        document = openapi_spec(app, _state()).to_dict()
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if output is None:
        click.echo(text)
    else:
        Path(output).write_text(text + "\n", encoding="utf-8")


@cli.command("health")
@click.argument("health_file", type=click.Path(dir_okay=False))
@click.option("--max-age", type=float, default=HEALTHY_WITHIN, show_default=True, help="Seconds.")
def health(health_file: str, max_age: float) -> None:
    """Exit 0 if the worker touching HEALTH_FILE did so within --max-age seconds, else 1.

    Needs no app: ``flask asyncendpoints health /tmp/worker.alive`` in a container health check.
    """
    try:
        age = time.time() - Path(health_file).stat().st_mtime
    except FileNotFoundError:
        raise click.ClickException(f"{health_file} does not exist: the worker is not running") from None
    if age > max_age:
        raise click.ClickException(f"the worker last reported {age:.0f} s ago (more than {max_age:g} s)")
    click.echo(f"healthy: last reported {age:.1f} s ago")
