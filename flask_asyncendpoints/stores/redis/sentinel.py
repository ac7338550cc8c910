"""Following the Sentinels through a failover, so the store never writes to a master that is being replaced.

redis-py's Sentinel client asks the Sentinels for the master when a connection connects, and the
connection then stays with that server. When the Sentinels move the master while the old one still
runs (``SENTINEL FAILOVER``, or a master that was cut off and comes back), the old master goes on
taking writes until the Sentinels turn it into a replica of the new one, seconds later (four of
their hello periods, 8 s by default), and it then throws away every write it took since the
promotion. A connection held by a thread would write into that hole the whole time: in a test with
a steady stream of submits, more than half of the jobs acknowledged during a failover were gone
after it.

:class:`SentinelWatch` listens to the events each Sentinel publishes, one subscriber thread per
Sentinel. From the moment one of them starts failing the store's master over (``+try-failover``,
``+selected-slave``), the store makes no call and raises :class:`~flask_asyncendpoints.StoreError`
(HTTP ``503``, a worker backing off), until ``+switch-master`` names the new master and the Sentinels
answer with it; then each thread drops its connection to the old master before its next call, and
the store's pub/sub subscribes again. A failover the Sentinels abort (``-failover-abort-…``) ends the
pause, and so does :data:`FENCE_SECONDS`, should the end of a failover never be heard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ...errors import StoreError
from .codec import as_text
from .connection import import_redis

logger = logging.getLogger(__package__)

#: The most seconds the store pauses its calls after a Sentinel started a failover it has not
#: heard the end of; it then asks the Sentinels for the master again.
FENCE_SECONDS = 10.0

#: The most seconds the store waits, after ``+switch-master``, for the Sentinels it asks to name
#: the new master (each learns it from the one that did the failover within its hello period).
AGREE_SECONDS = 5.0

#: Events that start a failover of a master, published by the Sentinel that attempts it.
_STARTS = ("+try-failover", "+selected-slave", "+failover-state-send-slaveof-noone")
_SWITCH = "+switch-master"
#: Every way a failover ends without a new master: ``-failover-abort-not-elected``, ``…-no-good-slave``…
_ABORTS = "-failover-abort-*"

#: Seconds a subscriber thread waits for a message before it looks whether it should stop.
_POLL = 0.5


def sentinel_pool(client: Any) -> Any | None:
    """The connection pool of ``client`` when it is a Sentinel-managed master's, else ``None``."""
    try:
        from redis.sentinel import SentinelConnectionPool
    except ImportError:
        return None
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool) and pool.is_master:
        return pool
    return None


class SentinelWatch:
    """The failovers of one Sentinel service, as the store must know them.

    :param pool: the ``redis.sentinel.SentinelConnectionPool`` of the store's client.
    :param clock: monotonic seconds, for the ceiling of a pause (tests move it by hand).
    :raises ConfigurationError: when the ``redis`` package is missing.
    """

    def __init__(self, pool: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._exceptions = import_redis().exceptions
        self._pool = pool
        self._clock = clock
        #: The name the Sentinels know the master by.
        self.service: str = pool.service_name
        self._sentinels: list[Any] = list(pool.sentinel_manager.sentinels)
        self._lock = threading.Lock()
        #: Moves each time the connections must leave the server they are on (a new master); a
        #: thread's connection made under an older number is dropped before its next call.
        self.generation = 0
        #: Per Sentinel (by position) that started a failover: when the pause it asked for ends.
        self._fences: dict[int, float] = {}
        self._master: tuple[str, int] | None = None
        self._switching: tuple[str, int] | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._pid = 0
        self._closed = threading.Event()

    def on_switch(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (from a subscriber thread) each time the master has moved."""
        self._callbacks.append(callback)

    def start(self) -> None:
        """Start the subscriber threads in this process, unless they run here already."""
        with self._lock:
            if self._pid == os.getpid() or self._closed.is_set():
                return
            self._pid = os.getpid()
            for index, sentinel in enumerate(self._sentinels):
                thread = threading.Thread(
                    target=self._listen,
                    args=(index, sentinel),
                    name=f"asyncendpoints-sentinel-{index}",
                    daemon=True,
                )
                thread.start()

    def check(self) -> None:
        """Raise :class:`~flask_asyncendpoints.StoreError` while a failover of the master is under way.

        :raises StoreError: from the start of a failover until the Sentinels name the new master.
        """
        if not self._fences:
            return
        now = self._clock()
        with self._lock:
            expired = [index for index, until in self._fences.items() if until <= now]
            for index in expired:
                del self._fences[index]
            if expired and not self._fences:
                # The end of the failover was never heard: ask the Sentinels afresh.
                self.generation += 1
            if not self._fences:
                return
        raise StoreError(
            f"The Sentinels are failing over the master of service {self.service!r}: the store makes no call "
            f"until they name the new master (at most {FENCE_SECONDS:g} s), so that nothing is written to a "
            "master that is being replaced. Try again shortly."
        )

    def close(self) -> None:
        """Stop the subscriber threads (within half a second)."""
        self._closed.set()

    # -- the subscriber threads ----------------------------------------------------------------------

    def _listen(self, index: int, sentinel: Any) -> None:
        """Hear one Sentinel's failover events until closed, subscribing again after a lost connection."""
        errors = (self._exceptions.RedisError, OSError, ValueError)
        backoff = 0.1
        failing = False
        while not self._closed.is_set():
            pubsub = sentinel.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*_STARTS, _SWITCH)
                pubsub.psubscribe(_ABORTS)
                # Anything missed while not subscribed (at start, or after a lost connection).
                self._catch_up()
                if failing:
                    logger.info("hearing Sentinel %s again", _address(sentinel))
                    failing = False
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=_POLL)
                    if message is not None:
                        backoff = 0.1
                        self._heard(index, message)
            except Exception as exc:
                if self._closed.is_set():
                    break
                if not failing:
                    logger.warning(
                        "lost the connection to Sentinel %s (%s); retrying. The store hears of failovers "
                        "from the other Sentinels meanwhile.",
                        _address(sentinel),
                        exc,
                    )
                    failing = True
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(*errors):
                    pubsub.close()

    def _heard(self, index: int, message: dict[str, Any]) -> None:
        channel = as_text(message.get("channel", ""))
        words = as_text(message.get("data", "")).split()
        if channel == _SWITCH:
            # "<service> <old ip> <old port> <new ip> <new port>"
            if len(words) == 5 and words[0] == self.service:
                self._switched((words[3], int(words[4])))
            return
        # "master <service> <ip> <port>", or "<kind> <name> <ip> <port> @ <service> <ip> <port>".
        service = words[1] if words[:1] == ["master"] and len(words) > 1 else None
        if "@" in words and words.index("@") + 1 < len(words):
            service = words[words.index("@") + 1]
        if service != self.service:
            return
        if channel in _STARTS:
            with self._lock:
                started = not self._fences
                self._fences[index] = self._clock() + FENCE_SECONDS
            if started:
                logger.info(
                    "the Sentinels are failing over the master of %r (%s): store calls wait for the new master",
                    self.service,
                    channel,
                )
        elif channel.startswith("-failover-abort"):
            with self._lock:
                self._fences.pop(index, None)
                if not self._fences:
                    self.generation += 1
            logger.info("a Sentinel aborted the failover of %r (%s)", self.service, channel)

    def _switched(self, new: tuple[str, int]) -> None:
        """The master moved to ``new``: once the Sentinels answer with it, move every connection there."""
        with self._lock:
            if new == self._switching or (new == self._master and not self._fences):
                return  # another thread is on it, or it is known already
            self._switching = new
        deadline = self._clock() + AGREE_SECONDS
        while not self._closed.is_set():
            # Asking here also drops the pool's idle connections to the old master.
            if self._discover() == new or self._clock() > deadline:
                break
            self._closed.wait(0.05)
        with self._lock:
            old, self._master, self._switching = self._master, new, None
            self.generation += 1
            self._fences.clear()
        logger.info(
            "the Sentinels moved the master of %r%s to %s:%s; the store's connections follow",
            self.service,
            f" from {old[0]}:{old[1]}" if old else "",
            *new,
        )
        for callback in list(self._callbacks):
            try:
                callback()
            except Exception:
                logger.exception("a callback for the new master of %r failed", self.service)

    def _catch_up(self) -> None:
        """Learn the master now; when it is not the one known before, the master moved unheard."""
        found = self._discover()
        if found is None:
            return
        with self._lock:
            known = self._master
            if known is None:
                self._master = found
                return
        if found != known:
            self._switched(found)

    def _discover(self) -> tuple[str, int] | None:
        try:
            host, port = self._pool.get_master_address()
        except (self._exceptions.RedisError, OSError):
            return None
        return str(host), int(port)


def _address(client: Any) -> str:
    options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    return f"{options.get('host', '?')}:{options.get('port', '?')}"
