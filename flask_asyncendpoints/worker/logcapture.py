"""Execution logs: the log records a handler emits during its attempt, kept with the job (opt-in).

With ``ASYNCENDPOINTS_EXECUTION_LOGS`` on, one :class:`LogCapture` (a :class:`logging.Handler`) is
attached to the captured loggers: those named in ``ASYNCENDPOINTS_EXECUTION_LOG_LOGGERS``, or else
each handler's module logger (the logger behind ``ctx.logger``). It keeps a record only when the
thread that emitted it is running an attempt, keyed by thread, so records of other threads and of
other jobs never mix in. Lines wait in the attempt's buffer (at most ``..._MAX_LINES`` lines and
``..._MAX_BYTES`` bytes, oldest dropped first) and are written with the store's ``append_logs``:
by the maintenance thread about once a second while the attempt runs, and when it ends, before its
outcome, while its token still holds the lease. Off, none of this exists: no handler is attached
and an attempt pays nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..config import Settings
from ..errors import StoreError
from ..jobs import LogRecord
from ..stores import Store
from .ledger import Attempt, StoreHealth, logger

#: Seconds between writes of a running attempt's lines.
FLUSH_INTERVAL = 1.0

_exception_formatter = logging.Formatter()


@dataclass(eq=False)
class _Buffer:
    attempt: Attempt
    number: int
    lines: list[LogRecord] = field(default_factory=list)
    size: int = 0
    #: Set when the attempt ended; the buffer takes no more lines.
    closed: bool = False
    #: Held while lines are on their way to the store, so the attempt's last write waits for the
    #: maintenance thread's (lines stay in order, and all are written before the outcome).
    writing: threading.Lock = field(default_factory=threading.Lock)


class LogCapture(logging.Handler):
    """Keeps the records emitted in threads that run attempts, and writes them to the store.

    :param settings: the app's extension settings (the loggers and the caps).
    :param store: the app's job store.
    :param health: the worker's outage tracker, told of each write.
    """

    def __init__(self, settings: Settings, store: Store, health: StoreHealth) -> None:
        super().__init__(logging.NOTSET)
        self.settings = settings
        self.store = store
        self.health = health
        self._buffers: dict[int, _Buffer] = {}
        self._guard = threading.Lock()
        self._attached: set[str] = set()
        self._last_flush = 0.0

    # -- attaching to loggers ---------------------------------------------------------------------

    def install(self) -> None:
        """Attach to the configured loggers (with none configured, to handlers' loggers as they run)."""
        for name in self.settings.execution_log_loggers or ():
            self.attach(name)

    def attach(self, name: str) -> None:
        """Attach to the logger ``name`` (records of its children reach it too), once."""
        with self._guard:
            if name in self._attached:
                return
            self._attached.add(name)
        logging.getLogger(name).addHandler(self)

    def uninstall(self) -> None:
        """Detach from every logger (the worker has stopped)."""
        with self._guard:
            names, self._attached = self._attached, set()
        for name in names:
            logging.getLogger(name).removeHandler(self)

    # -- one attempt ------------------------------------------------------------------------------

    def begin(self, attempt: Attempt, logger_name: str) -> None:
        """Capture what the calling thread logs, for ``attempt``, until :meth:`end`.

        :param logger_name: the handler's own logger, attached to when no loggers are configured.
        """
        if self.settings.execution_log_loggers is None:
            self.attach(logger_name)
        with self._guard:
            self._buffers[threading.get_ident()] = _Buffer(attempt, attempt.job.retry_count + 1)

    def end(self, attempt: Attempt, now: float | None = None) -> None:
        """Stop capturing for the calling thread and write what is left (the attempt still holds its lease)."""
        with self._guard:
            buffer = self._buffers.get(threading.get_ident())
            if buffer is None or buffer.attempt is not attempt:
                return
            del self._buffers[threading.get_ident()]
            buffer.closed = True
        self._write(buffer, now)

    def flush_running(self, now: float | None = None, *, force: bool = False) -> None:
        """Write the lines of running attempts, at most every :data:`FLUSH_INTERVAL` seconds.

        :param force: write now, however recently the last write was.
        """
        tick = time.monotonic()
        if not force and tick - self._last_flush < FLUSH_INTERVAL:
            return
        self._last_flush = tick
        with self._guard:
            buffers = [b for b in self._buffers.values() if b.lines]
        for buffer in buffers:
            self._write(buffer, now)

    def _write(self, buffer: _Buffer, now: float | None) -> None:
        with buffer.writing:
            self._write_held(buffer, now)

    def _write_held(self, buffer: _Buffer, now: float | None) -> None:
        with self._guard:
            lines, buffer.lines, buffer.size = buffer.lines, [], 0
        attempt = buffer.attempt
        if not lines or attempt.abandoned:
            return
        settings = self.settings
        try:
            kept = self.store.append_logs(
                attempt.job.id,
                attempt.claimed.token,
                lines,
                max_lines=settings.execution_log_max_lines,
                max_bytes=settings.execution_log_max_bytes,
            )
        except StoreError as exc:
            self.health.failed(exc, "writing execution logs")
            if not buffer.closed:
                with self._guard:  # try again with the next write, still within the caps
                    for line in reversed(lines):
                        self._add(buffer, line, front=True)
            return
        self.health.answered()
        if not kept:
            logger.debug("log lines of job %s discarded: the attempt no longer holds the job", attempt.job.id)

    # -- logging.Handler --------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        buffer = self._buffers.get(record.thread or 0)
        if buffer is None or buffer.closed:
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = str(record.msg)
        if record.exc_info:
            message = f"{message}\n{_exception_formatter.formatException(record.exc_info)}"
        elif record.exc_text:
            message = f"{message}\n{record.exc_text}"
        line = LogRecord(
            attempt=buffer.number,
            at=datetime.fromtimestamp(record.created, timezone.utc),
            level=record.levelname,
            logger=record.name,
            message=self._fit(message),
        )
        with self._guard:
            self._add(buffer, line)

    def _fit(self, message: str) -> str:
        """The message as valid UTF-8 (lone surrogates replaced), cut to ``..._MAX_BYTES``."""
        data = message.encode("utf-8", "replace")
        limit = self.settings.execution_log_max_bytes
        if len(data) > limit:
            data = data[: max(0, limit - 3)] + "…".encode()
            return data.decode("utf-8", "ignore")
        return data.decode("utf-8")

    def _add(self, buffer: _Buffer, line: LogRecord, *, front: bool = False) -> None:
        """Add a line within the caps, dropping the oldest first. Call with ``_guard`` held."""
        settings = self.settings
        size = len(line.message.encode("utf-8"))
        if front:
            if len(buffer.lines) >= settings.execution_log_max_lines or (
                buffer.size + size > settings.execution_log_max_bytes
            ):
                return  # older than everything kept: it would be the first dropped
            buffer.lines.insert(0, line)
        else:
            buffer.lines.append(line)
        buffer.size += size
        while buffer.lines and (
            len(buffer.lines) > settings.execution_log_max_lines or buffer.size > settings.execution_log_max_bytes
        ):
            dropped = buffer.lines.pop(0)
            buffer.size -= len(dropped.message.encode("utf-8"))
