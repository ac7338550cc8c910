"""The maintenance thread: leases, timeouts, recovery and expiry, recurring jobs, the worker's heartbeat.

It renews the leases of held attempts (passing cancel requests on to their handlers), writes their
execution logs, fails attempts that pass their timeout and has the pool replace their stuck threads,
runs recovery and expiry every ``RECOVERY_INTERVAL``, enqueues recurring jobs as they fall due, and
renews this worker's entry in the store's worker registry every ``WORKER_HEARTBEAT``.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable

from flask import Flask

from ..config import Settings
from ..errors import StoreError
from ..events import JobEvent, emit
from ..handlers import HandlerSpec
from ..jobs import Job, JobError, JobStatus, from_timestamp
from ..stores import LeaseState, Store, WorkerInfo
from .ledger import MAX_ERROR_BACKOFF, Ledger, logger
from .logcapture import FLUSH_INTERVAL, LogCapture
from .pool import Pool
from .run import Runner
from .scheduler import Scheduler

TIMEOUT = "TIMEOUT"


class Maintenance:
    """Looks after the attempts held in this process while they run, and after the store's expired jobs.

    :param settings: the app's extension settings.
    :param store: the app's job store.
    :param find_handler: returns the handler registered under a job name, or ``None`` (for its timeout).
    :param ledger: the attempts held in this process.
    :param runner: fails attempts that time out.
    :param pool: replaces the threads of attempts that time out.
    :param app: the Flask app (the sender of ``job_recovered`` and the events after it).
    :param scheduler: enqueues recurring jobs.
    :param capture: writes running attempts' execution logs (``None``: off).
    :param info: this worker's entry in the store's worker registry.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        find_handler: Callable[[str], HandlerSpec | None],
        ledger: Ledger,
        runner: Runner,
        pool: Pool,
        *,
        app: Flask,
        scheduler: Scheduler,
        capture: LogCapture | None,
        info: WorkerInfo,
    ) -> None:
        self.settings = settings
        self.store = store
        self.find_handler = find_handler
        self.app = app
        self.scheduler = scheduler
        self.capture = capture
        self.info = info
        self._ledger = ledger
        self._runner = runner
        self._pool = pool
        self._lock = ledger.lock
        self.thread: threading.Thread | None = None
        #: ``time.time()`` of the maintenance thread's last round: a health check reads it.
        self.heartbeat = 0.0
        #: Set once this worker is in the store's worker registry (it leaves it at shutdown).
        self.registered = False
        #: Set when the worker leaves the registry at shutdown: a beat still under way must not put it back.
        self.unregistered = False

    @property
    def running(self) -> bool:
        """``True`` between the thread's start and the worker's shutdown."""
        return self.thread is not None and not self._ledger.stopping.is_set()

    def start(self) -> None:
        """Start the maintenance thread (a daemon thread)."""
        self.thread = threading.Thread(target=self._loop, name="asyncendpoints-maintenance", daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the thread to end (the worker is stopping)."""
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        settings = self.settings
        stopping = self._ledger.stopping
        renew_every = min(settings.claim_timeout / 3, settings.poll_interval)
        next_renew = next_recovery = next_beat = next_flush = time.monotonic()
        backoff = 0.0
        while not stopping.is_set():
            self.heartbeat = time.time()
            # What the round is at, for the outage warning.
            doing = "renewing leases"
            try:
                now = time.monotonic()
                if now >= next_renew:
                    self.renew_leases()
                    self.check_timeouts()
                    next_renew = now + renew_every
                if self.capture is not None and now >= next_flush:
                    self.capture.flush_running(force=True)
                    next_flush = now + FLUSH_INTERVAL
                if now >= next_beat:
                    doing = "renewing the worker's registry entry"
                    self.beat()
                    next_beat = now + settings.worker_heartbeat
                if now >= next_recovery:
                    doing = "recovering jobs"
                    self.recover_once()
                    next_recovery = now + settings.recovery_interval
                wake_at = min(next_renew, next_recovery, next_beat)
                if self.capture is not None:
                    wake_at = min(wake_at, next_flush)
                due = self.scheduler.next_due()
                if due is not None and due <= time.time():
                    doing = "enqueuing recurring jobs"
                    self.scheduler.run_due()
                    due = self.scheduler.next_due()
                if due is not None:
                    wake_at = min(wake_at, time.monotonic() + max(0.0, due - time.time()))
                backoff = 0.0
                stopping.wait(max(0.0, wake_at - time.monotonic()))
            except StoreError as exc:
                backoff = min(max(backoff * 2, settings.poll_interval), MAX_ERROR_BACKOFF)
                self._ledger.health.failed(exc, doing)
                stopping.wait(backoff)
            except Exception:
                logger.exception("unexpected error in the worker's maintenance thread; it carries on")
                stopping.wait(settings.poll_interval)

    def renew_leases(self, now: float | None = None) -> None:
        """Renew the leases of every attempt held here; pass cancel requests on to their handlers."""
        ledger = self._ledger
        with self._lock:
            attempts = [a for a in ledger.attempts.values() if not a.abandoned]
        if not attempts:
            return
        leases = [(a.job.id, a.claimed.token) for a in attempts]
        states = self.store.renew(leases, self.settings.claim_timeout, now=now)
        ledger.health.answered()
        for attempt in attempts:
            state = states.get(attempt.job.id, LeaseState.LOST)
            if state is LeaseState.CANCEL_REQUESTED:
                attempt.cancelled.set()
            elif state is LeaseState.LOST:
                with self._lock:
                    if attempt.finishing or ledger.attempts.get(attempt.job.id) is not attempt:
                        # It finished while the renew was under way: its own outcome was stored.
                        continue
                logger.warning("lost the lease on job %s; its result will be discarded", attempt.job.id)
                attempt.cancelled.set()
                ledger.forget(attempt, abandon=True)

    def check_timeouts(self, now: float | None = None) -> None:
        """Fail every attempt running past its timeout and stop counting its thread.

        :param now: a ``time.monotonic()`` reading (tests pass one).
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            late = [
                a
                for a in self._ledger.attempts.values()
                if a.started is not None and not a.abandoned and now - a.started > self._timeout_of(a.job)
            ]
        for attempt in late:
            timeout = self._timeout_of(attempt.job)
            logger.error(
                "job %s (%s) ran past its %g s timeout; failing the attempt (its thread cannot be stopped)",
                attempt.job.id,
                attempt.job.name,
                timeout,
            )
            # Abandoned and failed before the handler is told: a handler that stops at once (raising
            # JobCanceled) must not get to record the attempt as canceled first.
            self._ledger.forget(attempt, abandon=True)
            error = JobError(code=TIMEOUT, message=f"The job ran longer than its timeout of {timeout:g} seconds.")
            try:
                self._runner.fail(attempt, error, retry=True)
            finally:
                attempt.cancelled.set()
            with self._lock:
                # The stuck thread keeps running its handler; the pool gets a fresh one in its place.
                if self.running:
                    self._pool.replace_stuck()

    def _timeout_of(self, job: Job) -> float:
        spec = self.find_handler(job.name)
        if spec is not None and spec.timeout is not None:
            return spec.timeout
        return self.settings.job_timeout if self.settings.job_timeout is not None else math.inf

    def recover_once(self, now: float | None = None) -> list[Job]:
        """Recover jobs whose lease expired anywhere (unless recovery is off) and purge expired finished jobs.

        Each recovered job is a ``recovered`` event here, followed by ``failed`` or ``canceled``
        when the recovery ended it.
        """
        if not self.settings.recovery_enabled:
            self.store.purge(now=now)
            return []
        recovered = self.store.recover(result_ttl=self.settings.result_ttl, now=now)
        self._ledger.health.answered()
        for job in recovered:
            # The attempt whose lease ran out: a job queued again has counted it as a retry already.
            attempt = job.retry_count if job.status is JobStatus.QUEUED else job.retry_count + 1
            emit(JobEvent.RECOVERED, self.app, job, attempt=attempt)
            if job.status is JobStatus.FAILED:
                emit(JobEvent.FAILED, self.app, job, attempt=attempt)
            elif job.status is JobStatus.CANCELED:
                emit(JobEvent.CANCELED, self.app, job, attempt=attempt)
        self.store.purge(now=now)
        return recovered

    def beat(self, now: float | None = None) -> None:
        """Register this worker in the store again, with its heartbeat now (it expires after three beats missed)."""
        if self.unregistered:
            return
        stamp = from_timestamp(time.time() if now is None else now)
        assert stamp is not None
        self.info = dataclasses.replace(self.info, heartbeat_at=stamp)
        self.store.register_worker(self.info, ttl=3 * self.settings.worker_heartbeat, now=now)
        self.registered = True
        self._ledger.health.answered()
