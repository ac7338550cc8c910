"""Registered handlers and the context a handler is called with."""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from marshmallow import Schema
from werkzeug.datastructures import Headers, MultiDict

from .encoding import safe_text
from .jobs import DEFAULT_QUEUE

#: A handler: takes the job's context, returns the job's result (JSON, or what the response schema dumps).
Handler = Callable[["JobContext"], Any]


@dataclass(frozen=True)
class HandlerSpec:
    """A handler registered under a job name, with what shapes its input and output."""

    name: str
    func: Handler
    request_schema: Schema | None = None
    response_schema: Schema | None = None
    #: ``None``: ``ASYNCENDPOINTS_DEFAULT_MAX_RETRIES``.
    max_retries: int | None = None
    #: ``None``: ``ASYNCENDPOINTS_JOB_TIMEOUT``.
    timeout: float | None = None
    #: The queue its jobs go to.
    queue: str = DEFAULT_QUEUE

    @property
    def logger_name(self) -> str:
        """The name of the logger behind ``ctx.logger``: the handler's module (``func.__module__``)."""
        return getattr(self.func, "__module__", None) or "flask_asyncendpoints.handlers"

    @functools.cached_property
    def logger(self) -> logging.Logger:
        """The logger named :attr:`logger_name`, looked up once: ``logging.getLogger`` takes
        logging's one module lock, which every pool thread would contend for on each job."""
        return logging.getLogger(self.logger_name)


if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:
    _LoggerAdapter = logging.LoggerAdapter


class JobLogger(_LoggerAdapter):
    """``ctx.logger``: a :class:`logging.LoggerAdapter` over the handler's module logger that adds
    ``job_id``, ``job_name`` and ``attempt`` to every record (as attributes, merged with the
    ``extra=`` of the call)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        given = kwargs.get("extra")
        kwargs["extra"] = {**(self.extra or {}), **given} if given else self.extra
        return msg, kwargs


def _default_logger() -> JobLogger:
    return JobLogger(logging.getLogger("flask_asyncendpoints.handlers"), {})


@dataclass
class JobContext:
    """What a handler gets: the captured request and the means to talk back to the job record.

    :ivar request: the request body, loaded through the handler's request schema (or as sent).
    :ivar headers: the request headers, without the redacted ones.
    :ivar route_params: the URL rule's variables (``/items/<int:item_id>`` gives ``item_id``).
    :ivar query_params: the query string; ``query_params.get(name)`` gives the first value,
        ``getlist(name)`` all of them.
    :ivar job_id: the job's id.
    :ivar attempt: 1 for the first run, 2 for the first retry, and so on.
    :ivar name: the job name the handler was registered under.
    :ivar cancelled: set when a cancel was requested, the attempt timed out or the worker lost the
        job's lease; a long handler checks it (``ctx.cancelled.is_set()``) and stops, returning or
        raising :class:`~flask_asyncendpoints.JobCanceled`. A cancel request reaches it within
        milliseconds on stores that announce cancels, else at the next lease renewal.
    :ivar logger: a :class:`logging.Logger`-compatible adapter over the handler's module logger
        (``logging.getLogger(handler.__module__)``); its records carry ``job_id``, ``job_name`` and
        ``attempt``. With ``ASYNCENDPOINTS_EXECUTION_LOGS`` they are kept with the job.
    """

    request: Any
    headers: Headers
    route_params: dict[str, Any]
    query_params: MultiDict[str, str]
    job_id: str
    attempt: int
    name: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)
    logger: JobLogger = field(default_factory=_default_logger, repr=False)
    _on_progress: Callable[[float, str | None], None] | None = field(default=None, repr=False)

    def report_progress(self, fraction: float, message: str | None = None) -> None:
        """Record how far the job has come; pollers see it in the job's ``progress``.

        Cheap to call often: writes to the store are throttled.

        :param fraction: from ``0.0`` to ``1.0``.
        :param message: a short human-readable note, e.g. ``"3 of 10 files"``.
        :raises ValueError: if ``fraction`` is not a number from 0 to 1.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
            raise ValueError(f"fraction must be a number from 0 to 1, not {fraction!r}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be from 0 to 1, not {fraction!r}")
        if message is not None and not isinstance(message, str):
            raise ValueError(f"message must be a string or None, not {type(message).__name__}")
        if self._on_progress is not None:
            # A note naming a file from os.listdir may hold a lone surrogate: kept as its escape.
            self._on_progress(float(fraction), safe_text(message) if message is not None else None)
