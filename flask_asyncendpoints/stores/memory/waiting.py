"""The memory store's waits: idle workers until a job of their queues is due, long-polls until their
job finishes, and the cancel watchers.

Every wait is on a condition of the store's one lock (:mod:`.state`): a worker's own
:class:`~.state.Waiter`, notified by the change that makes a job of its queues due, and one
condition notified whenever a job finishes. Nothing here sleeps a poll interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from ...jobs import DEFAULT_QUEUE, Job, JobStatus
from .state import MemoryState, Waiter


class MemoryWaiting(MemoryState):
    """Waiting for work and for jobs to finish, and watching cancels: a part of :class:`~.store.MemoryStore`."""

    def wait_for_work(self, timeout: float, *, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            waiter: Waiter | None = None
            try:
                while True:
                    if self._woken or (waiter is not None and waiter.ready):
                        self._woken = False
                        return
                    wait = deadline - time.monotonic()
                    for name in queues:
                        state = self._queues.get(name)
                        if state is None:
                            continue
                        if state.counts[JobStatus.QUEUED]:
                            return
                        due = state.earliest_scheduled()
                        if due is not None:
                            wait = min(wait, due - self._clock())
                    if wait <= 0:
                        return
                    if waiter is None:
                        waiter = Waiter(threading.Condition(self._lock), tuple(queues))
                    for name in queues:
                        self._waiters.setdefault(name, {})[waiter] = None
                    waiter.cond.wait(wait)
            finally:
                if waiter is not None:
                    self._forget_waiter(waiter)

    def wake(self) -> None:
        with self._lock:
            self._woken = True
            for waiters in self._waiters.values():
                for waiter in list(waiters):
                    waiter.ready = True
                    waiter.cond.notify()

    def wait_for_finish(self, job_id: str, timeout: float) -> Job | None:
        deadline = time.monotonic() + timeout
        with self._finished:
            while True:
                entry = self._jobs.get(job_id)
                remaining = deadline - time.monotonic()
                if entry is None or entry.job.status.is_final or remaining <= 0:
                    return entry.job if entry is not None else None
                self._finish_waiters += 1
                try:
                    self._finished.wait(remaining)
                finally:
                    self._finish_waiters -= 1

    def watch_cancels(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """See :meth:`Store.watch_cancels <flask_asyncendpoints.stores.base.Store.watch_cancels>`.

        The memory store calls ``callback`` in the thread that asked for the cancel, right after
        the request is stored and outside the store's lock.
        """
        with self._lock:
            watcher_id = next(self._watcher_ids)
            self._watchers[watcher_id] = callback

        def stop() -> None:
            with self._lock:
                self._watchers.pop(watcher_id, None)

        return stop
