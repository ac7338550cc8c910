"""The Redis store: queues of jobs shared by every process and machine that uses the same Redis.

Every key of one queue shares the queue's hash tag ``{p:q}`` (``keys.py`` builds them, and
``lua/common.lua`` lists them with the fields of a job), so a queue is one Redis Cluster slot and
queues spread over the cluster. Every change is one Lua script from ``lua/`` on the keys of one
queue: the state of a job and every index that points at it change together or not at all.

Finding a job by id without knowing its queue takes one lookup: a job of the default queue is
found at once, and a job of another queue has a pointer in the default queue (``@<queue>`` where
the job's record would be), written before the job and read by ``get``, ``cancel`` and the other
calls that start from an id. The calls of a running attempt need no lookup at all: its lease token
names the queue.

:class:`RedisStore` is made here, with the calls that create and read jobs; the rest of its
operations are its parts, one module each: ``core`` (what they all share), ``running``
(claims, the ends of attempts, cancels, progress, logs), ``waiting`` (waits and pub/sub),
``upkeep`` (recovery, purges, operator calls, history, recurring occurrences) and
``monitoring`` (counts, pages, throughput, the worker registry).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError, StoreError
from ...jobs import DEFAULT_QUEUE, Job, JobPayload
from ...timestamps import from_timestamp
from ..base import DEFAULT_HISTORY_LIMIT, NewJob, PendingLimitReached, Store
from ..jsontext import compact_json, encode_payload, read_back
from .clock import ServerClock
from .codec import as_text, make_record, pointed_queue, script_arg
from .connection import ClusterCalls, ThreadConnections, import_redis
from .keys import POINTER, Layout, check_priority, next_sequence, sort_key
from .monitoring import RedisMonitoring
from .pubsub import Notifier
from .running import RedisRunning
from .scripts import ScriptRunner
from .sentinel import SentinelWatch, sentinel_pool
from .upkeep import RedisUpkeep
from .urls import connect, describe, is_cluster_client, split_store_options
from .waiting import RedisWaiting

if TYPE_CHECKING:
    import redis
    import redis.cluster

#: Jobs per ``create`` script in :meth:`RedisStore.create_many`: the calls of one batch go out in one
#: pipeline, and no single script holds Redis up for long (a script blocks every other client while it runs).
CREATE_MANY_CHUNK = 200


class RedisStore(RedisRunning, RedisWaiting, RedisUpkeep, RedisMonitoring, Store):
    """Jobs in Redis, shared by every process and machine using the same server (or cluster) and key prefix.

    Cancel requests reach :meth:`~flask_asyncendpoints.stores.Store.watch_cancels` callbacks in every
    process within milliseconds, over pub/sub (sharded pub/sub on Redis Cluster).

    :param client: a ``redis.Redis`` client, or a ``redis.cluster.RedisCluster`` one (``decode_responses``
        either way). The store does not close a client it was given.
    :param key_prefix: the first part of every key (``ae`` by default).
    :param history_limit: how many attempts each job's history keeps.
    :param wait_replicas: acknowledge a submit only once this many replicas have the job (``WAIT``);
        0, the default, acknowledges it once the master has it.
    :param wait_timeout: how long a submit waits for those replicas, in seconds; a submit they do
        not all confirm in time raises :class:`~flask_asyncendpoints.StoreError` (HTTP ``503``).
    :raises ConfigurationError: when the ``redis`` package is missing, the prefix is empty, or
        ``wait_replicas`` or ``wait_timeout`` is out of range.
    """

    batches_completions = True

    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
        *,
        key_prefix: str = "ae",
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        import_redis()  # first: without redis-py nothing else here can work, and the error says what to install
        if not key_prefix:
            raise ConfigurationError(
                "ASYNCENDPOINTS_KEY_PREFIX must not be empty: every key of the store starts with it."
            )
        if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int) or wait_replicas < 0:
            raise ConfigurationError(
                f"wait_replicas must be a whole number of replicas, 0 or more, not {wait_replicas!r}."
            )
        if isinstance(wait_timeout, bool) or not isinstance(wait_timeout, (int, float)) or not 0 < wait_timeout < 1e6:
            raise ConfigurationError(f"wait_timeout must be a number of seconds above 0, not {wait_timeout!r}.")
        #: Replicas a submit waits for (``WAIT``) before it is acknowledged; 0 for none.
        self.wait_replicas = wait_replicas
        self._client = client
        self.key_prefix = key_prefix
        self.history_limit = history_limit
        self.layout = Layout(key_prefix)
        self.cluster = is_cluster_client(client)
        # On a single server each job created pushes one wake token, which wakes one waiter; a
        # cluster's wake-ups are published, and every waiter of the queue hears each one.
        self.concurrent_waits = not self.cluster
        self._where = describe(client)
        pool = sentinel_pool(client)
        self._sentinel = SentinelWatch(pool) if pool is not None else None
        calls: ThreadConnections | ClusterCalls = (
            ClusterCalls(client) if self.cluster else ThreadConnections(client, self._sentinel)  # type: ignore[arg-type]
        )
        self._scripts = ScriptRunner(
            client,
            calls,
            where=self._where,
            key_prefix=key_prefix,
            cluster=self.cluster,
            wait_replicas=wait_replicas,
            wait_timeout=float(wait_timeout),
        )
        # Bound once, here: every operation goes through these, so they cost no more than methods.
        self._call = calls.call
        self._call_many = calls.call_many
        self._run = self._scripts.run
        self._run_many = self._scripts.run_many
        self._durable = self._scripts.run_durable
        self._errors = self._scripts.errors
        self._clock = ServerClock(lambda: self._call("TIME"))
        self._keys_of = {}
        self._default = self._keys(DEFAULT_QUEUE)
        pool_options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        self._socket_timeout = pool_options.get("socket_timeout")
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        # The state of the store's parts, each declared (and described) by the part that keeps it.
        self._registered = {}
        self._waiting = {}
        self._wakes = threading.Condition(self._lock)
        self._wake_counts = {}
        self._woken = 0
        self._wake_pending = False
        self._progress = {}
        self._origin = os.urandom(6).hex()
        self._cancel_callbacks = []
        self._channels = set()
        self._claimed_queues = set()
        self._notifier = Notifier(client, sharded=self.cluster)
        if self._sentinel is not None:
            self._sentinel.on_switch(self._notifier.resubscribe)

    def __repr__(self) -> str:
        return f"<RedisStore: {self._where}, key prefix {self.key_prefix!r}>"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = "ae",
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        **client_options: Any,
    ) -> RedisStore:
        """A store on a new client for ``url``, closed by :meth:`close`.

        ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS) and
        ``unix://[[user]:password@]/path/to/socket?db=N`` are read by ``redis.Redis.from_url``, with
        its query options (``socket_timeout=…``, ``ssl_cert_reqs=…``).
        ``redis+sentinel://[[user:]password@]host[:port][,host2[:port2]…]/service_name[/db]`` asks the
        Sentinels (port 26379 by default) for the master of ``service_name``; the password is the
        master's, and ``?sentinel_password=…`` gives the Sentinels' own.
        ``redis+cluster://[[user]:password@]host:port[,host2:port2…]`` connects to a Redis Cluster
        through any of the nodes named.

        Any of them may carry ``wait_replicas`` and ``wait_timeout`` in the query
        (``redis+sentinel://…/mymaster?wait_replicas=1``); they override the arguments of the same names.

        :param url: the ``ASYNCENDPOINTS_STORE`` URL.
        :param key_prefix: the first part of every key.
        :param history_limit: how many attempts each job's history keeps.
        :param wait_replicas: see :class:`RedisStore`.
        :param wait_timeout: see :class:`RedisStore`.
        :param client_options: more client options (they override
            :data:`~flask_asyncendpoints.stores.redis.urls.CLIENT_DEFAULTS`).
        :raises ConfigurationError: when the URL cannot be used or ``redis`` is not installed.
        """
        url, options = split_store_options(url)
        client, closers = connect(url, **client_options)
        try:
            store = cls(
                client,
                key_prefix=key_prefix,
                history_limit=history_limit,
                wait_replicas=options.get("wait_replicas", wait_replicas),
                wait_timeout=options.get("wait_timeout", wait_timeout),
            )
        except BaseException:
            for close in closers:
                close()
            raise
        store._closers = closers
        return store

    # -- creating and reading ------------------------------------------------------------------------

    def create(
        self,
        job_id: str,
        name: str,
        payload: JobPayload,
        *,
        max_retries: int,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        due: float | None = None,
        max_pending: int | None = None,
        now: float | None = None,
    ) -> tuple[Job, bool]:
        """See :meth:`Store.create <flask_asyncendpoints.stores.base.Store.create>`.

        A job of the default queue due at once is one script of four calls; a job of another queue
        first writes its pointer in the default queue (one more round trip).

        :raises ValueError: for a priority outside a signed 32-bit integer, or an empty queue name.
        """
        if queue != DEFAULT_QUEUE:
            created = self.create_many(
                [NewJob(job_id, name, payload, max_retries, queue, priority, due)], max_pending=max_pending, now=now
            )[0]
        else:
            # The submit path, spelled out: what create_many does for one job, without its batching.
            at = self._now(now)
            priority = check_priority(priority)
            delayed = due is not None and due > at
            when = float(due) if delayed and due is not None else at
            key = sort_key(priority, when, next_sequence(), "r" if delayed else "n")
            name_json = compact_json(name)
            payload_json = encode_payload(payload)
            record = make_record(at, int(max_retries), key, name_json, payload_json)
            if DEFAULT_QUEUE not in self._registered:
                self._register(DEFAULT_QUEUE)
            call = (
                [self._default.base],
                [script_arg(max_pending), job_id, record, name_json, f"{key}:{job_id}", when if delayed else ""],
            )
            reply = self._run("create", *call) if not self.wait_replicas else self._durable("create", [call])[0]
            (outcome,) = _outcomes(reply, 1)
            job = Job.new(
                job_id,
                name,
                max_retries=int(max_retries),
                # As it reads back: JSON turns tuples into lists, and so on.
                payload=read_back(payload, payload_json),
                created_at=from_timestamp(at),
                priority=priority,
                due_at=from_timestamp(when) if delayed else None,
            )
            created = self._created(job, DEFAULT_QUEUE, outcome)
        if created is None:
            raise PendingLimitReached(f"{max_pending} jobs of the queue {queue!r} are already pending")
        return created

    def create_many(
        self,
        jobs: Sequence[NewJob],
        *,
        max_pending: int | None = None,
        now: float | None = None,
    ) -> list[tuple[Job, bool] | None]:
        """See :meth:`Store.create_many <flask_asyncendpoints.stores.base.Store.create_many>`.

        One ``create`` script per queue and :data:`CREATE_MANY_CHUNK` jobs, all in one pipeline.

        :raises ValueError: for a priority outside a signed 32-bit integer, or an empty queue name.
        """
        if not jobs:
            return []
        at = self._now(now)
        results: list[tuple[Job, bool] | None] = [None] * len(jobs)
        # Per queue, each job's position, script arguments, and the job as it will be.
        by_queue: dict[str, list[tuple[int, list[Any], Job]]] = {}
        for index, new in enumerate(jobs):
            keys = self._keys(new.queue)
            priority = check_priority(new.priority)
            delayed = new.due is not None and new.due > at
            due = float(new.due) if delayed and new.due is not None else at
            key = sort_key(priority, due, next_sequence(), "r" if delayed else "n")
            name_json = compact_json(new.name)
            payload_json = encode_payload(new.payload)
            record = make_record(at, int(new.max_retries), key, name_json, payload_json)
            job = Job.new(
                new.id,
                new.name,
                max_retries=int(new.max_retries),
                # As it reads back: JSON turns tuples into lists, and so on.
                payload=read_back(new.payload, payload_json),
                created_at=from_timestamp(at),
                queue=keys.queue,
                priority=priority,
                due_at=from_timestamp(due) if delayed else None,
            )
            args = [new.id, record, name_json, f"{key}:{new.id}", due if delayed else ""]
            by_queue.setdefault(keys.queue, []).append((index, args, job))
        for queue in by_queue:
            self._register(queue)
        self._point(by_queue, results)
        chunks = [
            (queue, entries[start : start + CREATE_MANY_CHUNK])
            for queue, entries in by_queue.items()
            for start in range(0, len(entries), CREATE_MANY_CHUNK)
        ]
        calls = [
            ([self._keys(queue).base], [script_arg(max_pending), *(arg for _, args, _ in chunk for arg in args)])
            for queue, chunk in chunks
            if chunk
        ]
        replies = self._durable("create", calls) if self.wait_replicas else self._many("create", calls)
        refused: dict[str, list[str]] = {}
        for (queue, chunk), reply in zip([c for c in chunks if c[1]], replies, strict=True):
            for (index, _, job), outcome in zip(chunk, _outcomes(reply, len(chunk)), strict=True):
                results[index] = self._created(job, queue, outcome)
                if results[index] is None and queue != DEFAULT_QUEUE:
                    refused.setdefault(queue, []).append(job.id)
        for queue, ids in refused.items():
            self._run("unpoint", [self._default.base], [queue, *ids])
        return results

    def _point(
        self, by_queue: dict[str, list[tuple[int, list[Any], Job]]], results: list[tuple[Job, bool] | None]
    ) -> None:
        """Write the default queue's pointers to the new jobs of other queues, before the jobs.

        A job whose id is taken, by a job of the default queue or of another queue, is not created:
        it is taken out of ``by_queue`` and its result is the existing job.
        """
        pointing = [
            (queue, entry) for queue, entries in by_queue.items() if queue != DEFAULT_QUEUE for entry in entries
        ]
        if not pointing:
            return
        calls = [
            ([self._default.base], [queue, *(job.id for _, _, job in entries)])
            for queue, entries in by_queue.items()
            if queue != DEFAULT_QUEUE
        ]
        # Waited for like the jobs: a job whose pointer a failover lost could not be found by its id.
        replies = self._durable("point", calls) if self.wait_replicas else self._many("point", calls)
        olds = [old for reply in replies for old in reply]
        for (queue, entry), old in zip(pointing, olds, strict=True):
            if not old or as_text(old) == POINTER + queue:
                continue
            index, _, job = entry
            other = pointed_queue(as_text(old))
            keys = self._default if other is None else self._keys(other)
            found = self._read(job.id, keys)
            if found is None:
                # A pointer to a job that is gone: this job takes the id over.
                with self._errors("creating jobs"):
                    self._call("SET", self._default.record(job.id), POINTER + queue)
                continue
            by_queue[queue].remove(entry)
            results[index] = (self._job(job.id, keys.queue, *found), False)

    def _created(self, job: Job, queue: str, outcome: Any) -> tuple[Job, bool] | None:
        """What ``create.lua`` answered for one job: the job built here from what was sent, the
        existing job, or ``None`` at the pending limit."""
        if not isinstance(outcome, list):
            if int(outcome) < 0:
                return None
            return job, True
        record = as_text(outcome[1])
        other = pointed_queue(record)
        if other is None:
            return self._job(job.id, queue, record, outcome[2]), False
        found = self._read(job.id, self._keys(other))
        if found is None:
            raise StoreError(
                f"The job {job.id} in Redis at {self._where} is announced in queue {other!r} but is not there. "
                f"Check that nothing else writes keys under the prefix {self.key_prefix!r}."
            )
        return self._job(job.id, other, *found), False

    def get(self, job_id: str) -> Job | None:
        """See :meth:`Store.get <flask_asyncendpoints.stores.base.Store.get>`.

        One round trip (a ``GET`` and an ``HGETALL``) for a job of the default queue, two for a job
        of another queue.
        """
        found = self._locate(job_id)
        return None if found is None else self._job(job_id, found[0].queue, found[1], found[2])

    def confirm_stored(self, job: Job) -> None:
        """See :meth:`Store.confirm_stored <flask_asyncendpoints.stores.base.Store.confirm_stored>`.

        With ``wait_replicas``, waits (``WAIT``) until that many replicas have everything written to
        the master of the job's queue so far, the job included; without, returns at once.
        """
        if self.wait_replicas:
            keys = self._keys(job.queue)
            self._scripts.wait_for_replicas(keys.base, "confirming a job on the replicas")
            if job.queue != DEFAULT_QUEUE and self.cluster:
                # Its pointer, in the default queue, may be on another master.
                self._scripts.wait_for_replicas(self._default.base, "confirming a job's pointer on the replicas")

    # -- the connection ------------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise :class:`~flask_asyncendpoints.errors.StoreError` if Redis cannot be reached."""
        with self._errors("pinging"):
            self._client.ping()

    def close(self) -> None:
        """Close the connections of a client this store created (:meth:`from_url`); a given client is left open."""
        self._notifier.close()
        if self._sentinel is not None:
            self._sentinel.close()
        closers, self._closers = self._closers, []
        for close in closers:
            close()


def _outcomes(reply: Any, jobs: int) -> list[Any]:
    """``create.lua``'s answer for each of ``jobs`` jobs: ``1`` for all (every job created), or its list."""
    return [1] * jobs if not isinstance(reply, list) else reply
