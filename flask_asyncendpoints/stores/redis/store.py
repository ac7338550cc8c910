"""The Redis store: one job queue shared by every process and machine that uses the same Redis.

Keys (``{p}`` is the key prefix, ``ae`` by default):

==========================  =========  ==============================================================
``{p}:job:{id}``            hash       one job; its fields are listed in ``lua/common.lua``. Values are
                                       JSON text or plain numbers and strings, timestamps epoch seconds.
``{p}:jobs:queue``          zset       ``Queued`` and ``Scheduled`` jobs scored by due time. Members are
                                       ``<sequence>:<id>`` so jobs due at the same time leave in the order
                                       they were queued.
``{p}:jobs:inprogress``     zset       running job ids scored by lease expiry.
``{p}:jobs:expiring``       zset       finished job ids that have a result ttl, scored by purge time.
``{p}:jobs:counts``         hash       jobs per status (for :meth:`~RedisStore.counts` and the pending
                                       limit, without scanning) and ``seq``, the queue sequence.
``{p}:jobs:wake``           list       wake tokens idle workers block on; capped, and gone after a minute
                                       without a push.
==========================  =========  ==============================================================

Every change is one Lua script from ``lua/``: the state of a job and every index that points at it
change together or not at all. Scripts use the caller's ``now`` when given and the Redis server's
clock otherwise, so leases are judged on one clock whatever the clocks of the app servers say.

Redis Cluster: every key a script touches is passed in ``KEYS``. Where the job ids are only known
inside the script (claim, recover, purge) the job keys are built from the ``{p}:job:`` prefix, passed
as a key, so all keys must share one slot: give the prefix a hash tag, such as ``{ae}``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError, StoreError
from ...jobs import DEFAULT_QUEUE, ClaimedJob, Job, JobError, JobPayload, JobStatus
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
from .codec import (
    LEASE_STATES,
    as_text,
    claimed_job,
    compact_json,
    completed_job,
    decode_job,
    encode_error,
    encode_payload,
    hash_fields,
    parse_time,
    script_arg,
)
from .connection import ThreadConnections, import_redis
from .pubsub import FinishedListener
from .scans import purge_finished_jobs
from .scripts import ScriptRunner
from .urls import connect, describe

if TYPE_CHECKING:
    import redis

# The package's name rather than this module's: every part of the Redis store logs as one logger.
logger = logging.getLogger(__package__)

#: Jobs per ``create_many`` script: the calls of one batch go out in one pipeline, and no single
#: script holds Redis up for long (a script blocks every other client while it runs).
CREATE_MANY_CHUNK = 200

#: Written on jobs whose lease ran out with no retries left: the same structured error as every store.
_LEASE_EXPIRED_ERROR = JobError(code=LEASE_EXPIRED_CODE, message=LEASE_EXPIRED_MESSAGE)


def _default_queue_only(queues: Sequence[str], *, priority: int = 0, due: float | None = None) -> None:
    """Refuse what this store cannot keep yet: every job is in the default queue, due at once, priority 0."""
    if any(queue != DEFAULT_QUEUE for queue in queues) or priority != 0 or due is not None:
        raise NotImplementedError(
            f"The Redis store keeps jobs in the {DEFAULT_QUEUE!r} queue only, due at once and of priority 0, "
            f"for now: not queues {list(queues)!r}, priority {priority!r}, due {due!r}. Use the memory store "
            "for named queues, priorities and delayed jobs."
        )


class RedisStore(Store):
    """Jobs in Redis, shared by every process and machine using the same server and key prefix.

    :param client: a ``redis.Redis`` client (``decode_responses`` either way). The store does not
        close a client it was given.
    :param key_prefix: the first part of every key. Use a hash tag (``{ae}``) on Redis Cluster.
    :param history_limit: how many attempts each job's history keeps.
    :raises ConfigurationError: when the ``redis`` package is missing or the prefix is empty.
    """

    def __init__(
        self, client: redis.Redis, *, key_prefix: str = "ae", history_limit: int = DEFAULT_HISTORY_LIMIT
    ) -> None:
        import_redis()  # first: without redis-py nothing else here can work, and the error says what to install
        if not key_prefix:
            raise ConfigurationError(
                "ASYNCENDPOINTS_KEY_PREFIX must not be empty: every key of the store starts with it."
            )
        self._client = client
        self.key_prefix = key_prefix
        self.history_limit = history_limit
        self._job_prefix = f"{key_prefix}:job:"
        self._queue = f"{key_prefix}:jobs:queue"
        self._inprogress = f"{key_prefix}:jobs:inprogress"
        self._expiring = f"{key_prefix}:jobs:expiring"
        self._counts = f"{key_prefix}:jobs:counts"
        self._wake = f"{key_prefix}:jobs:wake"
        self._where = describe(client)
        connections = ThreadConnections(client)
        self._scripts = ScriptRunner(client, connections, where=self._where, key_prefix=key_prefix)
        # Bound once, here: every operation goes through these, so they cost no more than methods.
        self._call = connections.call
        self._run = self._scripts.run
        self._run_many = self._scripts.run_many
        self._errors = self._scripts.errors
        pool_options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        self._socket_timeout: float | None = pool_options.get("socket_timeout")
        self._closers: list[Callable[[], None]] = []
        self._waiters = 0
        self._waiters_lock = threading.Lock()
        #: Wakes long-polls as their jobs finish: the scripts publish finished ids on this channel.
        self._finished = FinishedListener(client, f"{key_prefix}:jobs:finished")

    batches_completions = True

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

        :param url: the ``ASYNCENDPOINTS_STORE`` URL.
        :param key_prefix: the first part of every key.
        :param history_limit: how many attempts each job's history keeps.
        :param client_options: more ``redis.Redis`` options (they override
            :data:`~flask_asyncendpoints.stores.redis.urls.CLIENT_DEFAULTS`).
        :raises ConfigurationError: when the URL cannot be used or ``redis`` is not installed.
        """
        client, closers = connect(url, **client_options)
        store = cls(client, key_prefix=key_prefix, history_limit=history_limit)
        store._closers = closers
        return store

    # -- plumbing --------------------------------------------------------------------------------------

    def _job_key(self, job_id: str) -> str:
        return self._job_prefix + job_id

    def _job(self, job_id: str, raw: Any) -> Job:
        try:
            return decode_job(job_id, hash_fields(raw))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise StoreError(
                f"The job {job_id} in Redis at {self._where} cannot be read ({exc!r}). Check that nothing else "
                f"writes keys under the prefix {self.key_prefix!r}."
            ) from exc

    # -- the store interface ---------------------------------------------------------------------------

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

        :raises NotImplementedError: for a queue other than ``"default"``, a priority or a ``due``.
        """
        _default_queue_only((queue,), priority=priority, due=due)
        payload_json = encode_payload(payload)
        reply = self._run(
            "create",
            [self._job_key(job_id), self._queue, self._counts, self._wake],
            [script_arg(now), job_id, name, int(max_retries), payload_json, script_arg(max_pending)],
        )
        created = self._created(job_id, name, int(max_retries), payload_json, reply)
        if created is None:
            raise PendingLimitReached(f"{max_pending} jobs are already pending")
        return created

    def _created(
        self, job_id: str, name: str, max_retries: int, payload_json: str, reply: Sequence[Any]
    ) -> tuple[Job, bool] | None:
        """What ``create.lua`` answered: the new job built here from what was sent, or the existing job."""
        outcome = int(reply[0])
        if outcome < 0:
            return None
        if outcome == 0:
            return self._job(job_id, reply[1]), False
        job = Job.new(
            job_id,
            name,
            max_retries=max_retries,
            # As it reads back: JSON turns tuples into lists, and so on.
            payload=JobPayload.from_dict(json.loads(payload_json)),
            created_at=parse_time(as_text(reply[1])),
        )
        return job, True

    def create_many(
        self,
        jobs: Sequence[NewJob],
        *,
        max_pending: int | None = None,
        now: float | None = None,
    ) -> list[tuple[Job, bool] | None]:
        """See :meth:`Store.create_many <flask_asyncendpoints.stores.base.Store.create_many>`.

        One ``create_many`` script per :data:`CREATE_MANY_CHUNK` jobs, all in one pipeline: one
        round trip for the whole batch.

        :raises NotImplementedError: for a queue other than ``"default"``, a priority or a ``due``
            (nothing is stored).
        """
        if not jobs:
            return []
        for new in jobs:
            _default_queue_only((new.queue,), priority=new.priority, due=new.due)
        sent = [(new.id, new.name, int(new.max_retries), encode_payload(new.payload)) for new in jobs]
        calls = []
        for start in range(0, len(sent), CREATE_MANY_CHUNK):
            keys = [self._queue, self._counts, self._wake]
            args: list[Any] = [script_arg(now), script_arg(max_pending)]
            for job_id, name, max_retries, payload_json in sent[start : start + CREATE_MANY_CHUNK]:
                keys.append(self._job_key(job_id))
                args += [job_id, name, max_retries, payload_json]
            calls.append((keys, args))
        replies = [reply for chunk in self._run_many("create_many", calls) for reply in chunk]
        return [self._created(*job, reply) for job, reply in zip(sent, replies, strict=True)]

    def get(self, job_id: str) -> Job | None:
        """See :meth:`Store.get <flask_asyncendpoints.stores.base.Store.get>`."""
        with self._errors("reading a job"):
            raw = self._call("HGETALL", self._job_key(job_id))
        if not raw:
            return None
        return self._job(job_id, raw)

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

        :raises NotImplementedError: for a queue other than ``"default"``.
        """
        _default_queue_only(queues)
        if limit <= 0:
            return []
        reply = self._run(
            "claim",
            [self._queue, self._inprogress, self._counts, self._job_prefix],
            [script_arg(now), int(limit), float(lease_seconds), uuid.uuid4().hex],
        )
        started = parse_time(as_text(reply[0]))
        claimed: list[ClaimedJob] = []
        for raw_id, token, *fields in reply[1:]:
            job_id = as_text(raw_id)
            try:
                job = claimed_job(job_id, started, [as_text(value) for value in fields])
            except (KeyError, ValueError, TypeError, AttributeError):
                # Leased but unreadable: skipping it lets the rest of the batch run; its lease runs out
                # and recovery fails it for good once its retries are spent.
                logger.exception("Skipped job %s: its stored record cannot be read", job_id)
                continue
            claimed.append(ClaimedJob(job, as_text(token)))
        return claimed

    def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, *, now: float | None = None
    ) -> dict[str, LeaseState]:
        """See :meth:`Store.renew <flask_asyncendpoints.stores.base.Store.renew>`."""
        if not leases:
            return {}
        args: list[Any] = [script_arg(now), float(lease_seconds)]
        for job_id, token in leases:
            args += [job_id, token]
        states = self._run("renew", [self._inprogress, *(self._job_key(job_id) for job_id, _ in leases)], args)
        return {job_id: LEASE_STATES[int(state)] for (job_id, _), state in zip(leases, states, strict=True)}

    def complete(
        self, job_id: str, token: str, result_json: str, *, result_ttl: float | None, now: float | None = None
    ) -> Job | None:
        """See :meth:`Store.complete <flask_asyncendpoints.stores.base.Store.complete>`."""
        # Parsing refuses text that is not JSON before anything is stored, as the memory store does;
        # writing it back compactly keeps small results within Redis's compact hash encoding.
        result = compact_json(json.loads(result_json))
        reply = self._run(
            "complete",
            [self._inprogress, self._expiring, self._counts, self._job_key(job_id)],
            [script_arg(now), script_arg(result_ttl), job_id, token, result],
        )
        return None if reply is None else self._job(job_id, reply)

    def complete_many(
        self,
        completions: Sequence[tuple[ClaimedJob, str]],
        *,
        result_ttl: float | None,
        now: float | None = None,
    ) -> list[Job | None]:
        """See :meth:`Store.complete_many <flask_asyncendpoints.stores.base.Store.complete_many>`.

        One script for the whole batch, each completion still checked against its own lease. The
        script answers with the little that may have changed since the claim (the time, progress, a
        cancel request), so the completed jobs are not read back and decoded.
        """
        if not completions:
            return []
        keys = [self._inprogress, self._expiring, self._counts]
        args: list[Any] = [script_arg(now), script_arg(result_ttl)]
        results = []
        for claimed, result_json in completions:
            # Parsed to refuse text that is not JSON before anything is stored (and for the job
            # returned); stored as given, which the worker writes compactly already.
            results.append(json.loads(result_json))
            keys.append(self._job_key(claimed.job.id))
            args += [claimed.job.id, claimed.token, result_json]
        replies = self._run("complete_many", keys, args)
        return [
            None if not reply else completed_job(claimed.job, result, reply)
            for (claimed, _), result, reply in zip(completions, results, replies, strict=True)
        ]

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
        reply = self._run(
            "fail",
            [self._job_key(job_id), self._inprogress, self._queue, self._expiring, self._counts],
            [script_arg(now), job_id, token, encode_error(error), script_arg(retry_delay), script_arg(result_ttl)],
        )
        return None if reply is None else self._job(job_id, reply)

    def finish_canceled(
        self, job_id: str, token: str, *, result_ttl: float | None, now: float | None = None
    ) -> Job | None:
        """See :meth:`Store.finish_canceled <flask_asyncendpoints.stores.base.Store.finish_canceled>`."""
        reply = self._run(
            "finish_canceled",
            [self._job_key(job_id), self._inprogress, self._expiring, self._counts],
            [script_arg(now), job_id, token, script_arg(result_ttl)],
        )
        return None if reply is None else self._job(job_id, reply)

    def release(self, job_id: str, token: str, *, now: float | None = None) -> bool:
        """See :meth:`Store.release <flask_asyncendpoints.stores.base.Store.release>`."""
        reply = self._run(
            "release",
            [self._job_key(job_id), self._inprogress, self._queue, self._counts, self._wake],
            [script_arg(now), job_id, token],
        )
        return bool(reply)

    def cancel(
        self, job_id: str, *, result_ttl: float | None, now: float | None = None
    ) -> tuple[CancelResult, Job | None]:
        """See :meth:`Store.cancel <flask_asyncendpoints.stores.base.Store.cancel>`."""
        reply = self._run(
            "cancel",
            [self._job_key(job_id), self._queue, self._expiring, self._counts],
            [script_arg(now), job_id, script_arg(result_ttl)],
        )
        outcome = CancelResult(as_text(reply[0]))
        return outcome, (self._job(job_id, reply[1]) if len(reply) > 1 else None)

    def set_progress(
        self, job_id: str, token: str, fraction: float, message: str | None, *, now: float | None = None
    ) -> bool:
        """See :meth:`Store.set_progress <flask_asyncendpoints.stores.base.Store.set_progress>`."""
        reply = self._run(
            "set_progress",
            [self._job_key(job_id)],
            [script_arg(now), token, json.dumps(fraction), json.dumps(message, ensure_ascii=False)],
        )
        return bool(reply)

    def recover(self, *, result_ttl: float | None, limit: int = 100, now: float | None = None) -> list[Job]:
        """See :meth:`Store.recover <flask_asyncendpoints.stores.base.Store.recover>`."""
        if limit <= 0:
            return []
        reply = self._run(
            "recover",
            [self._inprogress, self._queue, self._expiring, self._counts, self._wake, self._job_prefix],
            [script_arg(now), script_arg(result_ttl), int(limit), encode_error(_LEASE_EXPIRED_ERROR)],
        )
        return [self._job(as_text(raw_id), raw) for raw_id, raw in reply]

    def purge(self, *, limit: int = 1000, now: float | None = None) -> int:
        """See :meth:`Store.purge <flask_asyncendpoints.stores.base.Store.purge>`."""
        if limit <= 0:
            return 0
        return int(self._run("purge", [self._expiring, self._counts, self._job_prefix], [script_arg(now), int(limit)]))

    def requeue(self, job_id: str, *, now: float | None = None) -> Job | None:
        """See :meth:`Store.requeue <flask_asyncendpoints.stores.base.Store.requeue>`."""
        reply = self._run(
            "requeue",
            [self._job_key(job_id), self._queue, self._expiring, self._counts, self._wake],
            [script_arg(now), job_id],
        )
        return None if reply is None else self._job(job_id, reply)

    def purge_finished(self, older_than: float, *, now: float | None = None) -> int:
        """See :meth:`Store.purge_finished <flask_asyncendpoints.stores.base.Store.purge_finished>`.

        Scans the job keys in batches (``SCAN``) and deletes each old finished job with one script, which
        checks the job again, so a job requeued meanwhile is kept.
        """
        return purge_finished_jobs(
            self._client,
            self._scripts,
            job_prefix=self._job_prefix,
            expiring=self._expiring,
            counts=self._counts,
            older_than=older_than,
            now=now,
        )

    def wait_for_finish(self, job_id: str, timeout: float) -> Job | None:
        """See :meth:`Store.wait_for_finish <flask_asyncendpoints.stores.base.Store.wait_for_finish>`.

        The scripts that finish a job publish its id on ``{p}:jobs:finished``; one listener thread per
        process subscribes and wakes the waiters of that id, so the answer comes as soon as the job
        finishes. The job is read again at least every second, so a lost message costs a second, not
        the whole wait.
        """
        deadline = time.monotonic() + timeout
        with self._finished.watching(job_id) as finished:
            while True:
                job = self.get(job_id)
                remaining = deadline - time.monotonic()
                if job is None or job.status.is_final or remaining <= 0:
                    return job
                finished.wait(min(remaining, 1.0))
                finished.clear()

    def counts(self, *, queue: str | None = None) -> Mapping[JobStatus, int]:
        """See :meth:`Store.counts <flask_asyncendpoints.stores.base.Store.counts>`.

        :raises NotImplementedError: for a queue other than ``"default"``.
        """
        if queue is not None:
            _default_queue_only((queue,))
        with self._errors("counting jobs"):
            raw = self._client.hmget(self._counts, [status.value for status in JobStatus])
        return {status: int(value or 0) for status, value in zip(JobStatus, raw, strict=True)}

    def wait_for_work(self, timeout: float, *, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> None:
        """Block on the wake list until a job may be due or ``timeout`` seconds pass.

        Returns at once when the queue's first job is due by the server's clock; waits no longer than
        until it is due otherwise. The wait is kept below the client's socket timeout, so a long
        ``timeout`` ends early (a spurious wake-up) rather than in a socket timeout error.

        :raises NotImplementedError: for a queue other than ``"default"``.
        """
        _default_queue_only(queues)
        with self._waiters_lock:
            self._waiters += 1
        try:
            with self._errors("waiting for work"):
                pipe = self._client.pipeline(transaction=False)
                pipe.zrange(self._queue, 0, 0, withscores=True)
                pipe.time()
                head, (seconds, micros) = pipe.execute()
                if head:
                    due_in = float(head[0][1]) - (seconds + micros / 1_000_000)
                    timeout = min(timeout, due_in)
                if self._socket_timeout:
                    timeout = min(timeout, max(self._socket_timeout - 0.5, self._socket_timeout / 2))
                # BLPOP takes milliseconds and reads 0 as "forever": anything shorter is no wait at all.
                if timeout < 0.001:
                    return
                self._client.blpop([self._wake], timeout=round(timeout, 3))
        finally:
            with self._waiters_lock:
                self._waiters -= 1

    def wake(self) -> None:
        """Push wake tokens: one for each caller of this store waiting in :meth:`wait_for_work`, at least one.

        A worker in another process sharing the queue may take a token first; the waiter it was meant
        for then wakes at its own timeout.
        """
        with self._waiters_lock:
            tokens = max(1, self._waiters)
        self._run("wake", [self._wake], [tokens])

    def ping(self) -> None:
        """Raise :class:`~flask_asyncendpoints.errors.StoreError` if Redis cannot be reached."""
        with self._errors("pinging"):
            self._client.ping()

    def close(self) -> None:
        """Close the connections of a client this store created (:meth:`from_url`); a given client is left open."""
        self._finished.close()
        closers, self._closers = self._closers, []
        for close in closers:
            close()
