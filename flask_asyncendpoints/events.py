"""Job events: one log record on :data:`job_logger` and one signal for each.

Every place where a job's life moves on (a submit, an attempt's start, a retry, a completion, a
failure, a recovery, a cancel) calls :func:`emit` once, in the process where it happened. The
record carries the job's fields as attributes (``logging``'s ``extra=``), so a JSON log formatter
can write them out; the library installs no handler.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from blinker import NamedSignal

from .jobs import Job
from .signals import (
    job_canceled,
    job_completed,
    job_failed,
    job_recovered,
    job_retried,
    job_started,
    job_submitted,
)

#: The logger of job events. Each record has the attributes ``event``, ``job_id``, ``job_name``,
#: ``queue``, ``attempt``, ``status`` and ``duration`` (``job_name``, since ``name`` is the
#: record's logger name).
job_logger = logging.getLogger("flask_asyncendpoints.jobs")

_errors = logging.getLogger("flask_asyncendpoints")


class JobEvent(str, enum.Enum):
    """A moment in a job's life, as named in its log record's ``event`` attribute."""

    SUBMITTED = "submitted"
    STARTED = "started"
    RETRIED = "retried"
    COMPLETED = "completed"
    FAILED = "failed"
    RECOVERED = "recovered"
    CANCELED = "canceled"


_SIGNALS: dict[JobEvent, NamedSignal] = {
    JobEvent.SUBMITTED: job_submitted,
    JobEvent.STARTED: job_started,
    JobEvent.RETRIED: job_retried,
    JobEvent.COMPLETED: job_completed,
    JobEvent.FAILED: job_failed,
    JobEvent.RECOVERED: job_recovered,
    JobEvent.CANCELED: job_canceled,
}

_LEVELS = {
    JobEvent.SUBMITTED: logging.INFO,
    JobEvent.STARTED: logging.INFO,
    JobEvent.RETRIED: logging.WARNING,
    JobEvent.COMPLETED: logging.INFO,
    JobEvent.FAILED: logging.ERROR,
    JobEvent.RECOVERED: logging.WARNING,
    JobEvent.CANCELED: logging.INFO,
}


def send_signal(signal: Any, sender: Any, **kwargs: Any) -> None:
    """Send a signal if anyone listens; a receiver that raises is logged, never the caller's problem."""
    if not signal.receivers:
        return
    try:
        signal.send(sender, **kwargs)
    except Exception:
        _errors.exception("a receiver of %s failed", signal.name)


def emit(event: JobEvent, sender: Any, job: Job, *, attempt: int | None = None, duration: float | None = None) -> None:
    """Log one job event on :data:`job_logger` and send its signal.

    :param event: what happened.
    :param sender: the app (the signal's sender).
    :param job: the job as stored after the event.
    :param attempt: the attempt number the event is about (default: the job's current one, 0 for a
        job that never started).
    :param duration: seconds the attempt ran, where the event ends one.
    """
    if attempt is None:
        attempt = job.retry_count + 1 if job.started_at is not None else 0
    level = _LEVELS[event]
    if job_logger.isEnabledFor(level):
        queue = job.queue
        job_logger.log(
            level,
            *_message(event, job, attempt, queue, duration),
            extra={
                "event": event.value,
                "job_id": job.id,
                "job_name": job.name,
                "queue": queue,
                "attempt": attempt,
                "status": job.status.value,
                "duration": duration,
                "error_code": job.error.code if job.error is not None else None,
            },
        )
    send_signal(_SIGNALS[event], sender, job=job, job_id=job.id, attempt=attempt, duration=duration)


def _message(event: JobEvent, job: Job, attempt: int, queue: str, duration: float | None) -> tuple[Any, ...]:
    """The record's message and its arguments (formatted only if a handler takes the record)."""
    took = duration if duration is not None else 0.0
    error = job.error
    if event is JobEvent.SUBMITTED:
        return "job %s (%s) submitted to queue %s: %s", job.id, job.name, queue, job.status.value
    if event is JobEvent.STARTED:
        return "job %s (%s) attempt %d started", job.id, job.name, attempt
    if event is JobEvent.COMPLETED:
        return "job %s (%s) attempt %d completed in %.3f s", job.id, job.name, attempt, took
    if event is JobEvent.RETRIED:
        code = error.code if error is not None else "UNKNOWN"
        return (
            "job %s (%s) attempt %d failed in %.3f s (%s); retry %d scheduled",
            job.id,
            job.name,
            attempt,
            took,
            code,
            job.retry_count,
        )
    if event is JobEvent.FAILED:
        code, text = (error.code, error.message) if error is not None else ("UNKNOWN", "")
        return "job %s (%s) failed for good after attempt %d: %s: %s", job.id, job.name, attempt, code, text
    if event is JobEvent.RECOVERED:
        return "recovered job %s (%s) after its lease expired: now %s", job.id, job.name, job.status.value
    return "job %s (%s) canceled", job.id, job.name
