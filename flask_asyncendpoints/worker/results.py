"""Writing an attempt's outcome to the store, and letting the attempt go.

Every outcome leaves the worker here: a result, a failure (with the retry delay the run decided),
a cancel, or a job given back unfinished. On stores that batch completions (Redis), a finished pool
thread adds its result to an outbox; whichever thread finds no write under way writes everything
waiting in one round trip, while the others carry on.
"""

from __future__ import annotations

import threading

from flask import Flask

from ..config import Settings
from ..errors import StoreError
from ..events import JobEvent, emit, send_signal
from ..jobs import Job, JobError, JobStatus
from ..signals import job_finished
from ..stores import Store
from .ledger import MAX_ERROR_BACKOFF, Attempt, Ledger, logger

#: Results the completer writes in one round trip at most.
COMPLETION_BATCH = 100

#: The event an attempt's stored outcome is, by the status it left the job in.
OUTCOME_EVENTS = {
    JobStatus.COMPLETED: JobEvent.COMPLETED,
    JobStatus.SCHEDULED: JobEvent.RETRIED,
    JobStatus.FAILED: JobEvent.FAILED,
    JobStatus.CANCELED: JobEvent.CANCELED,
}


class Results:
    """Writes the outcomes of this process's attempts and lets each attempt go once its outcome is settled.

    :param app: the Flask app (the sender of ``job_finished``).
    :param settings: the app's extension settings.
    :param store: the app's job store.
    :param ledger: the attempts held in this process.
    """

    def __init__(self, app: Flask, settings: Settings, store: Store, ledger: Ledger) -> None:
        self.app = app
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self._lock = ledger.lock
        #: Results waiting to be written together (stores that batch completions, threaded mode).
        self._outbox: list[tuple[Attempt, str]] = []
        self._writing = False
        #: Never set: a writer waits on it to back off after a store error.
        self._write_pause = threading.Event()

    def finish(self, attempt: Attempt, outcome: Job | None) -> None:
        """Let go of an attempt whose outcome is written (or discarded) and tell ``job_finished`` receivers."""
        self.ledger.forget(attempt)
        send_signal(job_finished, self.app, job=outcome, job_id=attempt.job.id)

    def stored(self, attempt: Attempt, outcome: Job | None) -> None:
        """The store has the attempt's outcome: its event (completed, retried, failed, canceled), once."""
        if outcome is None:
            return
        event = OUTCOME_EVENTS.get(outcome.status)
        if event is not None:
            emit(event, self.app, outcome, attempt=attempt.number, duration=attempt.duration())

    def complete(self, results: list[tuple[Attempt, str]], now: float | None = None) -> list[Job | None]:
        """Store successful attempts' results; for each, the completed job or ``None`` (lease lost).

        A job asked to cancel meanwhile comes back ``Canceled`` (the store's cancel rule).
        """
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
            self.stored(attempt, outcome)
        return outcomes

    def post(self, attempt: Attempt, result_json: str) -> None:
        """Add a result to the outbox; unless another thread is writing already, write everything in
        it, as many at a time as are waiting (up to 100), until it is empty. Each attempt written
        (or found abandoned) is finished."""
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
                # its late result is dropped, as in Runner.execute().
                for waiting, _ in batch:
                    if waiting.abandoned:
                        logger.warning("job %s (%s): late result discarded", waiting.job.id, waiting.job.name)
                        self.finish(waiting, None)
                batch = [(a, r) for a, r in batch if not a.abandoned]
                if not batch:
                    break
                try:
                    outcomes = self.complete(batch)
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
                    self.finish(written, outcome)
                batch = []

    def fail(self, attempt: Attempt, error: JobError, *, retry_delay: float | None, now: float | None) -> Job | None:
        """Store a failed attempt: a retry due in ``retry_delay`` seconds, or (``None``) a final failure."""
        job = attempt.job
        failed = self.store.fail(
            job.id, attempt.claimed.token, error, retry_delay=retry_delay, result_ttl=self.settings.result_ttl, now=now
        )
        if failed is None:
            logger.warning("job %s (%s): failure discarded, this attempt no longer holds the job", job.id, job.name)
        self.stored(attempt, failed)
        return failed

    def cancel(self, attempt: Attempt, now: float | None) -> Job | None:
        """Store an attempt that stopped on a cancel request as canceled."""
        canceled = self.store.finish_canceled(
            attempt.job.id, attempt.claimed.token, result_ttl=self.settings.result_ttl, now=now
        )
        self.stored(attempt, canceled)
        return canceled

    def release(self, attempts: list[Attempt]) -> int:
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
                    # A job asked to cancel is Canceled by its release (the cancel rule), and that is
                    # its canceled event, here. Shutdown only, so one read per job given back is cheap.
                    after = self.store.get(attempt.job.id)
                    if after is not None and after.status is JobStatus.CANCELED:
                        self.stored(attempt, after)
            except StoreError:
                logger.warning(
                    "could not release job %s at shutdown; it is recovered when its lease expires",
                    attempt.job.id,
                    exc_info=True,
                )
            finally:
                attempt.cancelled.set()
        return released
