"""Signals as bytes on a socket the main thread waits on, never acted on inside a signal handler.

The handlers installed here do nothing, and the interpreter writes each signal's number to a socket
(:func:`signal.set_wakeup_fd`) that the main loop waits on. So the loop reacts at once, and no lock
is ever taken inside a handler (a handler that takes a lock the interrupted code holds deadlocks).
The worker processes of :mod:`~flask_asyncendpoints.supervisor` wait on it.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
from collections.abc import Iterable
from typing import Any


def _ignore(signum: int, frame: Any) -> None:
    """The Python-level handler: the wake-up socket already carries the signal to the main loop."""


class SignalInbox:
    """Signals, and wake-ups from other threads, as bytes on a socket the main thread waits on.

    Installs do-nothing handlers for ``signals`` and points :func:`signal.set_wakeup_fd` at its
    socket; :meth:`close` puts back what was there before. Main thread only.

    :param signals: the signal numbers to receive.
    """

    def __init__(self, signals: Iterable[int]) -> None:
        # A socket pair rather than a pipe: set_wakeup_fd takes only sockets on Windows.
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous: dict[int, Any] = {}
        for signum in signals:
            self._previous[signum] = signal.signal(signum, _ignore)

    def wake(self) -> None:
        """Make :meth:`wait` return (from any thread); it reports this as ``0``."""
        # OSError: the buffer is full, so the waiting loop is woken anyway; or the inbox is closed.
        with contextlib.suppress(OSError):
            self._writer.send(b"\0")

    def wait(self, timeout: float | None) -> list[int]:
        """Wait up to ``timeout`` seconds for a signal or a wake-up; what came, oldest first (``0``: a wake-up)."""
        readable, _, _ = select.select([self._reader], [], [], timeout)
        received = bytearray()
        if readable:
            while True:
                try:
                    chunk = self._reader.recv(4096)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                received += chunk
        return list(received)

    def close(self) -> None:
        """Put back the previous handlers and wake-up fd."""
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()
