"""What the scripts announce, heard by one subscriber thread per store and process.

The scripts publish on per-queue channels: cancel requests (``T:cancels``, for running handlers)
and, on a cluster, wake-ups (``T:wake``). Long-polls block on their job's own token list instead
(see :meth:`~.waiting.RedisWaiting.wait_for_finish`).
On a single server they are ordinary channels (``PUBLISH``/``SUBSCRIBE``); on Redis Cluster they
are sharded channels (``SPUBLISH``/``SSUBSCRIBE``, Redis 7), each in its queue's slot, so a message
goes to the one shard that owns the queue rather than over the whole cluster bus.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .codec import as_text
from .connection import import_redis

if TYPE_CHECKING:
    import redis
    import redis.cluster

# The package's name rather than this module's: every part of the Redis store logs as one logger.
logger = logging.getLogger(__package__)

Handler = Callable[[str], None]

#: Seconds the thread waits for a message before it looks for channels to add.
_POLL = 0.05


class Notifier:
    """Calls the handlers of a channel with each message published on it.

    Channels are subscribed by the thread itself (redis-py's pub/sub is not for several threads),
    within :data:`_POLL` seconds of :meth:`listen`; :meth:`listen` answers an event that is set
    once the subscription is confirmed. Once subscribed, a channel stays subscribed until
    :meth:`close`. The thread starts with the first :meth:`listen`, again in a forked child, and again
    after it has given up on a lost connection with nothing to listen to.

    :param client: the client to subscribe with (``redis.Redis`` or ``redis.cluster.RedisCluster``).
    :param sharded: subscribe with ``SSUBSCRIBE`` (Redis Cluster) rather than ``SUBSCRIBE``.
    :raises ConfigurationError: when the ``redis`` package is missing.
    """

    def __init__(self, client: redis.Redis | redis.cluster.RedisCluster, *, sharded: bool) -> None:
        self._exceptions = import_redis().exceptions
        self._client = client
        self._sharded = sharded
        self._lock = threading.Lock()
        self._handlers: dict[str, list[Handler]] = {}
        #: Set once a channel's subscription is confirmed; cleared while it is lost.
        self._ready: dict[str, threading.Event] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = threading.Event()
        self._resubscribe = threading.Event()

    def listen(self, channel: str, handler: Handler) -> tuple[threading.Event, Callable[[], None]]:
        """Call ``handler(message)`` with each message on ``channel``, from the subscriber thread.

        :returns: an event set once the channel is subscribed, and a function that removes the handler.
        """
        with self._lock:
            self._handlers.setdefault(channel, []).append(handler)
            ready = self._ready.setdefault(channel, threading.Event())
        self._ensure_thread()

        def remove() -> None:
            with self._lock:
                handlers = self._handlers.get(channel, [])
                if handler in handlers:
                    handlers.remove(handler)

        return ready, remove

    def subscribed(self, channel: str) -> threading.Event:
        """The event set once ``channel`` (listened to already) is subscribed."""
        with self._lock:
            return self._ready.setdefault(channel, threading.Event())

    def resubscribe(self) -> None:
        """Subscribe every channel again on a new connection (within :data:`_POLL` seconds): the server
        moved (a Sentinel failover), and messages now go to another one."""
        self._resubscribe.set()

    def close(self) -> None:
        """Stop the subscriber thread (within a second); waiters fall back to their own timeouts."""
        self._closed.set()

    def _ensure_thread(self) -> None:
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            if alive and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            for ready in self._ready.values():
                ready.clear()
            self._thread = threading.Thread(target=self._run, name="asyncendpoints-redis-subscriber", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        """Subscribe to the channels listened to and dispatch their messages, until closed."""
        errors = (self._exceptions.RedisError, OSError, ValueError)
        backoff = 0.1
        #: Whether the last try to subscribe failed: an outage is logged once, and its end once.
        failing = False
        while not self._closed.is_set():
            pubsub: Any = self._client.pubsub()  # type: ignore[no-untyped-call]
            subscribed: set[str] = set()
            try:
                while not self._closed.is_set():
                    if self._resubscribe.is_set():
                        self._resubscribe.clear()
                        with self._lock:
                            for ready in self._ready.values():
                                ready.clear()
                        break
                    with self._lock:
                        wanted = [channel for channel in self._handlers if channel not in subscribed]
                    if wanted:
                        if self._sharded:
                            for channel in wanted:
                                pubsub.ssubscribe(channel)
                        else:
                            pubsub.subscribe(*wanted)
                        subscribed.update(wanted)
                        if failing:
                            logger.info("subscribed to the store's channels again")
                            failing = False
                    if not subscribed:
                        self._closed.wait(_POLL)
                        continue
                    if self._sharded:
                        message = pubsub.get_sharded_message(timeout=_POLL)
                    else:
                        message = pubsub.get_message(timeout=_POLL)
                    if message is not None:
                        backoff = 0.1
                        self._dispatch(message)
            except Exception as exc:
                if self._closed.is_set():
                    break  # the client closing under the thread
                with self._lock:
                    for ready in self._ready.values():
                        ready.clear()
                    if not any(self._handlers.values()):
                        self._thread = None
                        return
                if failing:
                    logger.debug("subscribing to the store's channels failed again", exc_info=True)
                else:
                    logger.warning(
                        "lost the subscription to the store's channels (%s); subscribing again, with back-off. "
                        "Meanwhile long-polls re-read their job every second and cancels reach running jobs "
                        "at their next lease renewal.",
                        exc,
                    )
                    failing = True
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(*errors):
                    pubsub.close()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = as_text(message.get("type", ""))
        channel = as_text(message.get("channel", ""))
        if kind in ("subscribe", "ssubscribe"):
            with self._lock:
                ready = self._ready.get(channel)
            if ready is not None:
                ready.set()
            return
        if kind not in ("message", "smessage"):
            return
        with self._lock:
            handlers = list(self._handlers.get(channel, ()))
        data = as_text(message["data"])
        for handler in handlers:
            try:
                handler(data)
            except Exception:
                logger.exception("a handler of %s failed", channel)
