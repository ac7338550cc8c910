"""The Redis store's upkeep and operator calls: recovering expired leases, purging, requeue and delete,
a job's history and log, and the occurrences of recurring jobs.

The calls that go over every queue (``recover``, ``purge``, ``purge_finished``) walk the set of
queues (``{p}:queues``) and run one script per queue; the ones that start from a job's id look in
the default queue first and follow the job's pointer when it lives in another queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...errors import StoreError
from ...jobs import DEFAULT_QUEUE, FINAL_STATUSES, AttemptRecord, Job, JobError, LogRecord
from ..base import LEASE_EXPIRED_CODE, LEASE_EXPIRED_MESSAGE
from ..jsontext import encode_error
from .codec import (
    as_text,
    decode_attempts,
    decode_log,
    error_parts,
    hash_fields,
    pointed_queue,
    script_arg,
)
from .core import RedisCore
from .keys import DONE, sequence_arg

#: Written on jobs whose lease ran out with no retries left: the same structured error as every store.
_LEASE_EXPIRED_ERROR = JobError(code=LEASE_EXPIRED_CODE, message=LEASE_EXPIRED_MESSAGE)
_LEASE_EXPIRED_PARTS = error_parts(_LEASE_EXPIRED_ERROR)


class RedisUpkeep(RedisCore):
    """Upkeep, operator calls, history and recurring occurrences: a part of :class:`~.store.RedisStore`."""

    # -- upkeep --------------------------------------------------------------------------------------

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
                    sequence_arg(),
                ],
            )
            recovered += [self._job(as_text(raw_id), queue, record, fields) for raw_id, record, fields in reply]
        return recovered

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

    # -- operators -----------------------------------------------------------------------------------

    def requeue(self, job_id: str, *, now: float | None = None) -> Job | None:
        """See :meth:`Store.requeue <flask_asyncendpoints.stores.base.Store.requeue>`."""
        args = [self._now(now), job_id, sequence_arg()]
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
