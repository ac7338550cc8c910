"""The Redis server's clock, as this process reads it without asking the server on every call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

#: Seconds between two readings of the server's clock.
RESYNC_SECONDS = 60.0

#: An offset smaller than this (seconds), beyond the uncertainty of the reading itself, is taken as
#: none: the two clocks agree, as they do when Redis runs on the same machine.
AGREEMENT = 0.001


class ServerClock:
    """The server's time: this machine's clock plus the offset measured by ``TIME`` once a minute.

    Every timestamp the store writes (creation, claim, lease, completion) is on this clock, so all
    processes agree on one clock whatever their own clocks say, and no script spends a ``TIME`` call
    on it. The offset is measured with the reading's round trip taken into account; when the clocks
    agree within that (and :data:`AGREEMENT`), the offset is zero and the local clock is used as is.

    :param read_time: sends ``TIME`` to the server and answers its reply.
    """

    def __init__(self, read_time: Callable[[], Any]) -> None:
        self._read_time = read_time
        self._lock = threading.Lock()
        self._offset = 0.0
        self._next_sync = 0.0

    @property
    def offset(self) -> float:
        """Seconds to add to this machine's clock to get the server's (as last measured)."""
        return self._offset

    def now(self) -> float:
        """The server's time now, in epoch seconds.

        :raises Exception: whatever ``read_time`` raises when a reading is due and fails.
        """
        if time.monotonic() >= self._next_sync:
            self.sync()
        return time.time() + self._offset

    def sync(self) -> None:
        """Measure the offset again now."""
        with self._lock:
            before = time.time()
            seconds, micros = self._read_time()
            after = time.time()
            server = int(seconds) + int(micros) / 1_000_000
            offset = server - (before + after) / 2
            self._offset = 0.0 if abs(offset) <= (after - before) / 2 + AGREEMENT else offset
            self._next_sync = time.monotonic() + RESYNC_SECONDS
