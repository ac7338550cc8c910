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
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError, StoreError
from ...jobs import (
    DEFAULT_QUEUE,
    FINAL_STATUSES,
    AttemptRecord,
    ClaimedJob,
    Job,
    JobError,
    JobPayload,
    JobStatus,
    LogRecord,
    Progress,
)
from ..base import (
    DEFAULT_HISTORY_LIMIT,
    LEASE_EXPIRED_CODE,
    LEASE_EXPIRED_MESSAGE,
    CancelResult,
    LeaseState,
    NewJob,
    PendingLimitReached,
    Store,
)
from .clock import ServerClock
from .codec import (
    LEASE_STATES,
    as_text,
    claimed_job,
    compact_json,
    decode_attempts,
    decode_job,
    decode_log,
    encode_error,
    encode_log,
    encode_payload,
    error_parts,
    hash_fields,
    make_record,
    parse_time,
    pointed_queue,
    script_arg,
)
from .connection import ClusterCalls, ThreadConnections, import_redis
from .keys import (
    CANCELS_CHANNEL,
    DONE,
    FINISHED_CHANNEL,
    POINTER,
    READY,
    SCHEDULED,
    WAKE,
    Layout,
    QueueKeys,
    check_priority,
    lease_token,
    next_sequence,
    parse_token,
    sort_key,
)
from .monitoring import RedisMonitoring
from .pubsub import Notifier
from .scripts import ScriptRunner
from .urls import connect, describe, is_cluster_client

if TYPE_CHECKING:
    import redis
    import redis.cluster

# The package's name rather than this module's: every part of the Redis store logs as one logger.
logger = logging.getLogger(__package__)

#: Jobs per ``create`` script in :meth:`RedisStore.create_many`: the calls of one batch go out in one
#: pipeline, and no single script holds Redis up for long (a script blocks every other client while it runs).
CREATE_MANY_CHUNK = 200

#: Seconds between two registrations of a queue in the set of queues (``{p}:queues``) by one process.
QUEUE_REGISTRATION_SECONDS = 60.0

#: Written on jobs whose lease ran out with no retries left: the same structured error as every store.
_LEASE_EXPIRED_ERROR = JobError(code=LEASE_EXPIRED_CODE, message=LEASE_EXPIRED_MESSAGE)
_LEASE_EXPIRED_PARTS = error_parts(_LEASE_EXPIRED_ERROR)


def _sequence_arg() -> str:
    return f"{next_sequence() % 1_000_000:06d}"


class RedisStore(RedisMonitoring, Store):
    """Jobs in Redis, shared by every process and machine using the same server (or cluster) and key prefix.

    Cancel requests reach :meth:`~flask_asyncendpoints.stores.Store.watch_cancels` callbacks in every
    process within milliseconds, over pub/sub (sharded pub/sub on Redis Cluster).

    :param client: a ``redis.Redis`` client, or a ``redis.cluster.RedisCluster`` one (``decode_responses``
        either way). The store does not close a client it was given.
    :param key_prefix: the first part of every key (``ae`` by default).
    :param history_limit: how many attempts each job's history keeps.
    :raises ConfigurationError: when the ``redis`` package is missing or the prefix is empty.
    """

    batches_completions = True

    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
        *,
        key_prefix: str = "ae",
        history_limit: int = DEFAULT_HISTORY_LIMIT,
    ) -> None:
        import_redis()  # first: without redis-py nothing else here can work, and the error says what to install
        if not key_prefix:
            raise ConfigurationError(
                "ASYNCENDPOINTS_KEY_PREFIX must not be empty: every key of the store starts with it."
            )
        self._client = client
        self.key_prefix = key_prefix
        self.history_limit = history_limit
        self.layout = Layout(key_prefix)
        self.cluster = is_cluster_client(client)
        self._where = describe(client)
        calls: ThreadConnections | ClusterCalls = (
            ClusterCalls(client) if self.cluster else ThreadConnections(client)  # type: ignore[arg-type]
        )
        self._scripts = ScriptRunner(client, calls, where=self._where, key_prefix=key_prefix, cluster=self.cluster)
        # Bound once, here: every operation goes through these, so they cost no more than methods.
        self._call = calls.call
        self._call_many = calls.call_many
        self._run = self._scripts.run
        self._run_many = self._scripts.run_many
        self._errors = self._scripts.errors
        self._clock = ServerClock(lambda: self._call("TIME"))
        self._keys_of: dict[str, QueueKeys] = {}
        self._default = self._keys(DEFAULT_QUEUE)
        pool_options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        self._socket_timeout: float | None = pool_options.get("socket_timeout")
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        #: Queues this process registered in ``{p}:queues``, with the monotonic time it did.
        self._registered: dict[str, float] = {}
        #: Callers of wait_for_work blocked now, per queue (a single server wakes them with tokens).
        self._waiting: dict[str, int] = {}
        #: Wake-ups heard on a cluster, counted per queue, and local wake() calls: wait_for_work
        #: waits for a count to move.
        self._wakes = threading.Condition(self._lock)
        self._wake_counts: dict[str, int] = {}
        self._woken = 0
        self._wake_pending = False
        #: Progress this process recorded for running attempts, by (job id, attempt id): the
        #: completed job is answered with it without reading it back.
        self._progress: dict[tuple[str, str], Progress] = {}
        #: Who this store is in the cancel announcements it publishes.
        self._origin = os.urandom(6).hex()
        self._cancel_callbacks: list[Callable[[str], None]] = []
        self._channels: set[str] = set()
        self._claimed_queues: set[str] = set()
        self._finish_waiters: dict[str, set[threading.Event]] = {}
        self._notifier = Notifier(client, sharded=self.cluster)

    def __repr__(self) -> str:
        return f"<RedisStore: {self._where}, key prefix {self.key_prefix!r}>"

    @classmethod
    def from_url(
        cls, url: str, *, key_prefix: str = "ae", history_limit: int = DEFAULT_HISTORY_LIMIT, **client_options: Any
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

        :param url: the ``ASYNCENDPOINTS_STORE`` URL.
        :param key_prefix: the first part of every key.
        :param history_limit: how many attempts each job's history keeps.
        :param client_options: more client options (they override
            :data:`~flask_asyncendpoints.stores.redis.urls.CLIENT_DEFAULTS`).
        :raises ConfigurationError: when the URL cannot be used or ``redis`` is not installed.
        """
        client, closers = connect(url, **client_options)
        store = cls(client, key_prefix=key_prefix, history_limit=history_limit)
        store._closers = closers
        return store

    # -- plumbing --------------------------------------------------------------------------------------

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
            (outcome,) = self._run(
                "create",
                [self._default.base],
                [at, script_arg(max_pending), job_id, record, name_json, f"{key}:{job_id}", when if delayed else ""],
            )
            job = Job.new(
                job_id,
                name,
                max_retries=int(max_retries),
                # As it reads back: JSON turns tuples into lists, and so on.
                payload=JobPayload.from_dict(json.loads(payload_json)),
                created_at=parse_time(repr(at)),
                priority=priority,
                due_at=parse_time(repr(when)) if delayed else None,
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
                payload=JobPayload.from_dict(json.loads(payload_json)),
                created_at=parse_time(repr(at)),
                queue=keys.queue,
                priority=priority,
                due_at=parse_time(repr(due)) if delayed else None,
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
            ([self._keys(queue).base], [at, script_arg(max_pending), *(arg for _, args, _ in chunk for arg in args)])
            for queue, chunk in chunks
            if chunk
        ]
        replies = self._many("create", calls)
        refused: dict[str, list[str]] = {}
        for (queue, chunk), reply in zip([c for c in chunks if c[1]], replies, strict=True):
            for (index, _, job), outcome in zip(chunk, reply, strict=True):
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
        olds = [old for reply in self._many("point", calls) for old in reply]
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

    def _created(self, job: Job, queue: str, outcome: Sequence[Any]) -> tuple[Job, bool] | None:
        """What ``create.lua`` answered for one job: the job built here from what was sent, the
        existing job, or ``None`` at the pending limit."""
        kind = int(outcome[0])
        if kind < 0:
            return None
        if kind == 1:
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

    # -- running -------------------------------------------------------------------------------------

    def claim(
        self,
        limit: int,
        lease_seconds: float,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        worker_id: str = "",
        now: float | None = None,
    ) -> list[ClaimedJob]:
        """See :meth:`Store.claim <flask_asyncendpoints.stores.base.Store.claim>`.

        One script per queue, until ``limit`` jobs are claimed.
        """
        if limit <= 0:
            return []
        at = self._now(now)
        worker = compact_json(worker_id)
        started = parse_time(repr(at))
        claimed: list[ClaimedJob] = []
        for queue in queues:
            if len(claimed) >= limit:
                break
            keys = self._keys(queue)
            nonce = os.urandom(8).hex()
            reply = self._run("claim", [keys.base], [at, limit - len(claimed), float(lease_seconds), nonce, worker])
            if queue not in self._claimed_queues:
                self._claimed_queues.add(queue)
                if self._cancel_callbacks:
                    self._listen_cancels(queue)
            for raw_id, number, record, retry_count, error in reply:
                job_id = as_text(raw_id)
                try:
                    job = claimed_job(job_id, queue, started, as_text(record), as_text(retry_count), as_text(error))
                except (KeyError, ValueError, TypeError, AttributeError):
                    # Leased but unreadable: skipping it lets the rest of the batch run; its lease runs
                    # out and recovery fails it for good once its retries are spent.
                    logger.exception("Skipped job %s: its stored record cannot be read", job_id)
                    continue
                claimed.append(ClaimedJob(job, lease_token(f"{nonce}.{int(number)}", queue)))
        return claimed

    def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, *, now: float | None = None
    ) -> dict[str, LeaseState]:
        """See :meth:`Store.renew <flask_asyncendpoints.stores.base.Store.renew>`."""
        states = {job_id: LeaseState.LOST for job_id, _ in leases}
        by_queue: dict[str, list[tuple[str, str]]] = {}
        for job_id, token in leases:
            parsed = self._token(token)
            if parsed is not None:
                by_queue.setdefault(parsed[1].queue, []).append((job_id, parsed[0]))
        if not by_queue:
            return states
        at = self._now(now)
        calls = []
        for queue, held in by_queue.items():
            args: list[Any] = [at, float(lease_seconds)]
            for job_id, attempt in held:
                args += [job_id, attempt]
            calls.append(([self._keys(queue).base], args))
        replies = self._run_many("renew", calls) if len(calls) > 1 else [self._run("renew", *calls[0])]
        for held, reply in zip(by_queue.values(), replies, strict=True):
            for (job_id, _), state in zip(held, reply, strict=True):
                states[job_id] = LEASE_STATES[int(state)]
        return states

    def complete(
        self, job_id: str, token: str, result_json: str, *, result_ttl: float | None, now: float | None = None
    ) -> Job | None:
        """See :meth:`Store.complete <flask_asyncendpoints.stores.base.Store.complete>`."""
        # Parsing refuses text that is not JSON before anything is stored, as the memory store does;
        # writing it back compactly keeps small results within Redis's compact hash encoding.
        result = compact_json(json.loads(result_json))
        parsed = self._token(token)
        if parsed is None:
            return None
        attempt, keys = parsed
        args = [self._now(now), script_arg(result_ttl), self.history_limit, "1", job_id, attempt, "", result, "?"]
        (reply,) = self._run("complete", [keys.base], args)
        self._forget_progress(job_id, attempt)
        return None if not reply else self._job(job_id, keys.queue, reply[1], reply[2])

    def complete_many(
        self,
        completions: Sequence[tuple[ClaimedJob, str]],
        *,
        result_ttl: float | None,
        now: float | None = None,
    ) -> list[Job | None]:
        """See :meth:`Store.complete_many <flask_asyncendpoints.stores.base.Store.complete_many>`.

        One script per queue for the whole batch, each completion still checked against its own
        lease: one ``HSET`` per job, and the lease check, indexes, counts, throughput and the
        announcement to long-polls once per script. The completed jobs are built from the claimed
        ones, not read back.
        """
        if not completions:
            return []
        at = self._now(now)
        stamp = parse_time(repr(at))
        results: list[Any] = []
        by_queue: dict[str, tuple[list[int], list[Any]]] = {}
        for index, (claimed, result_json) in enumerate(completions):
            # Parsed to refuse text that is not JSON before anything is stored (and for the job
            # returned); stored as given, which the worker writes compactly already.
            results.append(json.loads(result_json))
            parsed = self._token(claimed.token)
            queue = parsed[1].queue if parsed is not None else claimed.job.queue
            positions, args = by_queue.setdefault(queue, ([], []))
            positions.append(index)
            attempt = parsed[0] if parsed is not None else ""
            error = "1" if claimed.job.error is not None else ""
            args += [claimed.job.id, attempt, compact_json(claimed.job.name), result_json, error]
        calls = [
            ([self._keys(queue).base], [at, script_arg(result_ttl), self.history_limit, "", *args])
            for queue, (_, args) in by_queue.items()
        ]
        replies = self._run_many("complete", calls) if len(calls) > 1 else [self._run("complete", *calls[0])]
        finished: list[Job | None] = [None] * len(completions)
        for (queue, (positions, _)), reply in zip(by_queue.items(), replies, strict=True):
            for index, outcome in zip(positions, reply, strict=True):
                claimed = completions[index][0]
                attempt = (parse_token(claimed.token) or ("", ""))[0]
                progress = self._forget_progress(claimed.job.id, attempt)
                if outcome == 1:
                    finished[index] = claimed.job.replace(
                        status=JobStatus.COMPLETED,
                        result=results[index],
                        error=None,
                        completed_at=stamp,
                        last_updated_at=stamp,
                        progress=progress,
                    )
                elif outcome:
                    finished[index] = self._job(claimed.job.id, queue, outcome[1], outcome[2])
        return finished

    def fail(
        self,
        job_id: str,
        token: str,
        error: JobError,
        *,
        retry_delay: float | None,
        result_ttl: float | None,
        now: float | None = None,
    ) -> Job | None:
        """See :meth:`Store.fail <flask_asyncendpoints.stores.base.Store.fail>`."""
        parsed = self._token(token)
        if parsed is None:
            return None
        attempt, keys = parsed
        code, message = error_parts(error)
        reply = self._run(
            "fail",
            [keys.base],
            [
                self._now(now),
                job_id,
                attempt,
                encode_error(error),
                code,
                message,
                script_arg(retry_delay),
                script_arg(result_ttl),
                self.history_limit,
                _sequence_arg(),
            ],
        )
        self._forget_progress(job_id, attempt)
        return None if reply is None else self._job(job_id, keys.queue, reply[0], reply[1])

    def finish_canceled(
        self, job_id: str, token: str, *, result_ttl: float | None, now: float | None = None
    ) -> Job | None:
        """See :meth:`Store.finish_canceled <flask_asyncendpoints.stores.base.Store.finish_canceled>`."""
        parsed = self._token(token)
        if parsed is None:
            return None
        attempt, keys = parsed
        reply = self._run(
            "finish_canceled",
            [keys.base],
            [self._now(now), job_id, attempt, script_arg(result_ttl), self.history_limit],
        )
        self._forget_progress(job_id, attempt)
        return None if reply is None else self._job(job_id, keys.queue, reply[0], reply[1])

    def release(self, job_id: str, token: str, *, now: float | None = None) -> bool:
        """See :meth:`Store.release <flask_asyncendpoints.stores.base.Store.release>`."""
        parsed = self._token(token)
        if parsed is None:
            return False
        attempt, keys = parsed
        reply = self._run(
            "release", [keys.base], [self._now(now), job_id, attempt, self.history_limit, _sequence_arg()]
        )
        self._forget_progress(job_id, attempt)
        return bool(reply)

    def cancel(
        self, job_id: str, *, result_ttl: float | None, now: float | None = None
    ) -> tuple[CancelResult, Job | None]:
        """See :meth:`Store.cancel <flask_asyncendpoints.stores.base.Store.cancel>`.

        A cancel request for a running job is published on its queue's ``cancels`` channel, which the
        :meth:`~flask_asyncendpoints.stores.Store.watch_cancels` of every process hears.
        """
        args = [self._now(now), job_id, script_arg(result_ttl), self._origin]
        keys = self._default
        reply = self._run("cancel", [keys.base], args)
        if as_text(reply[0]) == "elsewhere":
            keys = self._keys(pointed_queue(as_text(reply[1])) or DEFAULT_QUEUE)
            reply = self._run("cancel", [keys.base], args)
        outcome = CancelResult(as_text(reply[0]))
        job = self._job(job_id, keys.queue, reply[1], reply[2]) if len(reply) > 2 else None
        if outcome is CancelResult.REQUESTED:
            self._tell_cancel(job_id)
        return outcome, job

    def watch_cancels(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """See :meth:`Store.watch_cancels <flask_asyncendpoints.stores.base.Store.watch_cancels>`.

        The Redis store calls ``callback`` in every process: a cancel made here at once, one made
        elsewhere as its announcement arrives on the ``cancels`` channel of the job's queue (sharded
        on a cluster). A process listens to the channels of the queues it has claimed from.
        """
        with self._lock:
            self._cancel_callbacks.append(callback)
        for queue in list(self._claimed_queues):
            self._listen_cancels(queue)

        def stop() -> None:
            with self._lock:
                if callback in self._cancel_callbacks:
                    self._cancel_callbacks.remove(callback)

        return stop

    def _listen_cancels(self, queue: str) -> None:
        self._listen(self._keys(queue).key(CANCELS_CHANNEL), self._heard_cancel)

    def _heard_cancel(self, message: str) -> None:
        origin, _, job_id = message.partition(" ")
        if origin != self._origin and job_id:
            self._tell_cancel(job_id)

    def _tell_cancel(self, job_id: str) -> None:
        with self._lock:
            callbacks = list(self._cancel_callbacks)
        for callback in callbacks:
            try:
                callback(job_id)
            except Exception:
                logger.exception("a cancel callback failed for job %s", job_id)

    def set_progress(
        self, job_id: str, token: str, fraction: float, message: str | None, *, now: float | None = None
    ) -> bool:
        """See :meth:`Store.set_progress <flask_asyncendpoints.stores.base.Store.set_progress>`."""
        parsed = self._token(token)
        if parsed is None:
            return False
        attempt, keys = parsed
        at = self._now(now)
        fraction_json, message_json = json.dumps(fraction), json.dumps(message, ensure_ascii=False)
        if not self._run("set_progress", [keys.base], [at, job_id, attempt, fraction_json, message_json]):
            return False
        progress = Progress(json.loads(fraction_json), message, parse_time(repr(at)))
        with self._lock:
            self._progress[(job_id, attempt)] = progress
        return True

    def _forget_progress(self, job_id: str, attempt: str) -> Progress | None:
        if not self._progress:
            return None
        with self._lock:
            return self._progress.pop((job_id, attempt), None)

    def recover(self, *, result_ttl: float | None, limit: int = 100, now: float | None = None) -> list[Job]:
        """See :meth:`Store.recover <flask_asyncendpoints.stores.base.Store.recover>`.

        One script per queue that has had jobs, until ``limit`` jobs are recovered.
        """
        recovered: list[Job] = []
        if limit <= 0:
            return recovered
        at = self._now(now)
        code, message = _LEASE_EXPIRED_PARTS
        for queue in self._all_queues():
            if len(recovered) >= limit:
                break
            keys = self._keys(queue)
            reply = self._run(
                "recover",
                [keys.base],
                [
                    at,
                    script_arg(result_ttl),
                    limit - len(recovered),
                    encode_error(_LEASE_EXPIRED_ERROR),
                    code,
                    message,
                    self.history_limit,
                    _sequence_arg(),
                ],
            )
            recovered += [self._job(as_text(raw_id), queue, record, fields) for raw_id, record, fields in reply]
        return recovered

    # -- history and logs ----------------------------------------------------------------------------

    def attempts(self, job_id: str) -> list[AttemptRecord]:
        """See :meth:`Store.attempts <flask_asyncendpoints.stores.base.Store.attempts>`."""
        found = self._locate(job_id)
        if found is None:
            return []
        try:
            return decode_attempts(found[2], self.history_limit)
        except (KeyError, ValueError, TypeError) as exc:
            raise StoreError(
                f"The history of job {job_id} in Redis at {self._where} cannot be read ({exc!r})."
            ) from exc

    def append_logs(
        self, job_id: str, token: str, records: Sequence[LogRecord], *, max_lines: int, max_bytes: int
    ) -> bool:
        """See :meth:`Store.append_logs <flask_asyncendpoints.stores.base.Store.append_logs>`."""
        parsed = self._token(token)
        if parsed is None:
            return False
        attempt, keys = parsed
        args: list[Any] = [job_id, attempt, int(max_lines), int(max_bytes)]
        for record in records:
            args += encode_log(record)
        return bool(self._run("append_logs", [keys.base], args))

    def logs(self, job_id: str) -> list[LogRecord]:
        """See :meth:`Store.logs <flask_asyncendpoints.stores.base.Store.logs>`."""
        with self._errors("reading a job's log"):
            record = self._call("GET", self._default.record(job_id))
            if record is None:
                return []
            queue = pointed_queue(as_text(record))
            keys = self._default if queue is None else self._keys(queue)
            lines = self._call("LRANGE", keys.log(job_id), 0, -1)
        try:
            return [decode_log(as_text(line)) for line in lines]
        except (KeyError, ValueError, TypeError) as exc:
            raise StoreError(f"The log of job {job_id} in Redis at {self._where} cannot be read ({exc!r}).") from exc

    # -- recurring jobs ------------------------------------------------------------------------------

    def claim_occurrence(self, schedule: str, at: float, *, now: float | None = None) -> bool:
        """See :meth:`Store.claim_occurrence <flask_asyncendpoints.stores.base.Store.claim_occurrence>`."""
        return bool(self._run("occurrence", [self.layout.shared], [schedule, float(at)]))

    def occurrences(self) -> Mapping[str, float]:
        """See :meth:`Store.occurrences <flask_asyncendpoints.stores.base.Store.occurrences>`."""
        with self._errors("reading the recurring schedules"):
            raw = self._call("HGETALL", self.layout.occurrences)
        return {name: float(value) for name, value in hash_fields(raw).items()}

    # -- upkeep and operators ------------------------------------------------------------------------

    def purge(self, *, limit: int = 1000, now: float | None = None) -> int:
        """See :meth:`Store.purge <flask_asyncendpoints.stores.base.Store.purge>`."""
        if limit <= 0:
            return 0
        at = self._now(now)
        deleted = 0
        for queue in self._all_queues():
            if deleted >= limit:
                break
            ids = [as_text(raw) for raw in self._run("purge", [self._keys(queue).base], [at, limit - deleted])]
            self._unpoint(queue, ids)
            deleted += len(ids)
        return deleted

    def _unpoint(self, queue: str, ids: Sequence[str]) -> None:
        if queue != DEFAULT_QUEUE and ids:
            self._run("unpoint", [self._default.base], [queue, *ids])

    def requeue(self, job_id: str, *, now: float | None = None) -> Job | None:
        """See :meth:`Store.requeue <flask_asyncendpoints.stores.base.Store.requeue>`."""
        args = [self._now(now), job_id, _sequence_arg()]
        keys = self._default
        reply = self._run("requeue", [keys.base], args)
        if reply is not None and as_text(reply[0]) == "elsewhere":
            keys = self._keys(pointed_queue(as_text(reply[1])) or DEFAULT_QUEUE)
            reply = self._run("requeue", [keys.base], args)
        return None if reply is None else self._job(job_id, keys.queue, reply[0], reply[1])

    def delete(self, job_id: str, *, now: float | None = None) -> bool:
        """See :meth:`Store.delete <flask_asyncendpoints.stores.base.Store.delete>`."""
        keys = self._default
        reply = self._run("delete", [keys.base], ["", job_id])
        if reply and as_text(reply[0]) == "elsewhere":
            keys = self._keys(pointed_queue(as_text(reply[1])) or DEFAULT_QUEUE)
            reply = self._run("delete", [keys.base], ["", job_id])
            self._unpoint(keys.queue, [as_text(raw) for raw in reply])
        return bool(reply)

    def purge_finished(self, older_than: float, *, now: float | None = None) -> int:
        """See :meth:`Store.purge_finished <flask_asyncendpoints.stores.base.Store.purge_finished>`.

        Walks the finished jobs of each queue from the oldest, in the status indexes, 500 at a time:
        no scan of the whole keyspace.
        """
        cutoff = self._now(now) - older_than
        deleted = 0
        for queue in self._all_queues():
            keys = self._keys(queue)
            for status in FINAL_STATUSES:
                while True:
                    with self._errors("purging finished jobs"):
                        ids = self._call(
                            "ZRANGEBYSCORE", keys.key(DONE[status.value]), "-inf", repr(cutoff), "LIMIT", 0, 500
                        )
                    if not ids:
                        break
                    gone = [as_text(raw) for raw in self._run("delete", [keys.base], [cutoff, *ids])]
                    self._unpoint(queue, gone)
                    deleted += len(gone)
                    if len(ids) < 500 or not gone:
                        break
        return deleted

    def counts(self, *, queue: str | None = None) -> Mapping[JobStatus, int]:
        """See :meth:`Store.counts <flask_asyncendpoints.stores.base.Store.counts>`.

        Read from the sizes of each queue's indexes: seven ``ZCARD`` per queue, in one round trip.
        """
        queues = [queue] if queue is not None else self._all_queues()
        totals = dict.fromkeys(JobStatus, 0)
        for queue_counts in self._index_sizes([self._keys(name) for name in queues]):
            for status, n in queue_counts.items():
                totals[status] += n
        return totals

    def wait_for_work(self, timeout: float, *, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> None:
        """Block until a job of ``queues`` may be due or ``timeout`` seconds pass.

        Returns at once when a queue has a due job; waits no longer than until the next scheduled job
        is due otherwise. On a single server it blocks on the queues' wake lists (``BLPOP``); on a
        cluster, where one ``BLPOP`` cannot span slots, it waits for a wake-up published on the
        queues' sharded ``wake`` channels. The wait is kept below the client's socket timeout, so a
        long ``timeout`` ends early (a spurious wake-up) rather than in a socket timeout error.
        """
        keys = [self._keys(queue) for queue in queues]
        if not keys:
            return
        seen: dict[str, int] = {}
        if self.cluster:
            # Subscribed before looking for due jobs: a job created after the look is announced
            # to this waiter, one created before it is seen by it.
            for ready in [self._listen_wakes(queue_keys) for queue_keys in keys]:
                ready.wait(1.0)
            with self._lock:
                if self._wake_pending:
                    # A wake() that came before this wait still counts.
                    self._wake_pending = False
                    return
                seen = {queue_keys.queue: self._wake_counts.get(queue_keys.queue, 0) for queue_keys in keys}
        with self._errors("waiting for work"):
            replies = self._call_many(
                [("ZCARD", k.key(READY)) for k in keys]
                + [("ZRANGE", k.key(SCHEDULED), 0, 0, "WITHSCORES") for k in keys]
            )
            if any(int(n) > 0 for n in replies[: len(keys)]):
                return
            heads = [_first_score(reply) for reply in replies[len(keys) :]]
            due = [head for head in heads if head is not None]
            if due:
                timeout = min(timeout, min(due) - self._now(None))
            if self._socket_timeout:
                timeout = min(timeout, max(self._socket_timeout - 0.5, self._socket_timeout / 2))
            # BLPOP takes milliseconds and reads 0 as "forever": anything shorter is no wait at all.
            if timeout < 0.001:
                return
            if self.cluster:
                woken = self._woken

                def heard() -> bool:
                    return self._woken != woken or any(self._wake_counts.get(q, 0) != n for q, n in seen.items())

                with self._wakes:
                    self._wakes.wait_for(heard, timeout)
                return
            with self._lock:
                for queue_keys in keys:
                    self._waiting[queue_keys.queue] = self._waiting.get(queue_keys.queue, 0) + 1
            try:
                self._client.blpop([k.key(WAKE) for k in keys], timeout=round(timeout, 3))
            finally:
                with self._lock:
                    for queue_keys in keys:
                        self._waiting[queue_keys.queue] -= 1

    def _listen_wakes(self, keys: QueueKeys) -> threading.Event:
        """Listen to the queue's sharded ``wake`` channel (once per process); the event of its subscription."""
        queue = keys.queue

        def heard(message: str) -> None:
            with self._wakes:
                self._wake_counts[queue] = self._wake_counts.get(queue, 0) + 1
                self._wakes.notify_all()

        return self._listen(keys.key(WAKE), heard)

    def wake(self) -> None:
        """Wake the callers of this store waiting in :meth:`wait_for_work`.

        On a single server: push wake tokens, one for each waiter of each queue (at least one, on the
        default queue). A worker in another process sharing the queue may take a token first; the
        waiter it was meant for then wakes at its own timeout. On a cluster the waiters are told here.
        """
        if self.cluster:
            with self._wakes:
                self._woken += 1
                self._wake_pending = True
                self._wakes.notify_all()
            return
        with self._lock:
            waiting = {queue: n for queue, n in self._waiting.items() if n > 0} or {DEFAULT_QUEUE: 1}
        calls = [([self._keys(queue).base], [n]) for queue, n in waiting.items()]
        self._run_many("wake", calls) if len(calls) > 1 else self._run("wake", *calls[0])

    def wait_for_finish(self, job_id: str, timeout: float) -> Job | None:
        """See :meth:`Store.wait_for_finish <flask_asyncendpoints.stores.base.Store.wait_for_finish>`.

        The scripts that finish jobs publish their ids on the ``finished`` channel of their queue
        (sharded on a cluster); one subscriber thread per process wakes the waiters of each id, so
        the answer comes as soon as the job finishes. The job is read again at least every second,
        so a lost message costs a second, not the whole wait.
        """
        deadline = time.monotonic() + timeout
        job = self.get(job_id)
        if job is None or job.status.is_final or timeout <= 0:
            return job
        finished = threading.Event()
        with self._lock:
            self._finish_waiters.setdefault(job_id, set()).add(finished)
        try:
            ready = self._listen_finished(self._keys(job.queue))
            if not ready.is_set():
                ready.wait(min(1.0, max(deadline - time.monotonic(), 0)))
                job = self.get(job_id)
            while True:
                remaining = deadline - time.monotonic()
                if job is None or job.status.is_final or remaining <= 0:
                    return job
                finished.wait(min(remaining, 1.0))
                finished.clear()
                job = self.get(job_id)
        finally:
            with self._lock:
                waiters = self._finish_waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(finished)
                    if not waiters:
                        del self._finish_waiters[job_id]

    def _listen_finished(self, keys: QueueKeys) -> threading.Event:
        """Listen to the queue's ``finished`` channel (once per process); the event of its subscription."""
        return self._listen(keys.key(FINISHED_CHANNEL), self._heard_finished)

    def _listen(self, channel: str, handler: Callable[[str], None]) -> threading.Event:
        with self._lock:
            new = channel not in self._channels
            self._channels.add(channel)
        if new:
            return self._notifier.listen(channel, handler)[0]
        return self._notifier.subscribed(channel)

    def _heard_finished(self, message: str) -> None:
        with self._lock:
            if not self._finish_waiters:
                return
            events = [event for job_id in message.split(" ") for event in self._finish_waiters.get(job_id, ())]
        for event in events:
            event.set()

    def ping(self) -> None:
        """Raise :class:`~flask_asyncendpoints.errors.StoreError` if Redis cannot be reached."""
        with self._errors("pinging"):
            self._client.ping()

    def close(self) -> None:
        """Close the connections of a client this store created (:meth:`from_url`); a given client is left open."""
        self._notifier.close()
        closers, self._closers = self._closers, []
        for close in closers:
            close()


def _first_score(reply: Any) -> float | None:
    """The score in a ``ZRANGE … WITHSCORES`` reply of one member (flat or pairs), or ``None``."""
    if not reply:
        return None
    first = reply[0]
    if isinstance(first, (list, tuple)):
        return float(first[1])
    return float(reply[1])
