"""The Redis store's waits and announcements: idle workers woken when work comes, long-polls woken
when their job finishes, and cancel requests told to every process.

Idle workers block on their queues' wake lists on a single server and on the queues' sharded
``wake`` channels on a cluster; a long-poll blocks on its job's own token list, which the script
that finishes the job pushes to once a wait is noted for it. Cancel requests are published on each
queue's ``cancels`` channel; one subscriber thread per process hears every channel
(:class:`~.pubsub.Notifier`) and wakes the callers waiting here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...jobs import DEFAULT_QUEUE, ClaimedJob, Job
from ..jsontext import compact_json
from .codec import as_text, parse_time, pointed_queue
from .core import RedisCore
from .keys import CANCELS_CHANNEL, FINISH_TOKENS, READY, SCHEDULED, WAKE, QueueKeys, claim_nonce
from .pubsub import Notifier

# The package's name rather than this module's: every part of the Redis store logs as one logger.
logger = logging.getLogger(__package__)

#: Seconds a long-poll blocks on its job's token list at most before it reads the job again.
FINISH_WAIT_CHUNK = 1.0

#: Seconds a noted wait outlives the block it was noted for (round trips, a slow server).
FINISH_WAIT_SLACK = 10.0


class RedisWaiting(RedisCore):
    """Waiting for work and for jobs to finish, and cancel announcements: a part of :class:`~.store.RedisStore`."""

    #: Callers of wait_for_work blocked now, per queue (a single server wakes them with tokens).
    _waiting: dict[str, int]
    #: Wake-ups heard on a cluster, counted per queue, and local wake() calls: wait_for_work
    #: waits for a count to move.
    _wakes: threading.Condition
    _wake_counts: dict[str, int]
    _woken: int
    _wake_pending: bool
    #: Who this store is in the cancel announcements it publishes.
    _origin: str
    _cancel_callbacks: list[Callable[[str], None]]
    #: The channels this process listens to.
    _channels: set[str]
    #: The queues this process has claimed from: it listens to their cancel announcements.
    _claimed_queues: set[str]
    _notifier: Notifier

    if TYPE_CHECKING:
        # The store's other parts: store.RedisStore and running.RedisRunning.

        def get(self, job_id: str) -> Job | None: ...
        def claim(
            self,
            limit: int,
            lease_seconds: float,
            *,
            queues: Sequence[str] = ...,
            worker_id: str = "",
            now: float | None = None,
        ) -> list[ClaimedJob]: ...
        def _add_claimed(
            self, claimed: list[ClaimedJob], queue: str, nonce: str, started: datetime, reply: Sequence[Any]
        ) -> None: ...

    # -- waiting for work ----------------------------------------------------------------------------

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
        woken = 0
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
                # Read in the same hold of the lock as the pending flag: a wake() from here on
                # moves the count this wait watches.
                woken = self._woken
                seen = {queue_keys.queue: self._wake_counts.get(queue_keys.queue, 0) for queue_keys in keys}
        with self._errors("waiting for work"):
            wait = self._wait_time(keys, timeout)
            if wait is None:
                return
            if self.cluster:

                def heard() -> bool:
                    if self._woken != woken:
                        # This wait took the wake(): it is not left pending for the next one.
                        self._wake_pending = False
                        return True
                    return any(self._wake_counts.get(q, 0) != n for q, n in seen.items())

                with self._wakes:
                    self._wakes.wait_for(heard, wait)
                return
            with self._blocked(keys):
                self._client.blpop([k.key(WAKE) for k in keys], timeout=wait)

    def wait_and_claim(
        self,
        timeout: float,
        limit: int,
        lease_seconds: float,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        worker_id: str = "",
        now: float | None = None,
    ) -> list[ClaimedJob]:
        """See :meth:`Store.wait_and_claim <flask_asyncendpoints.stores.base.Store.wait_and_claim>`.

        On a single server the jobs come back with the wake-up, in the same round trip: the first
        queue's claim script goes out on this thread's connection right behind the ``BLPOP`` on the
        queues' wake lists (a pipeline, not a transaction), and Redis runs it the moment the
        ``BLPOP`` returns or times out. Without ``now`` that claim reads the server's ``TIME``
        itself, since no time named before the wait holds once it ends. The other queues, if any,
        are then claimed as :meth:`claim` does, for what the first one left. On a cluster, where
        the wake-ups are published in each queue's own slot, it waits, then claims.
        """
        if self.cluster or limit <= 0 or not queues:
            self.wait_for_work(timeout, queues=queues)
            return self.claim(limit, lease_seconds, queues=queues, worker_id=worker_id, now=now)
        keys = [self._keys(queue) for queue in queues]
        with self._errors("waiting for work"):
            wait = self._wait_time(keys, timeout)
        if wait is None:
            return self.claim(limit, lease_seconds, queues=queues, worker_id=worker_id, now=now)
        first = keys[0]
        nonce = claim_nonce()
        args = ["" if now is None else float(now), limit, float(lease_seconds), nonce, compact_json(worker_id)]
        with self._blocked(keys):
            woken, reply = self._scripts.run_behind(
                ("BLPOP", *(k.key(WAKE) for k in keys), wait), "claim", [first.base], args, doing="waiting for work"
            )
        if now is None:
            stamp, reply = reply
            started = parse_time(as_text(stamp))
        else:
            started = parse_time(repr(float(now)))
        claimed: list[ClaimedJob] = []
        self._add_claimed(claimed, first.queue, nonce, started, reply)
        if isinstance(woken, Exception) and not claimed:
            raise self._scripts.store_error(woken, "waiting for work") from woken
        if len(claimed) < limit and len(keys) > 1:
            claimed += self.claim(limit - len(claimed), lease_seconds, queues=queues[1:], worker_id=worker_id, now=now)
        return claimed

    def _wait_time(self, keys: Sequence[QueueKeys], timeout: float) -> float | None:
        """How long a wait for work on the queues of ``keys`` may block, in seconds to the
        millisecond; ``None`` when a job is due already (or the wait would be shorter than a
        millisecond). One round trip; call it inside ``_errors``.

        The wait ends when the next scheduled job is due, and below the client's socket timeout.
        """
        replies = self._call_many(
            [("ZCARD", k.key(READY)) for k in keys] + [("ZRANGE", k.key(SCHEDULED), 0, 0, "WITHSCORES") for k in keys]
        )
        if any(int(n) > 0 for n in replies[: len(keys)]):
            return None
        heads = [_first_score(reply) for reply in replies[len(keys) :]]
        due = [head for head in heads if head is not None]
        if due:
            timeout = min(timeout, min(due) - self._now(None))
        if self._socket_timeout:
            timeout = min(timeout, max(self._socket_timeout - 0.5, self._socket_timeout / 2))
        # BLPOP takes milliseconds and reads 0 as "forever": anything shorter is no wait at all.
        if timeout < 0.001:
            return None
        return round(timeout, 3)

    @contextmanager
    def _blocked(self, keys: Sequence[QueueKeys]) -> Iterator[None]:
        """Count the caller among the waiters of the queues of ``keys`` while it blocks (see :meth:`wake`)."""
        with self._lock:
            for queue_keys in keys:
                self._waiting[queue_keys.queue] = self._waiting.get(queue_keys.queue, 0) + 1
        try:
            yield
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

    # -- waiting for a job to finish -----------------------------------------------------------------

    def wait_for_finish(self, job_id: str, timeout: float) -> Job | None:
        """See :meth:`Store.wait_for_finish <flask_asyncendpoints.stores.base.Store.wait_for_finish>`.

        The caller blocks on the job's own token list (``BLPOP`` on ``T:f:<id>``), which the script
        that finishes the job pushes to once a wait is noted for it (``T:waits``), and the job is
        read again by the ``await`` script sent behind the ``BLPOP``, in the same round trip: the
        answer comes with the wake-up, in the waiting thread, with no message to hand over. The
        first read notes the wait; each read behind a ``BLPOP`` notes it again while the job has not
        finished, and passes a finished job's token on to its other long-polls. A ``BLPOP`` blocks
        for at most :data:`FINISH_WAIT_CHUNK` seconds, so a lost token costs that, not the whole wait.
        """
        if timeout <= 0:
            return self.get(job_id)
        deadline = time.monotonic() + timeout
        keys = self._default
        found = self._await(keys, job_id, timeout)
        if found is not None and len(found) == 1:
            queue = pointed_queue(as_text(found[0]))
            if queue is None:
                return None
            keys = self._keys(queue)
            found = self._await(keys, job_id, timeout)
        while True:
            if found is None or len(found) != 2:
                return None
            job = self._job(job_id, keys.queue, found[0], found[1])
            wait = min(deadline - time.monotonic(), FINISH_WAIT_CHUNK)
            if self._socket_timeout:
                wait = min(wait, max(self._socket_timeout - 0.5, self._socket_timeout / 2))
            # BLPOP takes milliseconds and reads 0 as "forever": anything shorter is no wait at all.
            if job.status.is_final or wait < 0.001:
                return job
            wait = round(wait, 3)
            tokens = keys.key(FINISH_TOKENS) + job_id
            woken, found = self._scripts.run_behind(
                ("BLPOP", tokens, wait),
                "await",
                [keys.base],
                self._await_args(job_id, wait, behind=True),
                doing="waiting for a job to finish",
            )
            if isinstance(woken, Exception):
                raise self._scripts.store_error(woken, "waiting for a job to finish") from woken

    def _await(self, keys: QueueKeys, job_id: str, timeout: float) -> Any:
        """The ``await`` script's first read of a job, which notes the wait while the job runs."""
        return self._run("await", [keys.base], self._await_args(job_id, min(timeout, FINISH_WAIT_CHUNK), behind=False))

    def _await_args(self, job_id: str, wait: float, *, behind: bool) -> list[Any]:
        """The ``await`` script's arguments for a block of ``wait`` seconds (``behind``: sent behind its ``BLPOP``)."""
        now = self._now(None)
        return [job_id, now, now + wait + FINISH_WAIT_SLACK, "1" if behind else "0"]

    # -- cancel announcements ------------------------------------------------------------------------

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

    def _listen(self, channel: str, handler: Callable[[str], None]) -> threading.Event:
        """Listen to ``channel`` (once per process); the event of its subscription."""
        with self._lock:
            new = channel not in self._channels
            self._channels.add(channel)
        if new:
            return self._notifier.listen(channel, handler)[0]
        return self._notifier.subscribed(channel)

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


def _first_score(reply: Any) -> float | None:
    """The score in a ``ZRANGE … WITHSCORES`` reply of one member (flat or pairs), or ``None``."""
    if not reply:
        return None
    first = reply[0]
    if isinstance(first, (list, tuple)):
        return float(first[1])
    return float(reply[1])
