"""The worker: a pool of threads that claim jobs and run them, and a thread that looks after leases.

A pool thread with nothing to do takes the next job from this process's buffer of claimed jobs;
when the buffer is empty it claims the next batch itself (``BATCH_SIZE`` at most, never more than
the process has room for), and when nothing is due it blocks in the store's wake-up wait. One thread
at a time claims or waits; the others wait for it. So an idle worker starts a new job in the very
thread that heard of it, and a busy one pays one store round trip per batch, with no hand-off
between threads on the way. On stores that batch completions (Redis), a finished thread adds its
result to an outbox; whichever thread finds no write under way writes everything waiting in one
round trip, while the others carry on.

The maintenance thread renews the leases of held attempts, fails attempts that pass their timeout,
and runs recovery and expiry every ``RECOVERY_INTERVAL``.

The pool is daemon threads rather than a ``ThreadPoolExecutor``: an executor's threads are joined
without a time limit when the interpreter exits, so one stuck handler would hang shutdown forever,
and a timed-out thread could never be replaced. Here shutdown waits at most ``SHUTDOWN_TIMEOUT``,
and a thread stuck past its timeout is replaced by a fresh one.

Tests and scripts drive the same code without threads: :meth:`Worker.run_once` claims a batch and runs
it in the calling thread.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from werkzeug.datastructures import Headers, MultiDict

from ..config import Settings
from ..errors import JobCanceled, JobFailure, StoreError
from ..handlers import HandlerSpec, JobContext
from ..jobs import ClaimedJob, Job, JobError
from ..signals import job_finished, job_started
from ..stores import LeaseState, Store

logger = logging.getLogger("flask_asyncendpoints")

#: Progress is written to the store at most this often per attempt (seconds).
PROGRESS_INTERVAL = 0.2

#: Longest back-off after repeated store errors (seconds).
MAX_ERROR_BACKOFF = 30.0

#: Results the completer writes in one round trip at most.
COMPLETION_BATCH = 100

#: Results as stored: compact, and refusing NaN and infinities (not JSON). Made once: json.dumps with
#: options builds a new encoder on every call.
_RESULT_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))

HANDLER_NOT_FOUND = "HANDLERNOTFOUND"
RESULT_NOT_SERIALIZABLE = "RESULTNOTSERIALIZABLE"
INVALID_REQUEST = "INVALIDREQUEST"
TIMEOUT = "TIMEOUT"


def _send(signal: Any, sender: Flask, **kwargs: Any) -> None:
    if not signal.receivers:
        return
    try:
        signal.send(sender, **kwargs)
    except Exception:
        logger.exception("a receiver of %s failed", signal.name)


def retry_delay(retry_count: int, settings: Settings, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry number ``retry_count`` (1 for the first retry) is due.

    ``min(RETRY_DELAY_BASE * 2 ** retry_count, RETRY_MAX_DELAY)``; with ``RETRY_JITTER`` a random
    point in the upper half of that ("equal jitter"), so retries of many failed jobs spread out.
    """
    try:
        delay = min(settings.retry_delay_base * 2.0**retry_count, settings.retry_max_delay)
    except OverflowError:
        delay = settings.retry_max_delay
    if settings.retry_jitter:
        delay = delay / 2 + rand() * delay / 2
    return delay


#: Workers started in this process, for :func:`shutdown_all` (weak: a dropped worker is not kept alive).
_started_workers: weakref.WeakSet[Worker] = weakref.WeakSet()


def shutdown_all(timeout: float | None = None, *, cap: bool = False) -> None:
    """Shut down every worker started in this process (from a server's exit hook).

    :param timeout: seconds each worker waits for running jobs (default: its ``SHUTDOWN_TIMEOUT``).
    :param cap: use ``timeout`` only where it is shorter than the worker's ``SHUTDOWN_TIMEOUT``.
    """
    for worker in list(_started_workers):
        if worker.pid == os.getpid():
            wait = timeout
            if cap and timeout is not None:
                wait = min(timeout, worker.settings.shutdown_timeout)
            worker.shutdown(wait)


@dataclass(eq=False)
class _Attempt:
    """One claimed job in this process, from claim to the store's last word on it."""

    claimed: ClaimedJob
    cancelled: threading.Event = field(default_factory=threading.Event)
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


class Worker:
    """Runs the jobs of one app in this process.

    :param app: the Flask app; handlers run inside its app context.
    :param settings: the app's extension settings.
    :param store: the app's job store.
    :param find_handler: returns the handler registered under a job name, or ``None``.
    """

    def __init__(
        self,
        app: Flask,
        settings: Settings,
        store: Store,
        find_handler: Callable[[str], HandlerSpec | None],
    ) -> None:
        self.app = app
        self.settings = settings
        self.store = store
        self.find_handler = find_handler
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._attempts: dict[str, _Attempt] = {}
        #: Claimed attempts not started yet, oldest first.
        self._buffer: deque[_Attempt] = deque()
        #: Set while a pool thread claims or waits for work; the others wait for it.
        self._claiming = False
        #: Slots the claim under way may fill.
        self._reserved = 0
        self._claim_backoff = 0.0
        self._threads: list[threading.Thread] = []
        self._maintainer: threading.Thread | None = None
        self._stopping = threading.Event()
        #: Pool threads to retire when they next finish a job (after replacements for stuck threads).
        self._excess_threads = 0
        self._stuck = 0
        self.pid = os.getpid()
        #: ``time.time()`` of the maintenance thread's last round: a health check reads it.
        self.heartbeat = 0.0
        #: Set while no job is due and none is held here (for ``--burst``).
        self._idle = threading.Event()
        self._watching_idle = False
        #: Attempts this worker has run.
        self.executed = 0
        #: Results waiting to be written together (stores that batch completions, threaded mode).
        self._outbox: list[tuple[_Attempt, str]] = []
        self._writing = False
        #: Never set: a writer waits on it to back off after a store error.
        self._write_pause = threading.Event()

    # -- capacity ---------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Jobs this process holds at most, waiting or running: one per thread plus a small
        claimed-ahead buffer. Jobs whose handler is done and whose outcome is being written do not
        count: they hold no thread, and a batch of results on its way to the store must not keep
        the next claim waiting."""
        return self.settings.max_concurrency + min(self.settings.batch_size, self.settings.max_queue_size)

    def _free_slots(self) -> int:
        held = sum(1 for a in self._attempts.values() if not (a.abandoned or a.finishing))
        return self.capacity - held - self._reserved

    def _done_running(self, attempt: _Attempt) -> None:
        """The attempt's handler has returned or raised: its slot is free for the next claim."""
        with self._lock:
            attempt.finishing = True

    @property
    def started(self) -> bool:
        """``True`` once :meth:`start` was called (even if shut down since)."""
        return self._maintainer is not None

    @property
    def running(self) -> bool:
        """``True`` between :meth:`start` and :meth:`shutdown`."""
        return self._maintainer is not None and not self._stopping.is_set()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the pool threads and the maintenance thread (daemon threads)."""
        with self._lock:
            if self._maintainer is not None:
                return
            for _ in range(self.settings.max_concurrency):
                self._spawn_pool_thread()
            self._maintainer = threading.Thread(
                target=self._maintenance_loop, name="asyncendpoints-maintenance", daemon=True
            )
            self._maintainer.start()
            _started_workers.add(self)
        logger.info("worker %s started: %d threads on %s", self.worker_id, self.settings.max_concurrency, self.store)

    def wait_until_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is due and none is running here; ``False`` if ``timeout`` ran out first.

        Jobs scheduled for later (a retry's back-off) are not waited for.
        """
        self._watching_idle = True
        return self._idle.wait(timeout)

    def _spawn_pool_thread(self) -> None:
        thread = threading.Thread(
            target=self._pool_loop, name=f"asyncendpoints-worker-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish, give back every job not finished.

        Jobs claimed ahead but not started are given back at once; running jobs keep their leases
        renewed while they finish.

        :param timeout: seconds to wait for running jobs (default ``SHUTDOWN_TIMEOUT``). Jobs still
            running then are released too; their late results are discarded.
        """
        with self._room:
            if self._stopping.is_set():
                return
            self._stopping.set()
            self._room.notify_all()  # idle pool threads leave
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            self.store.wake()  # the thread waiting for work, if any
        except StoreError:
            # It notices the stop within a poll interval anyway; the release below must still be tried.
            logger.warning("could not wake the worker's waiting thread at shutdown", exc_info=True)
        maintainer = self._maintainer
        if maintainer is not None and maintainer is not threading.current_thread():
            maintainer.join(timeout)
        # Claimed-ahead jobs can no longer start (pool threads check the stop flag under this lock),
        # so they go back now: another process starts them at once, not after the running jobs end.
        # A claim still under way gives back its jobs itself.
        with self._lock:
            waiting = list(self._buffer)
            self._buffer.clear()
            for attempt in waiting:
                if self._attempts.get(attempt.job.id) is attempt:
                    del self._attempts[attempt.job.id]
        released = self._release(waiting)
        # The maintenance thread has stopped: renew leases here while running jobs finish,
        # or a job running past its lease would be recovered and run again elsewhere meanwhile.
        renew_every = min(self.settings.claim_timeout / 3, self.settings.poll_interval)
        renew_failed = False
        while True:
            with self._room:
                if not any(a.started is not None and not a.abandoned for a in self._attempts.values()):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._room.wait(min(remaining, renew_every))
            try:
                self.renew_leases()
            except StoreError:
                if not renew_failed:
                    logger.warning("could not renew leases at shutdown; still trying", exc_info=True)
                renew_failed = True
        with self._room:
            leftovers = list(self._attempts.values())
            self._attempts.clear()
        released += self._release(leftovers)
        logger.info("worker %s stopped; %d unfinished job(s) released", self.worker_id, released)

    def _release(self, attempts: list[_Attempt]) -> int:
        """Give back the jobs of attempts that will not finish here; how many the store took back."""
        released = 0
        for attempt in attempts:
            if attempt.abandoned:
                attempt.cancelled.set()
                continue
            # As for a timeout: abandoned and released before its handler hears of it.
            attempt.abandoned = True
            try:
                if self.store.release(attempt.job.id, attempt.claimed.token):
                    released += 1
            except StoreError:
                logger.warning(
                    "could not release job %s at shutdown; it is recovered when its lease expires",
                    attempt.job.id,
                    exc_info=True,
                )
            finally:
                attempt.cancelled.set()
        return released

    # -- maintenance ------------------------------------------------------------------------------

    def _maintenance_loop(self) -> None:
        settings = self.settings
        renew_every = min(settings.claim_timeout / 3, settings.poll_interval)
        next_renew = next_recovery = time.monotonic()
        backoff = 0.0
        while not self._stopping.is_set():
            self.heartbeat = time.time()
            try:
                now = time.monotonic()
                if now >= next_renew:
                    self.renew_leases()
                    self.check_timeouts()
                    next_renew = now + renew_every
                if now >= next_recovery:
                    self.recover_once()
                    next_recovery = now + settings.recovery_interval
                backoff = 0.0
                self._stopping.wait(max(0.0, min(next_renew, next_recovery) - time.monotonic()))
            except StoreError:
                backoff = min(max(backoff * 2, settings.poll_interval), MAX_ERROR_BACKOFF)
                logger.warning("job store unavailable; retrying in %.1f s", backoff, exc_info=True)
                self._stopping.wait(backoff)
            except Exception:
                logger.exception("unexpected error in the worker's maintenance thread; it carries on")
                self._stopping.wait(settings.poll_interval)

    def renew_leases(self, now: float | None = None) -> None:
        """Renew the leases of every attempt held here; pass cancel requests on to their handlers."""
        with self._lock:
            attempts = [a for a in self._attempts.values() if not a.abandoned]
        if not attempts:
            return
        leases = [(a.job.id, a.claimed.token) for a in attempts]
        states = self.store.renew(leases, self.settings.claim_timeout, now=now)
        for attempt in attempts:
            state = states.get(attempt.job.id, LeaseState.LOST)
            if state is LeaseState.CANCEL_REQUESTED:
                attempt.cancelled.set()
            elif state is LeaseState.LOST:
                with self._lock:
                    if attempt.finishing or self._attempts.get(attempt.job.id) is not attempt:
                        # It finished while the renew was under way: its own outcome was stored.
                        continue
                logger.warning("lost the lease on job %s; its result will be discarded", attempt.job.id)
                attempt.cancelled.set()
                self._forget(attempt, abandon=True)

    def check_timeouts(self, now: float | None = None) -> None:
        """Fail every attempt running past its timeout and stop counting its thread.

        :param now: a ``time.monotonic()`` reading (tests pass one).
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            late = [
                a
                for a in self._attempts.values()
                if a.started is not None and not a.abandoned and now - a.started > self._timeout_of(a.job)
            ]
        for attempt in late:
            timeout = self._timeout_of(attempt.job)
            logger.error(
                "job %s (%s) ran past its %.0f s timeout; failing the attempt (its thread cannot be stopped)",
                attempt.job.id,
                attempt.job.name,
                timeout,
            )
            # Abandoned and failed before the handler is told: a handler that stops at once (raising
            # JobCanceled) must not get to record the attempt as canceled first.
            self._forget(attempt, abandon=True)
            error = JobError(code=TIMEOUT, message=f"The job ran longer than its timeout of {timeout:g} seconds.")
            try:
                self._fail(attempt, error, retry=True)
            finally:
                attempt.cancelled.set()
            with self._lock:
                # The stuck thread keeps running its handler; give the pool a fresh one in its place,
                # up to as many replacements as the pool has threads.
                if self.running and self._stuck < self.settings.max_concurrency:
                    self._stuck += 1
                    self._excess_threads += 1
                    self._spawn_pool_thread()

    def _timeout_of(self, job: Job) -> float:
        spec = self.find_handler(job.name)
        if spec is not None and spec.timeout is not None:
            return spec.timeout
        return self.settings.job_timeout if self.settings.job_timeout is not None else math.inf

    def recover_once(self, now: float | None = None) -> list[Job]:
        """Recover jobs whose lease expired anywhere (unless recovery is off) and purge expired finished jobs."""
        if not self.settings.recovery_enabled:
            self.store.purge(now=now)
            return []
        recovered = self.store.recover(result_ttl=self.settings.result_ttl, now=now)
        for job in recovered:
            logger.warning("recovered job %s (%s) after its lease expired: now %s", job.id, job.name, job.status.value)
        self.store.purge(now=now)
        return recovered

    # -- the pool ---------------------------------------------------------------------------------

    def _pool_loop(self) -> None:
        while True:
            attempt = self._next_attempt()
            if attempt is None:
                return
            self._execute(attempt, None, pooled=True)
            with self._lock:
                if self._excess_threads > 0:
                    self._excess_threads -= 1
                    self._stuck = max(0, self._stuck - 1)
                    return

    def _next_attempt(self) -> _Attempt | None:
        """The next claimed attempt for this pool thread, marked started; ``None`` once stopping.

        With the buffer empty and no other thread claiming, this thread claims the next batch (and
        waits for work if none is due); with another thread claiming, it waits for that.
        """
        while True:
            with self._room:
                # Decided under the lock shutdown() takes, so each attempt is either started here or
                # given back by shutdown(), never both.
                if self._stopping.is_set():
                    return None
                while self._buffer:
                    attempt = self._buffer.popleft()
                    if not attempt.abandoned:  # its lease was lost while it waited
                        attempt.started = time.monotonic()
                        return attempt
                if self._claiming:
                    self._room.wait(self.settings.poll_interval)
                    continue
                limit = min(self.settings.batch_size, self._free_slots())
                if limit <= 0:  # every slot is held by a running attempt (stuck threads)
                    self._room.wait(self.settings.poll_interval)
                    continue
                self._claiming = True
                self._reserved = limit
            self._claim_into_buffer(limit)

    def _claim_into_buffer(self, limit: int) -> None:
        """Claim up to ``limit`` jobs into the buffer; with none due and none buffered, wait for work.

        Called by the one pool thread whose turn it is (``_claiming`` set); ends that turn.
        """
        settings = self.settings
        claimed: list[ClaimedJob] = []
        try:
            claimed = self.store.claim(limit, settings.claim_timeout)
            if not claimed:
                with self._lock:
                    if not self._attempts:
                        self._idle.set()
                    nothing_buffered = not self._buffer
                if nothing_buffered and not self._stopping.is_set():
                    self.store.wait_for_work(settings.poll_interval)
                    if not self._stopping.is_set():
                        # Claim what woke us at once, still in this turn: nothing else claims
                        # meanwhile, so ``limit`` slots are still free.
                        claimed = self.store.claim(limit, settings.claim_timeout)
            self._claim_backoff = 0.0
        except StoreError:
            self._claim_backoff = min(max(self._claim_backoff * 2, settings.poll_interval), MAX_ERROR_BACKOFF)
            logger.warning("job store unavailable; retrying in %.1f s", self._claim_backoff, exc_info=True)
            self._stopping.wait(self._claim_backoff)
        except Exception:
            logger.exception("unexpected error while claiming jobs; carrying on")
            self._stopping.wait(settings.poll_interval)
        finally:
            late: list[_Attempt] = []
            with self._room:
                self._claiming = False
                self._reserved = 0
                for job in claimed:
                    attempt = _Attempt(job)
                    if self._stopping.is_set():
                        late.append(attempt)
                        continue
                    self._attempts[job.job.id] = attempt
                    self._buffer.append(attempt)
                if claimed:
                    self._idle.clear()
                # This thread runs one of the jobs: wake a waiting thread for each of the others, and
                # one to take the next turn (to claim, or to wait for work while this one is busy).
                self._room.notify(max(1, len(claimed)))
            if late:
                # Claimed while the worker shut down: they can no longer start here.
                self._release(late)

    def _forget(self, attempt: _Attempt, *, abandon: bool = False) -> None:
        with self._room:
            if abandon:
                attempt.abandoned = True
            if self._attempts.get(attempt.job.id) is attempt:
                del self._attempts[attempt.job.id]
            if self._stopping.is_set():
                self._room.notify_all()  # shutdown waits for running attempts to end
            ran_empty = self._watching_idle and not self._attempts
        if ran_empty:
            # Someone waits for idleness: let the thread waiting for work look again now rather than
            # at the end of its poll interval.
            try:
                self.store.wake()
            except StoreError:
                logger.debug("could not wake the worker's waiting thread", exc_info=True)

    # -- running one job --------------------------------------------------------------------------

    def run_once(self, now: float | None = None) -> int:
        """Claim one batch and run it in the calling thread; the number of jobs run.

        For tests, scripts and ``--burst`` workers. Timeouts are not enforced here.
        """
        claimed = self.store.claim(self.settings.batch_size, self.settings.claim_timeout, now=now)
        for job in claimed:
            attempt = _Attempt(job)
            with self._lock:
                self._attempts[job.job.id] = attempt
            self.execute(attempt, now=now)
        return len(claimed)

    def execute(self, attempt: _Attempt, now: float | None = None) -> Job | None:
        """Run one claimed job and record its outcome. Never raises.

        :returns: the job as the store has it afterwards, or ``None`` if the attempt's result was discarded.
        """
        return self._execute(attempt, now, pooled=False)

    def _execute(self, attempt: _Attempt, now: float | None, *, pooled: bool) -> Job | None:
        """:meth:`execute`; ``pooled`` (a pool thread) lets a store that batches completions write
        the result with others (see :meth:`_post_result`), and then returns ``None``."""
        if attempt.started is None:
            attempt.started = time.monotonic()
        job = attempt.job
        number = job.retry_count + 1
        self.executed += 1
        logger.debug("job %s (%s) attempt %d started", job.id, job.name, number)
        outcome: Job | None = None
        try:
            _send(job_started, self.app, job=job, job_id=job.id)
            ran = self._run(attempt, now)
            if isinstance(ran, str):
                if attempt.abandoned:
                    # Timed out or given back at shutdown: the job is settled, the late result is not.
                    logger.warning("job %s (%s): late result discarded", job.id, job.name)
                elif pooled and self.store.batches_completions:
                    # Written with others in one round trip. The attempt stays held (and renewed)
                    # until then; shutdown waits for it like for a running one.
                    self._post_result(attempt, ran)
                    return None
                else:
                    outcome = self._write_results([(attempt, ran)], now)[0]
            else:
                outcome = ran
        except BaseException:
            logger.exception("job %s (%s): could not record its outcome", job.id, job.name)
        self._finish(attempt, outcome)
        return outcome

    def _finish(self, attempt: _Attempt, outcome: Job | None) -> None:
        """Let go of an attempt whose outcome is written (or discarded): log it and tell receivers."""
        self._forget(attempt)
        job = attempt.job
        logger.info(
            "job %s (%s) attempt %d finished: %s in %.3f s",
            job.id,
            job.name,
            job.retry_count + 1,
            outcome.status.value if outcome is not None else "discarded",
            time.monotonic() - (attempt.started or 0.0),
        )
        _send(job_finished, self.app, job=outcome, job_id=job.id)

    def _write_results(self, results: list[tuple[_Attempt, str]], now: float | None = None) -> list[Job | None]:
        """Store successful attempts' results; for each, the completed job or ``None`` (lease lost)."""
        outcomes = self.store.complete_many(
            [(a.claimed, r) for a, r in results], result_ttl=self.settings.result_ttl, now=now
        )
        for (attempt, _), outcome in zip(results, outcomes, strict=True):
            if outcome is None:
                logger.warning(
                    "job %s (%s): result discarded, this attempt no longer holds the job",
                    attempt.job.id,
                    attempt.job.name,
                )
        return outcomes

    def _post_result(self, attempt: _Attempt, result_json: str) -> None:
        """Add a result to the outbox; unless another thread is writing already, write everything in
        it, as many at a time as are waiting (up to 100), until it is empty."""
        with self._lock:
            self._outbox.append((attempt, result_json))
            if self._writing:
                return  # the writer takes it with the next batch
            self._writing = True
        backoff = 0.0
        while True:
            with self._lock:
                batch = self._outbox[:COMPLETION_BATCH]
                del self._outbox[:COMPLETION_BATCH]
                if not batch:
                    self._writing = False
                    return
            while batch:
                # An attempt abandoned meanwhile (timed out, released at shutdown) is settled already:
                # its late result is dropped, as in execute().
                for waiting, _ in batch:
                    if waiting.abandoned:
                        logger.warning("job %s (%s): late result discarded", waiting.job.id, waiting.job.name)
                        self._finish(waiting, None)
                batch = [(a, r) for a, r in batch if not a.abandoned]
                if not batch:
                    break
                try:
                    outcomes = self._write_results(batch)
                except StoreError:
                    backoff = min(max(backoff * 2, 0.05), MAX_ERROR_BACKOFF)
                    logger.warning(
                        "could not write %d result(s); retrying in %.1f s", len(batch), backoff, exc_info=True
                    )
                    self._write_pause.wait(backoff)
                    continue
                except Exception:
                    logger.exception("could not write %d result(s); they are discarded", len(batch))
                    outcomes = [None] * len(batch)
                backoff = 0.0
                for (written, _), outcome in zip(batch, outcomes, strict=True):
                    self._finish(written, outcome)
                batch = []

    def _run(self, attempt: _Attempt, now: float | None) -> Job | str | None:
        """Run the handler; the stored outcome, or the result JSON still to be written on success."""
        job = attempt.job
        spec = self.find_handler(job.name)
        if spec is None:
            self._done_running(attempt)
            message = f"No handler is registered for the job name {job.name!r} in this process."
            return self._fail(attempt, JobError(code=HANDLER_NOT_FOUND, message=message), retry=True, now=now)
        try:
            ctx = self._context(attempt, spec, now)
            try:
                with self.app.app_context():
                    value = spec.func(ctx)
            finally:
                self._done_running(attempt)
            result_json = self._serialize(spec, value)
        except JobCanceled:
            if attempt.abandoned:
                # It stopped because it timed out or was released at shutdown; that outcome is stored.
                return None
            return self._finish_canceled(attempt, now)
        except JobFailure as exc:
            if attempt.cancelled.is_set() and not attempt.abandoned:
                return self._finish_canceled(attempt, now)
            return self._fail(attempt, JobError.from_exception(exc), retry=exc.retry, now=now)
        except BaseException as exc:  # the worker must survive SystemExit, KeyboardInterrupt and all
            if attempt.cancelled.is_set() and not attempt.abandoned:
                return self._finish_canceled(attempt, now)
            logger.info("job %s (%s) attempt %d failed: %r", job.id, job.name, job.retry_count + 1, exc)
            return self._fail(attempt, JobError.from_exception(exc), retry=True, now=now)
        if attempt.cancelled.is_set() and not attempt.abandoned:
            return self._finish_canceled(attempt, now)
        self._flush_progress(attempt, now)
        return result_json

    def _context(self, attempt: _Attempt, spec: HandlerSpec, now: float | None) -> JobContext:
        job = attempt.job
        payload = job.payload
        body = payload.body
        if spec.request_schema is not None:
            try:
                body = spec.request_schema.load(body)
            except Exception as exc:
                raise JobFailure(
                    f"The stored request no longer passes the handler's request schema: {exc}",
                    code=INVALID_REQUEST,
                    retry=False,
                ) from exc
        query = payload.query_params
        return JobContext(
            request=body,
            # Built only from what is there: most jobs submitted from Python have neither.
            headers=Headers(payload.headers) if payload.headers else Headers(),
            route_params=dict(payload.route_params),
            query_params=MultiDict([(k, v) for k, values in query.items() for v in values]) if query else MultiDict(),
            job_id=job.id,
            attempt=job.retry_count + 1,
            name=job.name,
            cancelled=attempt.cancelled,
            _on_progress=lambda fraction, message: self._progress(attempt, fraction, message, now),
        )

    @staticmethod
    def _serialize(spec: HandlerSpec, value: Any) -> str:
        try:
            if spec.response_schema is not None:
                value = spec.response_schema.dump(value)
            return _RESULT_ENCODER.encode(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise JobFailure(
                f"The handler's result is not JSON-serializable ({exc}); return dicts, lists, strings, "
                "numbers, booleans or None, or give the handler a response schema.",
                code=RESULT_NOT_SERIALIZABLE,
            ) from exc

    def _fail(self, attempt: _Attempt, error: JobError, *, retry: bool, now: float | None = None) -> Job | None:
        job = attempt.job
        delay = retry_delay(job.retry_count + 1, self.settings) if retry else None
        failed = self.store.fail(
            job.id, attempt.claimed.token, error, retry_delay=delay, result_ttl=self.settings.result_ttl, now=now
        )
        if failed is None:
            logger.warning("job %s (%s): failure discarded, this attempt no longer holds the job", job.id, job.name)
        elif failed.status.is_final:
            logger.error("job %s (%s) failed for good: %s: %s", job.id, job.name, error.code, error.message)
        return failed

    def _finish_canceled(self, attempt: _Attempt, now: float | None) -> Job | None:
        return self.store.finish_canceled(
            attempt.job.id, attempt.claimed.token, result_ttl=self.settings.result_ttl, now=now
        )

    def _progress(self, attempt: _Attempt, fraction: float, message: str | None, now: float | None) -> None:
        attempt.pending_progress = (fraction, message)
        tick = time.monotonic()
        if tick - attempt.last_progress_write >= PROGRESS_INTERVAL or fraction >= 1.0:
            self._flush_progress(attempt, now)

    def _flush_progress(self, attempt: _Attempt, now: float | None) -> None:
        pending, attempt.pending_progress = attempt.pending_progress, None
        if pending is None:
            return
        attempt.last_progress_write = time.monotonic()
        try:
            self.store.set_progress(attempt.job.id, attempt.claimed.token, pending[0], pending[1], now=now)
        except StoreError:
            logger.warning("could not record progress of job %s", attempt.job.id, exc_info=True)
