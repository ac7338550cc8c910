"""Wake-ups: this process's waiters, and PostgreSQL's ``LISTEN`` for what other processes commit.

:class:`Signals` is what the waiters of one process block on: idle workers (new work), long-polls
(a job finished) and cancel watchers. Every committed transaction of the process signals it
directly. On PostgreSQL, :class:`Listener` also listens on the store's channels with a connection of
its own and signals what other processes commit, within milliseconds; elsewhere other processes'
work is found by polling (the worker's ``POLL_INTERVAL``, the long-poll's growing interval).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger(__package__)

#: Seconds between tries to reconnect the listener, growing to the second figure.
RECONNECT_FIRST, RECONNECT_MAX = 0.1, 5.0


class Signals:
    """The waiters of one process, and what wakes them."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._generation = 0
        self._woken = False
        self._finished: dict[str, list[threading.Event]] = {}
        self._cancel_watchers: list[Callable[[str], None]] = []

    # -- workers waiting for work --------------------------------------------------------------------

    def generation(self) -> int:
        """A number that changes with every wake-up: read it before looking for work, then
        :meth:`wait_for_work` with it, and no wake-up between the two is missed."""
        with self._lock:
            return self._generation

    def take_wake(self) -> bool:
        """``True`` (once) when :meth:`wake` was called while no one waited."""
        with self._lock:
            woken, self._woken = self._woken, False
            return woken

    def work(self) -> None:
        """Work may be due: wake every waiting worker (each claims, or waits again)."""
        with self._lock:
            self._generation += 1
            self._lock.notify_all()

    def wake(self) -> None:
        """Wake every waiting worker, and the next one to wait if none does now."""
        with self._lock:
            self._woken = True
            self._generation += 1
            self._lock.notify_all()

    def wait_for_work(self, generation: int, timeout: float) -> bool:
        """Block until the generation moves on from ``generation`` or ``timeout`` seconds pass;
        whether it moved on."""
        with self._lock:
            moved = self._lock.wait_for(lambda: self._generation != generation, timeout)
            self._woken = False
            return moved

    # -- long-polls ----------------------------------------------------------------------------------

    @contextmanager
    def watching(self, job_id: str) -> Iterator[threading.Event]:
        """An event set whenever the job is announced finished, while the ``with`` block runs."""
        event = threading.Event()
        with self._lock:
            self._finished.setdefault(job_id, []).append(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._finished.get(job_id, [])
                if event in events:
                    events.remove(event)
                if not events:
                    self._finished.pop(job_id, None)

    def finished(self, job_ids: Iterable[str]) -> None:
        """These jobs finished: wake their long-polls."""
        with self._lock:
            events = [event for job_id in job_ids for event in self._finished.get(job_id, ())]
        for event in events:
            event.set()

    def everything(self) -> None:
        """Wake every waiter to look again (what was announced while the listener was away is lost)."""
        with self._lock:
            events = [event for waiting in self._finished.values() for event in waiting]
        for event in events:
            event.set()
        self.work()

    # -- cancel watchers -----------------------------------------------------------------------------

    def watch_cancels(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(job_id)`` for each cancel requested; the answer stops it."""
        with self._lock:
            self._cancel_watchers.append(callback)

        def stop() -> None:
            with self._lock:
                if callback in self._cancel_watchers:
                    self._cancel_watchers.remove(callback)

        return stop

    @property
    def watching_cancels(self) -> bool:
        with self._lock:
            return bool(self._cancel_watchers)

    def canceled(self, job_ids: Iterable[str]) -> None:
        """Cancels were requested for these running jobs: tell the watchers (outside the lock)."""
        with self._lock:
            watchers = list(self._cancel_watchers)
        for job_id in job_ids:
            for callback in watchers:
                try:
                    callback(job_id)
                except Exception:
                    logger.exception("a cancel watcher failed for job %s", job_id)


class Listener:
    """A thread that listens on PostgreSQL channels and passes what it hears to :class:`Signals`.

    It connects on :meth:`start` and again after any error, with a growing pause; when it is back
    it wakes every waiter, since what was sent while it was away is lost.

    :param connect: opens a new psycopg 3 connection (the listener sets it to autocommit).
    :param channels: the channel names by what they carry (``work``, ``finished``, ``cancel``).
    :param signals: the process's waiters.
    :param where: the database, as log lines name it.
    """

    def __init__(self, connect: Callable[[], Any], channels: dict[str, str], signals: Signals, where: str) -> None:
        self._connect = connect
        self._channels = channels
        self._signals = signals
        self._where = where
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Set while the listener is connected and listening.
        self.listening = threading.Event()

    def start(self) -> None:
        """Start the thread, unless it runs already."""
        with self._lock:
            if (self._thread is not None and self._thread.is_alive()) or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, name="asyncendpoints-sql-listener", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread (it ends within a second)."""
        self._stop.set()

    def _loop(self) -> None:
        pause = RECONNECT_FIRST
        failures = 0
        while not self._stop.is_set():
            try:
                connection = self._connect()
                try:
                    connection.autocommit = True
                    for channel in self._channels.values():
                        connection.execute('LISTEN "' + channel.replace('"', '""') + '"')
                    self.listening.set()
                    if failures:
                        logger.info("listening on %s again after %d failed tries", self._where, failures)
                        # What was sent while the listener was away is lost: every waiter looks again.
                        self._signals.everything()
                    failures, pause = 0, RECONNECT_FIRST
                    self._listen(connection)
                finally:
                    self.listening.clear()
                    connection.close()
            except Exception as exc:
                failures += 1
                if failures == 1:
                    logger.warning(
                        "lost the notification connection to %s (%r); polling until it is back", self._where, exc
                    )
                self._stop.wait(pause)
                pause = min(pause * 2, RECONNECT_MAX)

    def _listen(self, connection: Any) -> None:
        work, finished, cancel = self._channels["work"], self._channels["finished"], self._channels["cancel"]
        while not self._stop.is_set():
            for note in connection.notifies(timeout=1.0):
                if note.channel == work:
                    self._signals.work()
                elif note.channel == finished:
                    self._signals.finished(note.payload.split(","))
                elif note.channel == cancel:
                    self._signals.canceled([note.payload])
