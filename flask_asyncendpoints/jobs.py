"""The job record: plain data shared by the stores, the worker and the HTTP layer.

Nothing here imports Flask or redis. Timestamps are timezone-aware UTC
:class:`~datetime.datetime` values; the stores keep them as epoch seconds.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .encoding import safe_text

# Re-exported: the job records' timestamps are read and written through these everywhere.
from .timestamps import from_timestamp as from_timestamp
from .timestamps import isoformat as isoformat
from .timestamps import parse_isoformat as parse_isoformat

#: Longest stack trace kept for one exception, in characters. A handler that fails
#: with a huge traceback must not make every stored job record huge.
MAX_STACK_TRACE_CHARS = 8192

#: How many chained exceptions (``__cause__``/``__context__``) are kept.
MAX_INNER_EXCEPTIONS = 5

#: The queue of jobs that name none, and the one workers serve unless told otherwise.
DEFAULT_QUEUE = "default"


class JobStatus(str, enum.Enum):
    """Where a job is in its lifecycle. The values are the strings on the wire."""

    QUEUED = "Queued"
    SCHEDULED = "Scheduled"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"

    @property
    def is_final(self) -> bool:
        """``True`` for ``Completed``, ``Failed`` and ``Canceled``: nothing will change the job again."""
        return self in FINAL_STATUSES

    @property
    def is_pending(self) -> bool:
        """``True`` while the job still waits for or occupies a worker."""
        return not self.is_final


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})
PENDING_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.IN_PROGRESS})


@dataclass(frozen=True)
class ExceptionInfo:
    """What is kept of an exception raised by a handler."""

    type: str
    message: str
    stack_trace: str | None = None
    inner_exception: ExceptionInfo | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, _depth: int = 0) -> ExceptionInfo:
        """Describe ``exc`` and the exceptions chained to it.

        :param exc: the exception, usually caught from a handler.
        """
        inner_exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        inner = None
        if inner_exc is not None and _depth < MAX_INNER_EXCEPTIONS:
            inner = cls.from_exception(inner_exc, _depth + 1)
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, chain=False))
        if len(trace) > MAX_STACK_TRACE_CHARS:
            trace = "…" + trace[-MAX_STACK_TRACE_CHARS:]
        # A message about a file name from os.listdir can hold a lone surrogate, which no store or
        # answer could encode: it is kept as its escape.
        return cls(
            type=exception_type_name(exc),
            message=safe_text(str(exc)),
            stack_trace=safe_text(trace),
            inner_exception=inner,
        )

    def to_dict(self, *, expose_traceback: bool) -> dict[str, Any]:
        """The wire form: ``type``, ``message``, ``stackTrace``, ``innerException``.

        :param expose_traceback: write the stack traces; ``None`` is written in their place otherwise.
        """
        return {
            "type": self.type,
            "message": self.message,
            "stackTrace": self.stack_trace if expose_traceback else None,
            "innerException": (
                self.inner_exception.to_dict(expose_traceback=expose_traceback)
                if self.inner_exception is not None
                else None
            ),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExceptionInfo:
        """Read the form written by :meth:`to_dict` (with tracebacks)."""
        inner = data.get("innerException")
        return cls(
            type=str(data.get("type") or ""),
            message=str(data.get("message") or ""),
            stack_trace=data.get("stackTrace"),
            inner_exception=cls.from_dict(inner) if isinstance(inner, dict) else None,
        )


@dataclass(frozen=True)
class JobError:
    """Why an attempt failed: a code, a message and, for exceptions, what was raised."""

    code: str
    message: str
    exception: ExceptionInfo | None = None
    #: The message was chosen to be shown (a :class:`~flask_asyncendpoints.JobFailure`), so
    #: ``ASYNCENDPOINTS_EXPOSE_EXCEPTION_MESSAGES`` does not hide it.
    chosen: bool = False

    @classmethod
    def from_exception(cls, exc: BaseException, code: str | None = None) -> JobError:
        """Build the error for a failed attempt.

        The code is ``code`` if given, else the ``code`` attribute of the exception when it is a
        string (as on :class:`~flask_asyncendpoints.JobFailure`), else the exception's class name
        upper-cased (``ValueError`` -> ``VALUEERROR``).
        """
        given = code or getattr(exc, "code", None)
        if not isinstance(given, str) or not given:
            given = type(exc).__name__.upper() or "UNKNOWN"
        message = safe_text(str(exc)) or type(exc).__name__
        return cls(
            code=safe_text(given),
            message=message,
            exception=ExceptionInfo.from_exception(exc),
            chosen=bool(getattr(exc, "public_message", False)),
        )

    def to_dict(self, *, expose_traceback: bool, expose_message: bool = True) -> dict[str, Any]:
        """The wire form: ``code``, ``message``, ``exception``.

        :param expose_traceback: write the stack traces (``null`` otherwise).
        :param expose_message: write the messages of unexpected exceptions; otherwise they are
            replaced by a generic text naming the exception type. Messages the handler chose (by
            raising :class:`~flask_asyncendpoints.JobFailure`) and the library's own are always written.
        """
        data: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "exception": (
                self.exception.to_dict(expose_traceback=expose_traceback) if self.exception is not None else None
            ),
        }
        if not expose_message and self.exception is not None and not self.chosen:
            hidden = f"The handler raised {self.exception.type}."
            data["message"] = hidden
            exception = data["exception"]
            while exception is not None:
                exception["message"] = hidden if exception is data["exception"] else "(hidden)"
                exception = exception["innerException"]
        return data

    def to_record(self) -> dict[str, Any]:
        """The stored form: :meth:`to_dict` with everything, plus ``chosen`` when set."""
        data = self.to_dict(expose_traceback=True)
        if self.chosen:
            data["chosen"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobError:
        """Read the form written by :meth:`to_record` (or :meth:`to_dict` with tracebacks)."""
        exc = data.get("exception")
        return cls(
            code=str(data.get("code") or "UNKNOWN"),
            message=str(data.get("message") or ""),
            exception=ExceptionInfo.from_dict(exc) if isinstance(exc, dict) else None,
            chosen=data.get("chosen") is True,
        )


@dataclass(frozen=True)
class Progress:
    """How far a running job says it has come."""

    fraction: float
    message: str | None
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``fraction``, ``message``, ``updatedAt``."""
        return {"fraction": self.fraction, "message": self.message, "updatedAt": isoformat(self.updated_at)}


@dataclass(frozen=True)
class JobPayload:
    """What the handler is called with, as captured from the submitting request.

    Everything here is JSON: ``body`` is the request body as the client sent it (validated, not yet
    loaded through the request schema), ``headers`` a list of ``[name, value]`` pairs without the
    redacted ones, ``query_params`` a mapping of name to every value given, ``owner`` the key of who
    submitted it (see :meth:`~flask_asyncendpoints.AsyncEndpoints.owner`), if anyone.
    """

    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    route_params: dict[str, Any] = field(default_factory=dict)
    query_params: dict[str, list[str]] = field(default_factory=dict)
    owner: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "body": self.body,
            "headers": [list(pair) for pair in self.headers],
            "routeParams": self.route_params,
            "queryParams": self.query_params,
        }
        if self.owner is not None:
            data["owner"] = self.owner
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobPayload:
        if data.keys() <= {"body"}:  # most jobs submitted from Python: nothing else to convert
            return cls(body=data.get("body"))
        return cls(
            body=data.get("body"),
            headers=tuple((str(k), str(v)) for k, v in data.get("headers") or ()),
            route_params=dict(data.get("routeParams") or {}),
            query_params={str(k): [str(v) for v in vs] for k, vs in (data.get("queryParams") or {}).items()},
            owner=str(data["owner"]) if data.get("owner") is not None else None,
        )


@dataclass(frozen=True)
class Job:
    """One job: its lifecycle fields (on the wire) and what it runs with (kept private).

    Stores hand out copies; changing one never changes a stored job.
    """

    id: str
    name: str
    status: JobStatus
    retry_count: int
    max_retries: int
    created_at: datetime
    last_updated_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    result: Any = None
    error: JobError | None = None
    retry_delay_until: datetime | None = None
    progress: Progress | None = None
    payload: JobPayload = field(default_factory=JobPayload, repr=False)
    #: Set when a cancel was asked for while the job was running.
    cancel_requested: bool = False
    #: The queue the job waits in (not on the wire).
    queue: str = DEFAULT_QUEUE
    #: Among the due jobs of its queue, higher priorities are claimed first (not on the wire).
    priority: int = 0

    @classmethod
    def new(
        cls,
        job_id: str,
        name: str,
        *,
        max_retries: int,
        payload: JobPayload,
        created_at: datetime,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        due_at: datetime | None = None,
    ) -> Job:
        """A job as a store creates it: no attempt made yet, ``Queued``, or ``Scheduled`` until
        ``due_at`` when that is given (a delayed job).

        :param due_at: when a delayed job becomes due; ``None`` for a job due at once.
        """
        job = object.__new__(cls)  # on the submit path: a third of the time of the dataclass __init__
        values = job.__dict__
        values.update(_NEW_JOB, id=job_id, name=name, max_retries=max_retries, payload=payload, queue=queue)
        values.update(created_at=created_at, last_updated_at=created_at, retry_delay_until=due_at, priority=priority)
        values["status"] = JobStatus.QUEUED if due_at is None else JobStatus.SCHEDULED
        return job

    def replace(self, **changes: Any) -> Job:
        """A copy with ``changes`` applied.

        :raises TypeError: for a name that is not a field.
        """
        unknown = changes.keys() - _JOB_FIELDS
        if unknown:
            raise TypeError(f"Job has no field {sorted(unknown)[0]!r}")
        # On the worker's hot path: a copy of the instance dict is about five times faster than
        # dataclasses.replace, which re-runs __init__. Job has no __post_init__ to skip.
        copy = object.__new__(Job)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy

    def requeued(self, at: datetime) -> Job:
        """The job put back in its queue at ``at`` (``Store.requeue``): Queued, as on its first
        attempt, its retries, progress, cancel request and completion cleared."""
        return self.replace(
            status=JobStatus.QUEUED,
            retry_count=0,
            completed_at=None,
            retry_delay_until=None,
            progress=None,
            cancel_requested=False,
            last_updated_at=at,
        )

    def to_dict(self, *, expose_traceback: bool = False, expose_message: bool = True) -> dict[str, Any]:
        """The job record on the wire, keys in the documented order, nulls written out.

        :param expose_traceback: include stack traces in ``error``.
        :param expose_message: include the messages of unexpected exceptions in ``error``.
        """
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status._value_,  # the plain str, without Enum's ``value`` descriptor
            "retryCount": self.retry_count,
            "maxRetries": self.max_retries,
            "createdAt": isoformat(self.created_at),
            "startedAt": isoformat(self.started_at),
            "completedAt": isoformat(self.completed_at),
            "lastUpdatedAt": isoformat(self.last_updated_at),
            "result": self.result,
            "error": (
                self.error.to_dict(expose_traceback=expose_traceback, expose_message=expose_message)
                if self.error is not None
                else None
            ),
            "retryDelayUntil": isoformat(self.retry_delay_until),
            "progress": self.progress.to_dict() if self.progress is not None else None,
        }


_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(Job))
#: Every field of a job as :meth:`Job.new` starts it, in order; it sets the others.
_NEW_JOB = dict.fromkeys(f.name for f in dataclasses.fields(Job)) | {"retry_count": 0, "cancel_requested": False}


@dataclass(frozen=True)
class ClaimedJob:
    """A job handed to one worker attempt. ``token`` proves the attempt still holds the lease."""

    job: Job
    token: str


class AttemptOutcome(str, enum.Enum):
    """How one attempt ended, as its :class:`AttemptRecord` tells. The values are stored as they are."""

    #: The handler returned; the job is ``Completed``.
    COMPLETED = "Completed"
    #: The handler failed and a retry is scheduled.
    RETRYING = "Retrying"
    #: The handler failed and the job is ``Failed`` for good.
    FAILED = "Failed"
    #: The job ended ``Canceled`` with this attempt (a cancel was requested while it ran).
    CANCELED = "Canceled"
    #: Given back unfinished at shutdown; not counted as a retry.
    RELEASED = "Released"
    #: Recovered after its lease ran out (its worker died or hung).
    LEASE_EXPIRED = "LeaseExpired"


@dataclass(frozen=True)
class AttemptRecord:
    """One finished attempt of a job, as its history (the audit trail) keeps it.

    :ivar number: the attempt's number as its handler saw it (``ctx.attempt`` of
        :class:`~flask_asyncendpoints.JobContext`): 1 for the first run, 2 for the first retry.
        A run after a release, or after a requeue, repeats a number; the history is in time order.
    :ivar started_at: when the attempt was claimed.
    :ivar finished_at: when it ended.
    :ivar worker_id: the worker that claimed it (``""`` when the claim named none).
    :ivar outcome: how it ended.
    :ivar error_code: the attempt's error code (a failure's, ``LEASEEXPIRED`` for a lost lease), or ``None``.
    :ivar error_message: the attempt's error message, or ``None``.
    """

    number: int
    started_at: datetime
    finished_at: datetime
    worker_id: str
    outcome: AttemptOutcome
    error_code: str | None = None
    error_message: str | None = None

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``number``, ``startedAt``, ``finishedAt``, ``workerId``, ``outcome``,
        ``errorCode``, ``errorMessage`` (timestamps in ISO 8601)."""
        return {
            "number": self.number,
            "startedAt": isoformat(self.started_at),
            "finishedAt": isoformat(self.finished_at),
            "workerId": self.worker_id,
            "outcome": self.outcome.value,
            "errorCode": self.error_code,
            "errorMessage": self.error_message,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttemptRecord:
        """Read the form written by :meth:`to_dict`.

        :raises ValueError: for a missing or unreadable field.
        """
        try:
            return cls(
                number=int(data["number"]),
                started_at=parse_isoformat(data["startedAt"]),
                finished_at=parse_isoformat(data["finishedAt"]),
                worker_id=str(data.get("workerId") or ""),
                outcome=AttemptOutcome(data["outcome"]),
                error_code=_optional_text(data.get("errorCode")),
                error_message=_optional_text(data.get("errorMessage")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an attempt record: {data!r}") from exc


@dataclass(frozen=True)
class LogRecord:
    """One line of a job's execution log.

    :ivar attempt: the number of the attempt that logged it (as the ``number`` of its :class:`AttemptRecord`).
    :ivar at: when it was logged.
    :ivar level: the level name, such as ``"INFO"``.
    :ivar logger: the name of the logger it was logged on.
    :ivar message: the formatted message.
    """

    attempt: int
    at: datetime
    level: str
    logger: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``attempt``, ``at`` (ISO 8601), ``level``, ``logger``, ``message``."""
        return {
            "attempt": self.attempt,
            "at": isoformat(self.at),
            "level": self.level,
            "logger": self.logger,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogRecord:
        """Read the form written by :meth:`to_dict`.

        :raises ValueError: for a missing or unreadable field.
        """
        try:
            return cls(
                attempt=int(data["attempt"]),
                at=parse_isoformat(data["at"]),
                level=str(data["level"]),
                logger=str(data["logger"]),
                message=str(data["message"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a log record: {data!r}") from exc


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)


#: The bits :func:`new_job_id` clears and sets: version 4, the RFC 4122 variant.
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)


def new_job_id() -> str:
    """A new job id: a random (version 4) UUID in its canonical text, as ``str(uuid.uuid4())`` writes
    it, in about half the time (no :class:`uuid.UUID` is built on the submit path)."""
    text = f"{int.from_bytes(os.urandom(16), 'big') & _UUID4_CLEAR | _UUID4_SET:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def parse_job_id(raw: object) -> str | None:
    """A job id as the stores keep it (the canonical lower-case UUID), or ``None`` if ``raw`` is none.

    Accepts any spelling :class:`uuid.UUID` reads, and UUID objects.
    """
    try:
        return str(raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw)))
    except ValueError:
        return None


def exception_type_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``package.module.Class`` for everything else."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
