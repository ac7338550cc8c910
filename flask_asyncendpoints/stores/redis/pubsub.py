"""Long-polls told the moment their job finishes: one subscriber thread per store and process."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .codec import as_text
from .connection import import_redis

if TYPE_CHECKING:
    import redis

# The package's name rather than this module's: every part of the Redis store logs as one logger.
logger = logging.getLogger(__package__)


class FinishedListener:
    """Wakes whoever waits for a job when its id is published on ``channel``.

    The scripts that finish a job publish its id there (``expire_later`` in ``lua/common.lua``). The
    subscriber thread starts with the first waiter, again in a forked child, and again after it has
    given up on a lost subscription with nobody waiting.

    :param client: the ``redis.Redis`` client to subscribe with.
    :param channel: the channel finished job ids are published on.
    :raises ConfigurationError: when the ``redis`` package is missing.
    """

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self._exceptions = import_redis().exceptions
        self._client = client
        self._channel = channel
        self._lock = threading.Lock()
        #: Long-polls waiting for a job to finish, by job id; told by the listener thread.
        self._waiters: dict[str, set[threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = threading.Event()

    @contextmanager
    def watching(self, job_id: str) -> Iterator[threading.Event]:
        """An event set each time ``job_id`` is announced as finished, while the ``with`` block runs."""
        finished = threading.Event()
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(finished)
        try:
            self._ensure_thread()
            yield finished
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(finished)
                    if not waiters:
                        del self._waiters[job_id]

    def close(self) -> None:
        """Stop the subscriber thread (within a second); waiters fall back to their own timeouts."""
        self._closed.set()

    def _ensure_thread(self) -> None:
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            if alive and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._listen, name="asyncendpoints-finished-listener", daemon=True)
            self._thread.start()

    def _listen(self) -> None:
        """Subscribe to the finished channel and wake the waiters of each id announced, until closed."""
        errors = (self._exceptions.RedisError, OSError, ValueError)
        backoff = 0.1
        while not self._closed.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self._channel)
                backoff = 0.1
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    with self._lock:
                        waiters = list(self._waiters.get(as_text(message["data"]), ()))
                    for waiter in waiters:
                        waiter.set()
            except Exception:
                # Waiters fall back to reading the job every second until the subscription is back;
                # with nobody waiting the thread ends, and the next long-poll starts a new one.
                with self._lock:
                    if not self._waiters:
                        self._thread = None
                        return
                logger.warning("lost the subscription to %s; retrying", self._channel, exc_info=True)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(*errors):
                    pubsub.close()
