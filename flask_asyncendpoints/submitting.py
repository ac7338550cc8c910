"""What every way of submitting a job shares: the payload built and checked, the job stored, its
priority and when it becomes due.

The HTTP submit, the Python API (:meth:`~flask_asyncendpoints.AsyncEndpoints.submit` and
``submit_many``) and the worker's scheduler (recurring jobs) all build a job's payload with
:func:`build_payload`, so each is checked to be storable as UTF-8 JSON before any store sees it,
and store it with :func:`store_job` (or :func:`store_jobs`), which put it in its queue with its
priority and due time and make each job created a ``submitted`` event. Nothing here imports the
extension, the views or the worker: all three import it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from .config import Settings
from .encoding import SURROGATE, NotJSONError, json_bytes, surrogate_in
from .errors import ConfigurationError, InvalidPayload
from .events import JobEvent, emit
from .handlers import HandlerSpec
from .jobs import Job, JobPayload
from .stores import NewJob, Store

#: The priorities a job may have (higher runs first). Wide enough for any scheme, narrow enough for
#: every store to order them exactly.
MIN_PRIORITY = -1_000_000
MAX_PRIORITY = 1_000_000

#: The size of an empty JSON list or object (``[]``, ``{}``), in bytes.
EMPTY_JSON_BYTES = 2


def check_priority(value: Any) -> int:
    """``value`` as a job priority.

    :raises ValueError: when it is not a whole number from :data:`MIN_PRIORITY` to :data:`MAX_PRIORITY`.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(
            f"A job's priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY} "
            f"(higher runs first), not {value!r}."
        )
    return value


def check_delay(value: Any) -> float:
    """``value`` as a delay in seconds.

    :raises ValueError: when it is not a finite number ≥ 0.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"A job's delay must be a number of seconds ≥ 0, not {value!r}.")
    return float(value)


def due_at(
    delay: float | None = None, eta: datetime | None = None, *, clock: Callable[[], float] | None = None
) -> float | None:
    """When a job submitted now becomes due, in epoch seconds; ``None`` for at once.

    :param delay: seconds from now.
    :param eta: the moment, a timezone-aware :class:`~datetime.datetime`.
    :param clock: the current time (default: this machine's clock, ``time.time``).
    :raises ValueError: when both are given, the delay is negative or the moment has no time zone.
    """
    if delay is not None and eta is not None:
        raise ValueError("Give a job either a delay (seconds) or an eta (a datetime), not both.")
    if eta is not None:
        if not isinstance(eta, datetime):
            raise ValueError(f"eta must be a datetime, not {type(eta).__name__}.")
        if eta.tzinfo is None or eta.utcoffset() is None:
            raise ValueError(
                "eta must be timezone-aware, e.g. datetime(2026, 1, 1, 3, 0, tzinfo=timezone.utc): "
                "a naive datetime does not say which 3 o'clock it means."
            )
        return eta.timestamp()
    if delay is None:
        return None
    seconds = check_delay(delay)
    if seconds <= 0:
        return None
    return (clock() if clock is not None else time.time()) + seconds


def route_option(check: Callable[[Any], Any], value: Any) -> Any:
    """``check(value)`` for a route's ``priority=`` or ``delay=``, as a configuration error.

    :raises ConfigurationError: when the check refuses the value.
    """
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigurationError(f"{exc} Give the route a number, or a function of the request body.") from None


class CheckedPayload(NamedTuple):
    """A job's request as it will be stored, with its size as stored."""

    payload: JobPayload
    #: The body as stored (UTF-8 JSON), in bytes; 0 for no body.
    body_bytes: int
    #: The stored headers, route and query parameters and owner key (UTF-8 JSON), in bytes.
    context_bytes: int


def build_payload(
    settings: Settings,
    body: Any,
    headers: Iterable[tuple[str, str]],
    route_params: dict[str, Any],
    query_params: dict[str, list[str]],
    owner: str | None,
) -> CheckedPayload:
    """The payload a job is stored with, checked: the one place every submit builds it.

    The redacted headers are dropped here, so no caller can store them. Everything is checked to
    be storable as UTF-8 JSON here, before any store sees it: a lone surrogate that Python's
    ``json`` reads from ``"\\ud800"`` would otherwise fail in one store's encoder and be kept by
    another, to fail every answer that shows it.

    :param settings: the app's settings (the redacted headers).
    :param body: the request body as sent (JSON data), not yet validated.
    :param headers: the request headers, redacted ones included.
    :param route_params: the URL rule's variables, as JSON.
    :param query_params: the query string, every value of each name.
    :param owner: the owner key the job is bound to, or ``None``.
    :returns: the payload and its size as stored.
    :raises ~flask_asyncendpoints.errors.InvalidPayload: naming the first part that cannot be stored.
    """
    redact = settings.redact_headers
    kept = tuple([(k, v) for k, v in headers if k.lower() not in redact])  # a list: no generator per header
    payload = JobPayload(
        body=body,
        headers=kept,
        route_params=route_params,
        query_params=query_params,
        owner=owner,
    )
    try:
        body_bytes = json_bytes(body, "body") if body is not None else 0
        context_bytes = (
            (_headers_bytes(kept) if kept else EMPTY_JSON_BYTES)
            + _json_size(route_params, "route_params")
            + _json_size(query_params, "query_params")
            + (json_bytes(owner, "the owner key") if owner is not None else 0)
        )
    except NotJSONError as exc:
        raise InvalidPayload(f"The request cannot be stored as UTF-8 JSON: {exc}.", exc.kind) from None
    return CheckedPayload(payload, body_bytes, context_bytes)


def max_retries_of(spec: HandlerSpec, settings: Settings) -> int:
    """The handler's retries, else ``ASYNCENDPOINTS_DEFAULT_MAX_RETRIES``."""
    return spec.max_retries if spec.max_retries is not None else settings.default_max_retries


def store_job(
    store: Store,
    settings: Settings,
    spec: HandlerSpec,
    job_id: str,
    payload: JobPayload,
    *,
    sender: Any,
    queue: str | None = None,
    priority: int = 0,
    due: float | None = None,
    now: float | None = None,
) -> tuple[Job, bool]:
    """Store a new job for ``spec`` with a payload from :func:`build_payload`; a job created is a
    ``submitted`` event.

    :param store: the app's job store.
    :param settings: the app's settings (retries, the pending-jobs limit).
    :param spec: the handler the job is for.
    :param job_id: the new job's id (normalized); an existing job with it is returned instead.
    :param payload: what the handler will be called with.
    :param sender: the app (the sender of ``job_submitted``).
    :param queue: the queue (default: the handler's).
    :param priority: higher runs first among the due jobs of its queue.
    :param due: epoch seconds when it becomes due (``None``: at once).
    :param now: epoch seconds, passed to the store (tests and the scheduler pass one).
    :returns: the job, and whether it was created (``False``: ``job_id`` named an existing job).
    :raises ~flask_asyncendpoints.stores.PendingLimitReached: at ``ASYNCENDPOINTS_MAX_PENDING_JOBS``.
    :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
    """
    job, created = store.create(
        job_id,
        spec.name,
        payload,
        max_retries=max_retries_of(spec, settings),
        queue=queue or spec.queue,
        priority=priority,
        due=due,
        max_pending=settings.max_pending_jobs,
        now=now,
    )
    if created:
        emit(JobEvent.SUBMITTED, sender, job)
    return job, created


def store_jobs(
    store: Store,
    settings: Settings,
    spec: HandlerSpec,
    jobs: Sequence[tuple[str, JobPayload]],
    *,
    sender: Any,
    priority: int = 0,
    due: float | None = None,
) -> list[tuple[Job, bool] | None]:
    """:func:`store_job` for many jobs in one go (``Store.create_many``), each ``(job_id, payload)``.

    :returns: for each, the job and whether it was created, or ``None`` when it was refused at
        ``ASYNCENDPOINTS_MAX_PENDING_JOBS`` (nothing is stored for it).
    :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
    """
    max_retries = max_retries_of(spec, settings)
    outcomes = store.create_many(
        [
            NewJob(
                id=job_id,
                name=spec.name,
                payload=payload,
                max_retries=max_retries,
                queue=spec.queue,
                priority=priority,
                due=due,
            )
            for job_id, payload in jobs
        ],
        max_pending=settings.max_pending_jobs,
    )
    for outcome in outcomes:
        if outcome is not None and outcome[1]:
            emit(JobEvent.SUBMITTED, sender, outcome[0])
    return outcomes


def _json_size(value: Any, where: str) -> int:
    """:func:`~flask_asyncendpoints.encoding.json_bytes`, with no encoding for an empty dict (every
    submit from Python has empty parameters)."""
    if not value and type(value) is dict:
        return EMPTY_JSON_BYTES
    return json_bytes(value, where)


def _headers_bytes(headers: tuple[tuple[str, str], ...]) -> int:
    """The headers' size as stored (a JSON list of ``[name, value]`` pairs); each one named when it cannot be."""
    try:
        return json_bytes(headers, "headers")  # pairs are written as lists
    except NotJSONError:
        for name, value in headers:
            for part in (name, value):
                bad = surrogate_in(part) if isinstance(part, str) else None
                if bad is not None:
                    raise NotJSONError(
                        f"the header {name!a} holds a lone UTF-16 surrogate ({bad!a})", SURROGATE
                    ) from None
        raise
