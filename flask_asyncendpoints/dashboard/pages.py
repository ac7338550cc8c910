"""The dashboard's pages and actions: each view reads the store through the monitoring API and
renders one template; the actions change one job and redirect back.

Every view finds the app's :class:`~flask_asyncendpoints.state.AppState` through ``current_app``.
Expected failures are :class:`PageError` (an HTML page with a status and what to do);
an unreachable store is a ``503`` page, a store without the monitoring API a ``501`` page.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..errors import StoreError
from ..jobs import FINAL_STATUSES, PENDING_STATUSES, Job, JobStatus, LogRecord, parse_job_id
from ..schedules import Schedule
from ..state import NOT_INITIALIZED, AppState, app_state
from ..stores import CancelResult
from ..stores.monitoring import DEFAULT_PAGE_SIZE
from . import charts, csrf, format

#: Where the templates are, under the package's ``templates/`` folder (an app can override one by
#: putting a file of the same name in its own ``templates/``).
TEMPLATE_DIR = "asyncendpoints/dashboard"

#: The largest page a list shows.
MAX_LIST_LIMIT = 500

#: The actions, the permission each asks :meth:`~flask_asyncendpoints.AsyncEndpoints.authorize` for.
ACTIONS = ("requeue", "cancel", "delete")

#: What the page says after an action (chosen by a fixed key in the URL, never text from it).
NOTICES = {
    "requeued": "The job was put back in its queue, due at once, with its retries restored.",
    "canceled": "The job was canceled.",
    "cancel-requested": "A cancel was requested: the running attempt is told to stop, and the job ends Canceled.",
    "deleted": "The job was deleted, with its history and logs.",
}

#: Running jobs shown on the overview.
OVERVIEW_RUNNING = 10

#: Running jobs read for the workers page.
WORKERS_RUNNING = 500


class PageError(Exception):
    """An expected failure, answered as an HTML page.

    :param status: the HTTP status.
    :param title: a short title.
    :param message: what happened.
    :param hint: what to do about it.
    """

    def __init__(self, status: int, title: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.hint = hint


def _state() -> AppState:
    state = app_state(current_app)
    if state is None:  # pragma: no cover - the blueprint is only registered by init_app
        raise RuntimeError(NOT_INITIALIZED)
    return state


def render(template: str, code: int = 200, /, **context: Any) -> Response:
    """Render one of the dashboard's templates as the answer.

    The text is encoded with ``replace``, so a stored string that is not valid Unicode (a lone
    surrogate in an exception message) shows as ``?`` rather than failing the page.

    :param template: the file name under :data:`TEMPLATE_DIR`.
    :param code: the HTTP status.
    :param context: the template's variables.
    """
    html = render_template(f"{TEMPLATE_DIR}/{template}", **context)
    return Response(html.encode("utf-8", "replace"), status=code, content_type="text/html; charset=utf-8")


def nav_counts() -> Mapping[JobStatus, int] | None:
    """The counts shown in the navigation, or ``None`` when the store cannot answer."""
    try:
        return _state().store.counts()
    except (StoreError, NotImplementedError):
        return None


def template_context() -> dict[str, Any]:
    """What every dashboard template can use."""
    return {
        "fmt": format,
        "statuses": list(JobStatus),
        "csrf_token": csrf.csrf_token,
        "csrf_field": csrf.FIELD_NAME,
        "nav_counts": nav_counts,
        "now": time.time(),
        "refresh": _refresh_seconds(),
        "here": here,
    }


def here(**changes: Any) -> str:
    """The URL of this page with some query arguments changed.

    :param changes: query arguments to set; ``None`` drops one. Off a ``GET`` page: the overview.
    """
    if request.method != "GET" or request.endpoint is None:
        return url_for(".overview")
    args: dict[str, Any] = {**request.args.to_dict(), **changes}
    args = {k: v for k, v in args.items() if v not in (None, "")}
    return url_for(request.endpoint, **{**args, **(request.view_args or {})})


def _refresh_seconds() -> int | None:
    """``?refresh=<seconds>`` (5 to 3600): the page reloads itself that often (no script needed)."""
    raw = request.args.get("refresh", "")
    if not raw.isdigit():
        return None
    return min(max(int(raw), 5), 3600)


def _may(state: AppState, job: Job, action: str) -> bool:
    """The app's :meth:`~flask_asyncendpoints.AsyncEndpoints.authorize` decision, if it has one.

    The owner rule of the job API does not apply here: the dashboard is the operators' view of
    every owner's jobs, and who is an operator is decided by the dashboard's access rule.
    """
    func = state.registry.authorize_func
    return True if func is None else bool(func(job, action))


def _status(raw: str) -> JobStatus:
    wanted = raw.replace("-", "").replace("_", "").lower()
    for status in JobStatus:
        if status.value.lower() == wanted:
            return status
    raise PageError(
        404,
        "No such status",
        f"There is no job status {raw!r}.",
        "Jobs are Queued, Scheduled, InProgress, Completed, Failed or Canceled.",
    )


def _job(state: AppState, raw_id: str, action: str) -> Job:
    job_id = parse_job_id(raw_id)
    job = state.store.get(job_id) if job_id is not None else None
    if job is None or not _may(state, job, action):
        raise PageError(
            404,
            "Job not found",
            f"There is no job with the id {raw_id!r}.",
            "It may have finished and expired (ASYNCENDPOINTS_RESULT_TTL), or been deleted.",
        )
    return job


# -- pages -----------------------------------------------------------------------------------------


def overview() -> Response:
    """Counts by status, queue and job name, throughput over the last hour and day, workers."""
    store = _state().store
    counts = store.counts()
    throughput = store.throughput()
    return render(
        "overview.html",
        counts=counts,
        total=sum(counts.values()),
        queues=store.queue_stats(),
        by_name=sorted(store.counts_by_name().items()),
        minutes=charts.bar_chart(throughput.minutes, unit="minute", label_every=10),
        hours=charts.bar_chart(throughput.hours, unit="hour", label_every=4),
        workers=store.workers(),
        running=store.running_jobs(limit=OVERVIEW_RUNNING),
        running_total=counts[JobStatus.IN_PROGRESS],
    )


def _limit() -> int:
    raw = request.args.get("limit", "")
    if not raw:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise PageError(400, "Bad page size", f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}, not {raw!r}.")
    return int(raw)


def job_list(status: str) -> Response:
    """One status's jobs, a page at a time, optionally of one job name and one queue.

    :param status: the status, in any case (``failed``, ``InProgress``); the query arguments
        ``name``, ``queue``, ``cursor`` and ``limit`` choose the page.
    :raises PageError: for an unknown status, a bad limit or a cursor of another list.
    """
    state = _state()
    store = state.store
    wanted = _status(status)
    name = request.args.get("name", "").strip() or None
    queue = request.args.get("queue", "").strip() or None
    cursor = request.args.get("cursor") or None
    limit = _limit()
    try:
        page = store.list_jobs(wanted, queue=queue, name=name, cursor=cursor, limit=limit)
    except ValueError:
        raise PageError(
            400,
            "Out-of-date page link",
            "This page link does not fit this list (its cursor was changed, or is from another list).",
            "Start again from the first page.",
        ) from None
    total: int | None
    if name is None:
        total = store.counts(queue=queue)[wanted]
    elif queue is None:
        total = store.counts_by_name().get(name, {}).get(wanted, 0)
    else:
        total = None
    jobs = [job for job in page.jobs if _may(state, job, "read")]
    names = sorted(set(store.counts_by_name()) | set(state.registry.handlers))
    queues = [stats.name for stats in store.queue_stats()]
    return render(
        "jobs.html",
        status=wanted,
        jobs=jobs,
        hidden=len(page.jobs) - len(jobs),
        total=total,
        name=name,
        queue=queue,
        cursor=cursor,
        next_cursor=page.cursor,
        limit=limit,
        names=names,
        queues=queues,
        notice=NOTICES.get(request.args.get("done", "")),
        error_summary=lambda job: _error_summary(state, job),
    )


#: The longest error message a list shows (the job's page shows all of it).
LIST_MESSAGE_CHARS = 120


def _error_summary(state: AppState, job: Job) -> str:
    """The job's error message for a list row, one line, as much as the job API would show."""
    if job.error is None:
        return ""
    message = str(
        job.error.to_dict(expose_traceback=False, expose_message=state.settings.expose_exception_messages)["message"]
    )
    flat = " ".join(message.split())
    return flat if len(flat) <= LIST_MESSAGE_CHARS else flat[: LIST_MESSAGE_CHARS - 1] + "…"


@dataclass(frozen=True)
class LogGroup:
    """The log lines of one run of an attempt, in order."""

    attempt: int
    records: list[LogRecord]


def _log_groups(records: list[LogRecord]) -> list[LogGroup]:
    groups: list[LogGroup] = []
    for record in records:
        if groups and groups[-1].attempt == record.attempt:
            groups[-1].records.append(record)
        else:
            groups.append(LogGroup(record.attempt, [record]))
    return groups


def job_detail(job_id: str) -> Response:
    """One job: its record, payload (redacted headers left out), result or error, attempts and logs.

    :param job_id: the job's id, in any spelling of the UUID.
    :raises PageError: ``404`` for an unknown job or one the app's authorize hook refuses.
    """
    state = _state()
    settings = state.settings
    job = _job(state, job_id, "read")
    redact = settings.redact_headers
    headers = [(k, v) for k, v in job.payload.headers if k.lower() not in redact]
    error = (
        job.error.to_dict(
            expose_traceback=settings.expose_tracebacks, expose_message=settings.expose_exception_messages
        )
        if job.error is not None
        else None
    )
    return render(
        "job.html",
        job=job,
        headers=headers,
        error=error,
        attempts=state.store.attempts(job.id),
        log_groups=_log_groups(state.store.logs(job.id)),
        expose_messages=settings.expose_exception_messages,
        can_requeue=job.status is JobStatus.FAILED,
        can_cancel=job.status in PENDING_STATUSES and not job.cancel_requested,
        can_delete=job.status in FINAL_STATUSES,
        notice=NOTICES.get(request.args.get("done", "")),
    )


def workers() -> Response:
    """The registered worker processes and the jobs each is running."""
    store = _state().store
    running = store.running_jobs(limit=WORKERS_RUNNING)
    by_worker: dict[str, int] = {}
    for item in running:
        by_worker[item.worker_id] = by_worker.get(item.worker_id, 0) + 1
    return render(
        "workers.html",
        workers=store.workers(),
        running=running,
        by_worker=by_worker,
        running_total=store.counts()[JobStatus.IN_PROGRESS],
    )


@dataclass(frozen=True)
class ScheduleRow:
    """One recurring schedule as the schedules page shows it."""

    name: str
    schedule: Schedule | None
    queue: str | None
    last: float | None
    next: float | None


def schedules() -> Response:
    """The app's recurring schedules with their last and next occurrence, and any other schedule
    the store has claimed occurrences of (another app's, or one since removed)."""
    state = _state()
    claimed = state.store.occurrences()
    now = time.time()
    rows: list[ScheduleRow] = []
    for schedule in state.schedules:
        spec = state.registry.find_handler(schedule.job_name)
        queue = schedule.queue or (spec.queue if spec is not None else None)
        rows.append(ScheduleRow(schedule.name, schedule, queue, claimed.get(schedule.name), schedule.next_after(now)))
    known = {row.name for row in rows}
    others = [ScheduleRow(name, None, None, at, None) for name, at in sorted(claimed.items()) if name not in known]
    return render("schedules.html", rows=rows, others=others)


# -- actions ---------------------------------------------------------------------------------------


def job_action(job_id: str, action: str) -> BaseResponse:
    """``POST`` an action on one job (``requeue``, ``cancel``, ``delete``); redirects back on success.

    :param job_id: the job's id.
    :param action: one of :data:`ACTIONS`.
    :raises PageError: ``403`` without the form's CSRF token, ``404`` for an unknown action or job,
        ``409`` when the action does not fit the job's status.
    """
    if not csrf.valid_post():
        raise PageError(
            403,
            "Form expired",
            "This action was refused: its form did not carry this browser's security token (CSRF protection).",
            "Go back, reload the page and try again. The dashboard's cookie must be allowed.",
        )
    if action not in ACTIONS:
        raise PageError(404, "No such action", f"There is no action {action!r}.", "They are: " + ", ".join(ACTIONS))
    state = _state()
    job = _job(state, job_id, action)
    store = state.store
    done: str
    if action == "requeue":
        if store.requeue(job.id) is None:
            raise _conflict(job, "Only a Failed job can be requeued.")
        done = "requeued"
    elif action == "cancel":
        outcome, _ = store.cancel(job.id, result_ttl=state.settings.result_ttl)
        if outcome is CancelResult.NOT_FOUND:
            raise PageError(404, "Job not found", f"There is no job with the id {job_id!r}.")
        if outcome is CancelResult.FINISHED:
            raise _conflict(job, "Only a queued, scheduled or running job can be canceled.")
        done = "canceled" if outcome is CancelResult.CANCELED else "cancel-requested"
    else:
        if not store.delete(job.id):
            raise _conflict(job, "Only a finished (Completed, Failed or Canceled) job can be deleted.")
        current_app.logger.info("dashboard: %s deleted job %s (%s)", request.remote_addr, job.id, job.name)
        return redirect(url_for(".job_list", status=job.status.value, done="deleted"), code=303)
    current_app.logger.info("dashboard: %s %s job %s (%s)", request.remote_addr, done, job.id, job.name)
    if request.form.get("back") == "list":
        return redirect(url_for(".job_list", status=job.status.value, done=done), code=303)
    return redirect(url_for(".job_detail", job_id=job.id, done=done), code=303)


def _conflict(job: Job, rule: str) -> PageError:
    # Read again: the job may have moved on since the page was shown.
    current = _state().store.get(job.id) or job
    return PageError(
        409,
        "Not possible now",
        f"{rule} This job is {current.status.value}.",
        "Reload the job's page to see where it is now.",
    )
