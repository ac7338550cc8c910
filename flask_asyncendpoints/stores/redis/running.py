"""The Redis store's calls on a job once it is created: claims, the ends of attempts, cancels, progress and logs.

A claim leases each job it takes to one attempt and hands the worker a lease token naming the
job's queue (:func:`~.keys.lease_token`): every later call of that attempt goes straight to the
queue's keys, and its script changes nothing once the attempt no longer holds the lease, so a late
result is never written over a newer attempt. A cancel starts from the job's id instead, and
follows its pointer when the job lives in another queue than the default one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...jobs import DEFAULT_QUEUE, ClaimedJob, Job, JobError, JobStatus, LogRecord, Progress
from ..base import CancelResult, LeaseState
from ..jsontext import compact_json, encode_error
from .codec import (
    LEASE_STATES,
    as_text,
    claimed_job,
    encode_log,
    error_parts,
    parse_time,
    pointed_queue,
    script_arg,
)
from .core import RedisCore
from .keys import claim_nonce, lease_token, parse_token, sequence_arg

# The package's name rather than this module's: every part of the Redis store logs as one logger.
logger = logging.getLogger(__package__)


class RedisRunning(RedisCore):
    """Claims, the ends of attempts, cancels, progress and log lines: a part of :class:`~.store.RedisStore`."""

    #: Progress this process recorded for running attempts, by (job id, attempt id): the
    #: completed job is answered with it without reading it back.
    _progress: dict[tuple[str, str], Progress]

    if TYPE_CHECKING:
        # Kept by the cancel announcements (waiting.RedisWaiting).
        _origin: str
        _cancel_callbacks: list[Callable[[str], None]]
        _claimed_queues: set[str]

        def _listen_cancels(self, queue: str) -> None: ...
        def _tell_cancel(self, job_id: str) -> None: ...

    # -- claims and leases ---------------------------------------------------------------------------

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
            nonce = claim_nonce()
            args = [at, limit - len(claimed), float(lease_seconds), nonce, worker]
            self._add_claimed(claimed, queue, nonce, started, self._run("claim", [self._keys(queue).base], args))
        return claimed

    def _add_claimed(
        self, claimed: list[ClaimedJob], queue: str, nonce: str, started: datetime, reply: Sequence[Any]
    ) -> None:
        """Add the jobs of one ``claim.lua`` reply (its list of claimed jobs) to ``claimed``.

        :param nonce: the nonce the script was given: the attempt ids start with it.
        :param started: the time the script was given (or answered), the jobs' ``startedAt``.
        """
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

    # -- the ends of attempts ------------------------------------------------------------------------

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
                sequence_arg(),
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
        reply = self._run("release", [keys.base], [self._now(now), job_id, attempt, self.history_limit, sequence_arg()])
        self._forget_progress(job_id, attempt)
        return bool(reply)

    # -- cancels -------------------------------------------------------------------------------------

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

    # -- progress and logs ---------------------------------------------------------------------------

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
