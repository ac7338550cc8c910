"""The attempts this process holds, and the state every part of the worker shares.

Every other module of the worker reads and changes this state; none calls back into another to do
so. The pool adds claimed attempts here, a run marks its attempt done running, the result writer,
the maintenance thread and shutdown let attempts go here. So the ledger sits below all of them, and
one lock (with its condition, ``room``) guards all of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import Settings
from ..errors import StoreError
from ..jobs import ClaimedJob, Job
from ..stores import Store

logger = logging.getLogger("flask_asyncendpoints")

#: Longest back-off after repeated store errors (seconds).
MAX_ERROR_BACKOFF = 30.0


class StoreHealth:
    """Whether the job store answers this worker, so an outage is logged once, not at every retry.

    Every part of the worker reports its store calls here: :meth:`failed` for a
    :class:`~flask_asyncendpoints.errors.StoreError`, :meth:`answered` for a call that went through.
    The first failure logs one warning with the error; the failures after it are counted (and logged
    at debug level, traceback included); the first call that goes through again logs one info line
    with the outage's length and the count.

    :param clock: ``time.monotonic`` (tests pass a fake).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        #: ``clock()`` at the first failure of the outage under way; ``None`` while the store answers.
        self.down_since: float | None = None
        #: Store calls that failed in the outage under way.
        self.failures = 0

    def failed(self, exc: StoreError, doing: str) -> None:
        """A store call failed while ``doing`` (e.g. ``"claiming jobs"``)."""
        with self._lock:
            self.failures += 1
            first = self.down_since is None
            if first:
                self.down_since = self._clock()
        if first:
            logger.warning(
                "job store unavailable while %s: %s Retrying with back-off; further errors are counted, "
                "not logged, until it answers again.",
                doing,
                exc,
            )
        else:
            logger.debug("job store still unavailable while %s", doing, exc_info=exc)

    def answered(self) -> None:
        """A store call went through: ends the outage under way, if any."""
        if self.down_since is None:  # the common case, without the lock
            return
        with self._lock:
            since, failures = self.down_since, self.failures
            if since is None:
                return
            self.down_since = None
            self.failures = 0
        logger.info(
            "job store available again after %.1f s; %d store call(s) failed during the outage",
            self._clock() - since,
            failures,
        )


class CancelEvent(threading.Event):
    """A :class:`threading.Event` that builds its condition when first set, cleared or waited on.

    Each attempt has one (the handler's ``ctx.cancelled``), and for almost every attempt it is only
    ever read: nothing cancels the job and the handler never waits on it. ``threading.Event()``
    builds a condition and its lock there and then: a tenth of a memory-store job's instructions,
    and more of its time (on a plain lock, the condition's constructor raises and catches an
    ``AttributeError`` three times).

    It implements every method of ``Event`` itself, on attributes of its own, so it relies on
    nothing of ``Event``'s beyond its interface.
    """

    #: Taken once per event that gets a condition, so two threads building it at once share one.
    _building = threading.Lock()

    def __init__(self) -> None:  # not Event.__init__: that builds the condition
        self._is_set = False
        self._condition: threading.Condition | None = None

    def _cond(self) -> threading.Condition:
        condition = self._condition
        if condition is None:
            with CancelEvent._building:
                condition = self._condition
                if condition is None:
                    condition = self._condition = threading.Condition(threading.Lock())
        return condition

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} at {id(self):#x}: {'set' if self._is_set else 'unset'}>"

    def _at_fork_reinit(self) -> None:
        # A condition held in the parent is of no use in a forked child: it builds its own.
        self._condition = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        condition = self._cond()
        with condition:
            self._is_set = True
            condition.notify_all()

    def clear(self) -> None:
        with self._cond():
            self._is_set = False

    def wait(self, timeout: float | None = None) -> bool:
        condition = self._cond()
        with condition:
            signaled = self._is_set
            if not signaled:
                signaled = condition.wait(timeout)
            return signaled


@dataclass(eq=False)
class Attempt:
    """One claimed job in this process, from claim to the store's last word on it."""

    claimed: ClaimedJob
    cancelled: threading.Event = field(default_factory=CancelEvent)
    #: ``time.monotonic()`` when a pool thread started running it; ``None`` while buffered.
    started: float | None = None
    #: Set when the attempt timed out: its thread is no longer counted and its result is discarded.
    abandoned: bool = False
    #: Set once the handler is done and its outcome is being written: a renew that finds the lease
    #: gone then raced with that write, which is no lost lease. Its slot is free from then on.
    finishing: bool = False
    last_progress_write: float = 0.0
    pending_progress: tuple[float, str | None] | None = None

    @property
    def job(self) -> Job:
        return self.claimed.job

    @property
    def number(self) -> int:
        """The attempt's number: 1 for the first run."""
        return self.claimed.job.retry_count + 1

    def duration(self) -> float | None:
        """Seconds since its handler started (``None`` while buffered)."""
        return time.monotonic() - self.started if self.started is not None else None


class Ledger:
    """The attempts held in this process (buffered or running), their slots, and the stop flag.

    ``lock`` guards every attribute here and the pool's claim-turn state; ``room`` (a condition on
    it) is notified when an attempt is buffered, when the worker stops, and, while it stops, when an
    attempt is let go.

    :param settings: the app's extension settings (the capacity comes from them).
    :param store: the app's job store (woken when the last attempt is let go and someone waits for idleness).
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)
        self.attempts: dict[str, Attempt] = {}
        #: Claimed attempts not started yet, oldest first.
        self.buffer: deque[Attempt] = deque()
        #: Slots the claim under way may fill.
        self.reserved = 0
        self.stopping = threading.Event()
        #: Set to cut a shutdown's wait for running jobs short: they are given back at once.
        self.hurry = False
        #: Set while no job is due and none is held here (for ``--burst``).
        self.idle = threading.Event()
        self.watching_idle = False
        #: Outages of the store, as every part of the worker sees them.
        self.health = StoreHealth()

    @property
    def capacity(self) -> int:
        """Jobs this process holds at most, waiting or running: one per thread plus a small
        claimed-ahead buffer."""
        return self.settings.max_concurrency + min(self.settings.batch_size, self.settings.max_queue_size)

    def free_slots(self) -> int:
        """Slots a claim may fill now. Call with ``lock`` held.

        Jobs whose handler is done and whose outcome is being written do not count: they hold no
        thread, and a batch of results on its way to the store must not keep the next claim waiting.
        """
        held = sum(1 for a in self.attempts.values() if not (a.abandoned or a.finishing))
        return self.capacity - held - self.reserved

    def cancel_requested(self, job_id: str) -> None:
        """A cancel was requested for ``job_id`` (the store announced it): tell its handler at once.

        Called from any thread (the store's listener); a job not held here is none of ours.
        """
        with self.lock:
            attempt = self.attempts.get(job_id)
        if attempt is not None and not attempt.abandoned:
            attempt.cancelled.set()

    def done_running(self, attempt: Attempt) -> None:
        """The attempt's handler has returned or raised: its slot is free for the next claim.

        One flag, set once and never cleared, without the lock: its readers hold the lock only to
        read it, so taking it here would order nothing, and it is taken once per job by every pool
        thread already (each contended hand-off costs two context switches under the GIL).
        """
        attempt.finishing = True

    def forget(self, attempt: Attempt, *, abandon: bool = False) -> None:
        """Stop holding an attempt (its outcome is written, discarded, or no longer ours to write).

        :param abandon: mark it abandoned first, so a result it still produces is discarded.
        """
        with self.lock:  # the room's lock (the condition's ``with`` is a Python call on top of it)
            if abandon:
                attempt.abandoned = True
            if self.attempts.get(attempt.job.id) is attempt:
                del self.attempts[attempt.job.id]
            if self.stopping.is_set():
                self.room.notify_all()  # shutdown waits for running attempts to end
            ran_empty = self.watching_idle and not self.attempts
        if ran_empty:
            # Someone waits for idleness: let the thread waiting for work look again now rather than
            # at the end of its poll interval.
            try:
                self.store.wake()
            except StoreError:
                logger.debug("could not wake the worker's waiting thread", exc_info=True)
