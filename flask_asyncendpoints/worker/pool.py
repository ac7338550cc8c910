"""The pool threads and the claim turn.

A pool thread with nothing to do takes the next job from this process's buffer of claimed jobs;
when the buffer is empty it claims the next batch itself (``BATCH_SIZE`` at most, never more than
the process has room for), and when nothing is due it blocks in the store's wake-up wait and claims
what woke it (``Store.wait_and_claim``: on Redis the jobs come back with the wake-up). One thread
at a time claims; the others wait for it. So an idle worker starts a new job in the very thread
that heard of it, and a busy one pays one store round trip per batch, with no hand-off between
threads on the way.

On a store whose waits wake one waiter per job (``Store.concurrent_waits``: memory, a single Redis
server), a thread that found nothing to claim hands the turn on before it blocks, keeping the slots
it may fill, so every idle thread waits (as far as the slots go). A job that comes then starts in a
thread that was waiting already, and the next wait is under way before it: nothing else goes to the
store while it runs. Elsewhere one thread at a time waits, and the others wait for it.

The pool is daemon threads rather than a ``ThreadPoolExecutor``: an executor's threads are joined
without a time limit when the interpreter exits, so one stuck handler would hang shutdown forever,
and a timed-out thread could never be replaced. Here shutdown waits at most ``SHUTDOWN_TIMEOUT``,
and a thread stuck past its timeout is replaced by a fresh one.
"""

from __future__ import annotations

import threading
import time

from ..config import Settings
from ..errors import StoreError
from ..jobs import ClaimedJob
from ..stores import Store
from .ledger import MAX_ERROR_BACKOFF, Attempt, Ledger, logger
from .queues import QueueOrder
from .results import Results
from .run import Runner


class Pool:
    """The worker's pool threads: each takes a buffered attempt, or claims the next batch in its turn, and runs it.

    Its state is guarded by the ledger's lock.

    :param settings: the app's extension settings.
    :param store: the app's job store.
    :param ledger: the attempts held in this process.
    :param runner: runs each attempt.
    :param results: gives back jobs claimed while the worker shuts down.
    :param queues: the queues to claim from, in each turn's order.
    :param worker_id: recorded by the store with each attempt.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        ledger: Ledger,
        runner: Runner,
        results: Results,
        queues: QueueOrder,
        worker_id: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queues = queues
        self.worker_id = worker_id
        self._ledger = ledger
        self._runner = runner
        self._results = results
        # Taken as the lock itself, and waited on and notified through its condition: a condition's
        # ``with`` is one more Python call around the lock's, twice a job.
        self._lock = ledger.lock
        self._room = ledger.room
        self._threads: list[threading.Thread] = []
        #: Set while a pool thread has the claim turn (it claims, or waits for work where waits are
        #: not shared); the others wait for it.
        self._claiming = False
        #: Pool threads in a claim turn now, a wait for work included: shutdown waits for them to
        #: come back (see :meth:`wait_for_claims`).
        self._claims = 0
        self._claim_backoff = 0.0
        #: Pool threads to retire when they next finish a job (after replacements for stuck threads).
        self._excess_threads = 0
        self._stuck = 0

    def spawn(self) -> None:
        """Start one more pool thread. Call with the ledger's lock held."""
        thread = threading.Thread(target=self._loop, name=f"asyncendpoints-worker-{len(self._threads)}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def replace_stuck(self) -> None:
        """Start a fresh thread in place of one stuck in a timed-out handler, which keeps running it; up
        to as many replacements as the pool has threads. Call with the ledger's lock held."""
        if self._stuck < self.settings.max_concurrency:
            self._stuck += 1
            self._excess_threads += 1
            self.spawn()

    def claim(self, limit: int, now: float | None = None) -> list[ClaimedJob]:
        """Claim up to ``limit`` due jobs from the queues, in this turn's order."""
        return self.store.claim(
            limit, self.settings.claim_timeout, queues=self.queues.next_turn(), worker_id=self.worker_id, now=now
        )

    def _loop(self) -> None:
        ran = False
        while True:
            attempt = self._next_attempt(after_job=ran)
            if attempt is None:
                return
            self._runner.execute(attempt, None, pooled=True)
            ran = True

    def _next_attempt(self, *, after_job: bool) -> Attempt | None:
        """The next claimed attempt for this pool thread, marked started; ``None`` once stopping,
        or when the thread is to retire after the job it ran (``after_job``).

        With the buffer empty and no other thread claiming, this thread claims the next batch (and
        waits for work if none is due); with another thread claiming, it waits for that.
        """
        ledger = self._ledger
        while True:
            with self._lock:
                if after_job and self._excess_threads > 0:
                    # A replacement for a stuck thread runs: the pool has one thread too many.
                    self._excess_threads -= 1
                    self._stuck = max(0, self._stuck - 1)
                    return None
                after_job = False
                # Decided under the lock shutdown takes, so each attempt is either started here or
                # given back by shutdown, never both.
                if ledger.stopping.is_set():
                    return None
                while ledger.buffer:
                    attempt = ledger.buffer.popleft()
                    if not attempt.abandoned:  # its lease was lost while it waited
                        attempt.started = time.monotonic()
                        return attempt
                if self._claiming:
                    self._room.wait(self.settings.poll_interval)
                    continue
                limit = min(self.settings.batch_size, ledger.free_slots())
                if limit <= 0:  # every slot is held by a running attempt (stuck threads)
                    self._room.wait(self.settings.poll_interval)
                    continue
                self._claiming = True
                self._claims += 1
                ledger.reserved += limit
            self._claim_into_buffer(limit)

    def _claim_into_buffer(self, limit: int) -> None:
        """Claim up to ``limit`` jobs into the buffer; with none due and none buffered, wait for work.

        Called by the one pool thread whose turn it is (``_claiming`` set), which has reserved
        ``limit`` slots; ends that turn (before the wait, where waits are shared) and gives the
        slots back.
        """
        settings = self.settings
        ledger = self._ledger
        claimed: list[ClaimedJob] = []
        turn = True
        try:
            claimed = self.claim(limit)
            if not claimed:
                with self._lock:
                    if not ledger.attempts:
                        ledger.idle.set()
                    nothing_buffered = not ledger.buffer
                    if nothing_buffered and self.store.concurrent_waits:
                        # Another idle thread may wait too, for slots this one has not reserved:
                        # each job that comes wakes one waiter.
                        self._claiming = turn = False
                        self._room.notify()
                if nothing_buffered and not ledger.stopping.is_set():
                    # Claim what wakes us at once (with the wake-up itself where the store can):
                    # the ``limit`` slots reserved are still free.
                    claimed = self.store.wait_and_claim(
                        settings.poll_interval,
                        limit,
                        settings.claim_timeout,
                        queues=self.queues.next_turn(),
                        worker_id=self.worker_id,
                    )
            self._claim_backoff = 0.0
            ledger.health.answered()
        except StoreError as exc:
            self._claim_backoff = min(max(self._claim_backoff * 2, settings.poll_interval), MAX_ERROR_BACKOFF)
            ledger.health.failed(exc, "claiming jobs")
            ledger.stopping.wait(self._claim_backoff)
        except Exception:
            logger.exception("unexpected error while claiming jobs; carrying on")
            ledger.stopping.wait(settings.poll_interval)
        finally:
            late: list[Attempt] = []
            with self._lock:
                if turn:
                    self._claiming = False
                ledger.reserved -= limit
                for job in claimed:
                    attempt = Attempt(job)
                    if ledger.stopping.is_set():
                        late.append(attempt)
                        continue
                    ledger.attempts[job.job.id] = attempt
                    ledger.buffer.append(attempt)
                if claimed:
                    ledger.idle.clear()
                # This thread runs one of the jobs: wake a waiting thread for each of the others, and
                # one to take the next turn (to claim, or to wait for work while this one is busy).
                self._room.notify(max(1, len(claimed)))
                if not late:
                    self._claim_turn_over()
            if late:
                # Claimed while the worker shut down: they can no longer start here. The turn is
                # over once they are back (shutdown waits for it).
                self._results.release(late)
                with self._lock:
                    self._claim_turn_over()

    def _claim_turn_over(self) -> None:
        """Count a claim turn as ended; the last one tells a shutdown waiting for it. Call with the lock held."""
        self._claims -= 1
        if not self._claims and self._ledger.stopping.is_set():
            self._room.notify_all()

    def wait_for_claims(self, deadline: float) -> bool:
        """Wait until no pool thread is in a claim turn (the worker is stopping), until
        ``deadline`` (``time.monotonic``), or until told to hurry; ``False`` if one still was then.

        A thread waiting for work comes back once the stop wakes it, with whatever its wake-up
        claimed, which it gives back itself: until then the store is still in use (closing it
        would cut the call off, and on Redis leave the jobs that claim took held until their lease
        ran out), and a process that exits would lose those jobs' reply the same way.
        """
        with self._lock:
            while self._claims and not self._ledger.hurry:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._room.wait(remaining)
            return True
