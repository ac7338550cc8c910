"""What every part of the Redis store shares: its client and scripts, its keys, and the first steps of each call.

:class:`RedisCore` names the attributes :class:`~.store.RedisStore` sets up when it is made and
holds the helpers every operation starts from: a queue's keys, the time, a job by id whatever its
queue, a lease token's attempt and queue. The store's other parts (``running``, ``upkeep``,
``waiting``, ``monitoring``) build on it, so each is typed against one list of what it may use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ...errors import StoreError
from ...jobs import DEFAULT_QUEUE, Job
from .clock import ServerClock
from .codec import as_text, decode_job, hash_fields, pointed_queue
from .keys import Layout, QueueKeys, parse_token
from .scripts import ScriptRunner
from .sentinel import SentinelWatch

if TYPE_CHECKING:
    import redis
    import redis.cluster

#: Seconds between two registrations of a queue in the set of queues (``{p}:queues``) by one process.
QUEUE_REGISTRATION_SECONDS = 60.0


class RedisCore:
    """The state and helpers the parts of :class:`~.store.RedisStore` share; the store's ``__init__`` sets them."""

    #: Replicas a submit waits for (``WAIT``) before it is acknowledged; 0 for none.
    wait_replicas: int
    key_prefix: str
    history_limit: int
    layout: Layout
    #: Whether the client is a Redis Cluster one.
    cluster: bool
    _client: redis.Redis | redis.cluster.RedisCluster
    #: The server, as messages name it (no password).
    _where: str
    #: The failovers of the client's Sentinel service, when it has one.
    _sentinel: SentinelWatch | None
    _scripts: ScriptRunner
    # The connections' and the script runner's methods, bound once: every operation goes through these.
    _call: Callable[..., Any]
    _call_many: Callable[..., list[Any]]
    _run: Callable[[str, Sequence[str], Sequence[Any]], Any]
    _run_many: Callable[[str, Sequence[tuple[Sequence[str], Sequence[Any]]]], list[Any]]
    _durable: Callable[[str, Sequence[tuple[Sequence[str], Sequence[Any]]]], list[Any]]
    _errors: Callable[[str], AbstractContextManager[None]]
    _clock: ServerClock
    _keys_of: dict[str, QueueKeys]
    #: The keys of the default queue, where every job's record or pointer is.
    _default: QueueKeys
    _socket_timeout: float | None
    _lock: threading.Lock
    #: Queues this process registered in ``{p}:queues``, with the monotonic time it did.
    _registered: dict[str, float]

    def _keys(self, queue: str) -> QueueKeys:
        keys = self._keys_of.get(queue)
        if keys is None:
            if not isinstance(queue, str) or not queue:
                raise ValueError(f"a queue name must be a non-empty string, not {queue!r}")
            keys = self._keys_of[queue] = self.layout.queue(queue)
        return keys

    def _now(self, now: float | None) -> float:
        if now is not None:
            return float(now)
        try:
            return self._clock.now()
        except Exception:
            with self._errors("reading the server's clock"):
                self._clock.sync()
            return self._clock.now()

    def _job(self, job_id: str, queue: str, record: Any, fields: Any) -> Job:
        try:
            return decode_job(job_id, queue, as_text(record), hash_fields(fields))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise StoreError(
                f"The job {job_id} in Redis at {self._where} cannot be read ({exc!r}). Check that nothing else "
                f"writes keys under the prefix {self.key_prefix!r}."
            ) from exc

    def _read(self, job_id: str, keys: QueueKeys) -> tuple[str, dict[str, str]] | None:
        """A job's record and state fields in one queue, or ``None``."""
        with self._errors("reading a job"):
            record, fields = self._call_many([("GET", keys.record(job_id)), ("HGETALL", keys.state(job_id))])
        return None if record is None else (as_text(record), hash_fields(fields))

    def _locate(self, job_id: str) -> tuple[QueueKeys, str, dict[str, str]] | None:
        """Where a job is, whatever its queue: its queue's keys, its record and its state fields.

        One round trip for a job of the default queue; one more, following its pointer, for another.
        """
        found = self._read(job_id, self._default)
        if found is None:
            return None
        queue = pointed_queue(found[0])
        if queue is None:
            return self._default, found[0], found[1]
        keys = self._keys(queue)
        found = self._read(job_id, keys)
        return None if found is None else (keys, found[0], found[1])

    def _register(self, queue: str) -> None:
        """Add ``queue`` to the set of queues, once a minute per process (it is read by the calls that
        go over every queue)."""
        last = self._registered.get(queue)
        if last is not None and time.monotonic() - last < QUEUE_REGISTRATION_SECONDS:
            return
        with self._errors("registering a queue"):
            self._call("SADD", self.layout.queues, queue)
        self._registered[queue] = time.monotonic()

    def _all_queues(self) -> list[str]:
        """Every queue that has had a job, the default queue first."""
        with self._errors("listing the queues"):
            names = {as_text(name) for name in self._call("SMEMBERS", self.layout.queues)}
        names.discard(DEFAULT_QUEUE)
        return [DEFAULT_QUEUE, *sorted(names)]

    def _token(self, token: str) -> tuple[str, QueueKeys] | None:
        parsed = parse_token(token)
        if parsed is None or not parsed[1]:
            return None
        return parsed[0], self._keys(parsed[1])

    def _many(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run a script once per call: one call alone, several in one round trip."""
        if not calls:
            return []
        return self._run_many(name, calls) if len(calls) > 1 else [self._run(name, *calls[0])]
