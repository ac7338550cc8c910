"""The :class:`Worker`: starts the pool and the maintenance thread, and shuts them down.

It builds the parts (the ledger, the result writer, the runner, the pool, the maintenance thread)
and calls into them; none of them calls back into it.

Tests and scripts drive the same code without threads: :meth:`Worker.run_once` claims a batch and runs
it in the calling thread.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from flask import Flask

from ..config import QueuePlan, Settings
from ..errors import StoreError
from ..handlers import HandlerSpec
from ..jobs import DEFAULT_QUEUE, Job
from ..schedules import Schedule
from ..stores import Store, WorkerInfo
from .ledger import Attempt, Ledger, logger
from .logcapture import LogCapture
from .maintenance import Maintenance
from .pool import Pool
from .queues import QueueOrder
from .results import Results
from .run import Runner
from .scheduler import Scheduler

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


class Worker:
    """Runs the jobs of one app in this process.

    :param app: the Flask app; handlers run inside its app context.
    :param settings: the app's extension settings.
    :param store: the app's job store.
    :param find_handler: returns the handler registered under a job name, or ``None``.
    :param queues: the queues to serve (default: ``ASYNCENDPOINTS_QUEUES``, else ``default`` alone),
        or a function that returns them, asked on each claim turn.
    :param schedules: the recurring jobs this worker enqueues as they fall due, or a function
        that returns them, asked on each look.
    """

    def __init__(
        self,
        app: Flask,
        settings: Settings,
        store: Store,
        find_handler: Callable[[str], HandlerSpec | None],
        *,
        queues: QueuePlan | Callable[[], QueuePlan] | None = None,
        schedules: Sequence[Schedule] | Callable[[], Sequence[Schedule]] = (),
    ) -> None:
        self.app = app
        self.settings = settings
        self.store = store
        self.find_handler = find_handler
        self.host = socket.gethostname()
        self.worker_id = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pid = os.getpid()
        self.queues = QueueOrder(queues or settings.queues or QueuePlan((DEFAULT_QUEUE,)))
        self._unwatch: Callable[[], None] | None = None
        self._ledger = Ledger(settings, store)
        self._capture = LogCapture(settings, store, self._ledger.health) if settings.execution_logs else None
        self._results = Results(app, settings, store, self._ledger)
        self._runner = Runner(app, settings, store, find_handler, self._ledger, self._results, self._capture)
        self._pool = Pool(settings, store, self._ledger, self._runner, self._results, self.queues, self.worker_id)
        now = datetime.now(timezone.utc)
        info = WorkerInfo(
            id=self.worker_id,
            host=self.host,
            pid=self.pid,
            queues=self.queues.names,
            concurrency=settings.max_concurrency,
            started_at=now,
            heartbeat_at=now,
        )
        self._maintenance = Maintenance(
            settings,
            store,
            find_handler,
            self._ledger,
            self._runner,
            self._pool,
            app=app,
            scheduler=Scheduler(app, settings, store, schedules, find_handler, self._ledger.health),
            capture=self._capture,
            info=info,
        )

    @property
    def capacity(self) -> int:
        """Jobs this process holds at most, waiting or running: one per thread plus a small
        claimed-ahead buffer. Jobs whose handler is done and whose outcome is being written do not
        count: they hold no thread, and a batch of results on its way to the store must not keep
        the next claim waiting."""
        return self._ledger.capacity

    @property
    def started(self) -> bool:
        """``True`` once :meth:`start` was called (even if shut down since)."""
        return self._maintenance.thread is not None

    @property
    def running(self) -> bool:
        """``True`` between :meth:`start` and :meth:`shutdown`."""
        return self._maintenance.running

    @property
    def heartbeat(self) -> float:
        """``time.time()`` of the maintenance thread's last round (0 before the first): a health check reads it."""
        return self._maintenance.heartbeat

    @property
    def executed(self) -> int:
        """Attempts this worker has run."""
        return self._runner.executed

    @property
    def running_jobs(self) -> int:
        """Jobs whose handler is running in this process now."""
        with self._ledger.lock:
            return sum(1 for a in self._ledger.attempts.values() if a.started is not None and not a.abandoned)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the pool threads and the maintenance thread (daemon threads).

        First the worker asks the store to announce cancels (so a cancel reaches a running handler
        at once), hooks its log capture in (with execution logs on) and registers itself in the
        store's worker registry; the maintenance thread then renews that entry.
        """
        if self._maintenance.thread is not None:
            return
        started = datetime.now(timezone.utc)
        self._maintenance.info = dataclasses.replace(
            self._maintenance.info, queues=self.queues.names, started_at=started, heartbeat_at=started
        )
        health = self._ledger.health
        try:
            self._maintenance.beat()
        except StoreError as exc:
            # The maintenance thread registers it at its next beat.
            health.failed(exc, "registering the worker")
        # Outside the ledger's lock: a store may announce a cancel while this runs, and the
        # announcement takes that lock.
        unwatch: Callable[[], None] | None = None
        try:
            unwatch = self.store.watch_cancels(self._ledger.cancel_requested)
        except StoreError as exc:
            # Cancels still reach running handlers with each lease renewal, only later.
            health.failed(exc, "watching for cancels")
        else:
            health.answered()
        with self._ledger.lock:
            if self._maintenance.thread is not None:
                if unwatch is not None:
                    unwatch()
                return
            self._unwatch = unwatch
            if self._capture is not None:
                self._capture.install()
            for _ in range(self.settings.max_concurrency):
                self._pool.spawn()
            self._maintenance.start()
            _started_workers.add(self)
        logger.info(
            "worker %s started: %d threads on %s, queues %s",
            self.worker_id,
            self.settings.max_concurrency,
            self.store,
            self.queues.plan,
        )

    def wait_until_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is due and none is running here; ``False`` if ``timeout`` ran out first.

        Jobs scheduled for later (a retry's back-off) are not waited for.
        """
        self._ledger.watching_idle = True
        return self._ledger.idle.wait(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish, give back every job not finished.

        Jobs claimed ahead but not started are given back at once; running jobs keep their leases
        renewed while they finish.

        :param timeout: seconds to wait for running jobs (default ``SHUTDOWN_TIMEOUT``). Jobs still
            running then are released too; their late results are discarded.
        """
        ledger = self._ledger
        room = ledger.room
        with room:
            if ledger.stopping.is_set():
                return
            ledger.stopping.set()
            room.notify_all()  # idle pool threads leave
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            self.store.wake()  # the thread waiting for work, if any
        except StoreError as exc:
            # It notices the stop within a poll interval anyway; the release below must still be tried.
            ledger.health.failed(exc, "waking the thread waiting for work at shutdown")
        self._maintenance.join(timeout)
        self._pool.wait_for_claims(deadline)
        # Claimed-ahead jobs can no longer start (pool threads check the stop flag under this lock),
        # so they go back now: another process starts them at once, not after the running jobs end.
        # A claim still under way gives back its jobs itself.
        with ledger.lock:
            waiting = list(ledger.buffer)
            ledger.buffer.clear()
            for attempt in waiting:
                if ledger.attempts.get(attempt.job.id) is attempt:
                    del ledger.attempts[attempt.job.id]
        released = self._results.release(waiting)
        # The maintenance thread has stopped: renew leases here while running jobs finish,
        # or a job running past its lease would be recovered and run again elsewhere meanwhile.
        renew_every = min(self.settings.claim_timeout / 3, self.settings.poll_interval)
        while True:
            with room:
                if not any(a.started is not None and not a.abandoned for a in ledger.attempts.values()):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or ledger.hurry:
                    break
                room.wait(min(remaining, renew_every))
            try:
                self.renew_leases()
            except StoreError as exc:
                ledger.health.failed(exc, "renewing leases at shutdown")
        with room:
            leftovers = list(ledger.attempts.values())
            ledger.attempts.clear()
        released += self._results.release(leftovers)
        self._leave()
        logger.info("worker %s stopped; %d unfinished job(s) released", self.worker_id, released)

    def release_now(self) -> int:
        """Stop at once: give back every job held here, running ones included, without waiting.

        For a second Ctrl+C while :meth:`shutdown` waits: the jobs are due again at once (no retry
        counted) rather than after their lease; the handlers still running see ``ctx.cancelled``
        and their late results are discarded.

        :returns: how many jobs the store took back.
        """
        ledger = self._ledger
        with ledger.room:
            ledger.stopping.set()
            ledger.room.notify_all()
            held = list(ledger.attempts.values())
            ledger.attempts.clear()
            ledger.buffer.clear()
        released = self._results.release(held)
        # The shutdown this cuts short would not get to it: leave the registry and stop watching now.
        self._leave()
        return released

    def stop_waiting(self) -> None:
        """Cut a graceful :meth:`shutdown` short: it stops waiting for running jobs and gives them back now.

        Called from another thread while :meth:`shutdown` waits (``worker`` does on a second
        ``SIGINT``), or before it. The handlers still running keep their threads until they return;
        their late results are discarded, as after ``SHUTDOWN_TIMEOUT``.
        """
        with self._ledger.room:
            self._ledger.hurry = True
            self._ledger.room.notify_all()

    def _leave(self) -> None:
        """Stop hearing of cancels, unhook the log capture and leave the worker registry."""
        health = self._ledger.health
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            try:
                unwatch()
            except StoreError as exc:
                health.failed(exc, "no longer watching for cancels at shutdown")
            except Exception:
                logger.warning("could not stop watching for cancels", exc_info=True)
        if self._capture is not None:
            self._capture.uninstall()
        self._maintenance.unregistered = True
        if not self._maintenance.registered:
            return
        try:
            self.store.unregister_worker(self.worker_id)
        except StoreError as exc:
            # Its entry expires by itself after three missed heartbeats.
            health.failed(exc, "leaving the worker registry at shutdown")
        else:
            health.answered()

    # -- without threads, and the maintenance steps one at a time ---------------------------------

    def run_once(self, now: float | None = None) -> int:
        """Claim one batch and run it in the calling thread; the number of jobs run.

        For tests, scripts and ``--burst`` workers. Timeouts are not enforced here.
        """
        claimed = self._pool.claim(self.settings.batch_size, now=now)
        for job in claimed:
            attempt = Attempt(job)
            with self._ledger.lock:
                self._ledger.attempts[job.job.id] = attempt
            self._runner.execute(attempt, now, pooled=False)
        return len(claimed)

    def execute(self, attempt: Attempt, now: float | None = None) -> Job | None:
        """Run one claimed job and record its outcome. Never raises.

        :returns: the job as the store has it afterwards, or ``None`` if the attempt's result was discarded.
        """
        return self._runner.execute(attempt, now, pooled=False)

    def renew_leases(self, now: float | None = None) -> None:
        """Renew the leases of every attempt held here; pass cancel requests on to their handlers."""
        self._maintenance.renew_leases(now)

    def check_timeouts(self, now: float | None = None) -> None:
        """Fail every attempt running past its timeout and stop counting its thread.

        :param now: a ``time.monotonic()`` reading (tests pass one).
        """
        self._maintenance.check_timeouts(now)

    def recover_once(self, now: float | None = None) -> list[Job]:
        """Recover jobs whose lease expired anywhere (unless recovery is off) and purge expired finished jobs."""
        return self._maintenance.recover_once(now)

    def run_schedules(self, now: float | None = None) -> list[Job]:
        """Enqueue the recurring jobs' occurrences due by ``now`` that this process wins; the jobs created here."""
        return self._maintenance.scheduler.run_due(now)

    def beat(self, now: float | None = None) -> None:
        """Register this worker in the store's worker registry (again), its heartbeat at ``now``."""
        self._maintenance.beat(now)

    def flush_logs(self, now: float | None = None) -> None:
        """Write the execution logs of running attempts now (the maintenance thread does it every second)."""
        if self._capture is not None:
            self._capture.flush_running(now, force=True)

    def next_schedule_check(self) -> float | None:
        """Epoch seconds of the next look at the schedules (``None`` without schedules)."""
        return self._maintenance.scheduler.next_due()

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        """The recurring jobs this worker enqueues."""
        return self._maintenance.scheduler.schedules
