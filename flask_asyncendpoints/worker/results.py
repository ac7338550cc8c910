"""Writing an attempt's outcome to the store, and letting the attempt go.

Every outcome leaves the worker here: a result, a failure (with the retry delay the run decided),
a cancel, or a job given back unfinished. On stores that batch completions (Redis, SQL), a finished
pool thread adds its result to an outbox; whichever thread finds no write under way writes everything
waiting in one round trip, while the others carry on. While more jobs of this process's claimed
batch wait to start, a result waits for the others to be written with it (a group commit): for
``COALESCE_WINDOW`` after the last result that joined it, and ``COALESCE_LIMIT`` after the first at
most. A drain of short jobs then writes its results a batch at a time rather than one at a time,
and a job that ends with nothing else to run is written at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

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

#: Seconds deferred results wait for another result to join them, while the jobs claimed with them
#: run, so that they are written together; the flusher thread writes what is waiting once none joins.
COALESCE_WINDOW = 0.002

#: Seconds the first of the deferred results waits at most, however many keep joining it.
COALESCE_LIMIT = 0.01

#: Seconds the flusher thread waits for another deferred result before it ends.
FLUSHER_IDLE = 1.0

#: The event an attempt's stored outcome is, by the status it left the job in.
OUTCOME_EVENTS = {
    JobStatus.COMPLETED: JobEvent.COMPLETED,
    JobStatus.SCHEDULED: JobEvent.RETRIED,
    JobStatus.FAILED: JobEvent.FAILED,
    JobStatus.CANCELED: JobEvent.CANCELED,
}

#: The error code of an attempt whose result cannot be stored.
RESULT_NOT_SERIALIZABLE = "RESULTNOTSERIALIZABLE"

#: What the log says of an attempt that stored nothing, by why.
NOTHING_STORED = "nothing stored by this attempt"
RESULT_DISCARDED = "result discarded, this attempt no longer held the job"
FAILURE_NOT_STORED = "failure not recorded, this attempt no longer held the job"
NOT_RECORDED = "outcome not recorded, the job store is unavailable; the job runs again when its lease runs out"


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
        #: Results posted so far: the flusher sees whether one joined while it waited.
        self._posted = 0
        self._writing = False
        #: Never set: a writer waits on it to back off after a store error.
        self._write_pause = threading.Event()
        #: Set when a result is left in the outbox for others to join it; the flusher waits on it.
        self._deferred = threading.Event()
        self._flusher: threading.Thread | None = None

    def finish(self, attempt: Attempt, outcome: Job | None, note: str = NOTHING_STORED) -> None:
        """Let go of an attempt whose outcome is written (or not to be) and tell ``job_finished`` receivers.

        An outcome the store has was logged as its job event already (:meth:`stored`); an attempt
        that stored nothing is logged here, with why.

        :param outcome: the job as the store has it now, or ``None`` when this attempt stored nothing.
        :param note: what happened, for the log, when ``outcome`` is ``None``.
        """
        self.ledger.forget(attempt)
        job = attempt.job
        if outcome is None:
            logger.info(
                "job %s (%s) attempt %d finished: %s in %.3f s",
                job.id,
                job.name,
                attempt.number,
                note,
                time.monotonic() - (attempt.started or 0.0),
            )
        send_signal(job_finished, self.app, job=outcome, job_id=job.id)

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

        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
        """
        outcomes = self.store.complete_many(
            [(a.claimed, r) for a, r in results], result_ttl=self.settings.result_ttl, now=now
        )
        self.ledger.health.answered()
        for (attempt, _), outcome in zip(results, outcomes, strict=True):
            if outcome is None:
                logger.warning(
                    "job %s (%s): result discarded, this attempt no longer holds the job",
                    attempt.job.id,
                    attempt.job.name,
                )
            self.stored(attempt, outcome)
        return outcomes

    def complete_one(self, attempt: Attempt, result_json: str, now: float | None = None) -> tuple[Job | None, str]:
        """Store one attempt's result; the job as stored (``None``: not stored) and what happened.

        A store that cannot take the result for a reason other than being unreachable (it cannot
        encode it, a bug) fails the attempt instead, so the job is retried or failed as after any
        other failed attempt, rather than left to its lease.

        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
        """
        try:
            outcome = self.complete([(attempt, result_json)], now)[0]
        except StoreError:
            raise
        except Exception as exc:
            return self._unwritable(attempt, exc, now)
        return outcome, RESULT_DISCARDED

    def _unwritable(self, attempt: Attempt, exc: Exception, now: float | None) -> tuple[Job | None, str]:
        job = attempt.job
        logger.exception("job %s (%s): the job store could not write its result; failing the attempt", job.id, job.name)
        error = JobError(
            code=RESULT_NOT_SERIALIZABLE,
            message=f"The job store could not write the handler's result ({type(exc).__name__}); "
            "the worker's log has the details.",
        )
        try:
            return self.fail(attempt, error, retry_delay=retry_delay(job.retry_count + 1, self.settings), now=now), (
                FAILURE_NOT_STORED
            )
        except StoreError as store_error:
            self.ledger.health.failed(store_error, "writing a failure")
            return None, NOT_RECORDED

    def post(self, attempt: Attempt, result_json: str) -> None:
        """Add a result to the outbox; unless another thread is writing already, write everything in
        it, as many at a time as are waiting (up to 100), until it is empty. Each attempt written
        (or found abandoned) is finished.

        While the store cannot be reached, the results wait here and the write is retried with
        back-off. A batch the store refuses for another reason is written one result at a time, so
        only the result it cannot take fails (:meth:`complete_one`) and the others are stored.
        """
        with self._lock:
            self._outbox.append((attempt, result_json))
            self._posted += 1
            if self._writing:
                return  # the writer takes it with the next batch
            if len(self._outbox) < self._coalescing():
                # Other attempts of this process are running or about to: their results join this
                # one, or the flusher writes it once none has joined for COALESCE_WINDOW.
                self._defer()
                return
            self._writing = True
        self._write_outbox()

    def _coalescing(self) -> int:
        """How many results the outbox waits for before it is written (called with the lock held):
        one per attempt this process holds, a batch at most."""
        return min(len(self.ledger.attempts), self.settings.batch_size)

    def _defer(self) -> None:
        """Have the flusher write the outbox soon (called with the lock held)."""
        self._deferred.set()
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="asyncendpoints-flusher", daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        """Write deferred results once no other result has joined them for ``COALESCE_WINDOW`` (at
        most ``COALESCE_LIMIT`` after they were left); end once none come for a while."""
        while True:
            if not self._deferred.wait(FLUSHER_IDLE):
                with self._lock:
                    if not self._deferred.is_set():
                        self._flusher = None
                        return
                continue
            self._deferred.clear()
            first = time.monotonic()
            with self._lock:
                seen = self._posted
            while True:
                self._write_pause.wait(COALESCE_WINDOW)
                with self._lock:
                    if self._writing or not self._outbox:
                        break  # written meanwhile, or being written
                    joined, seen = self._posted != seen, self._posted
                    if joined and time.monotonic() - first < COALESCE_LIMIT:
                        continue
                    self._writing = True
                self._write_outbox()
                break

    def _write_outbox(self) -> None:
        """Write the outbox until it is empty; the caller has set ``_writing``, which this clears.

        Results that came while a batch was being written wait for the rest of theirs as a posted
        one does (:meth:`post`), rather than going out at once in a batch of one or two.
        """
        backoff = 0.0
        first = True
        while True:
            with self._lock:
                if not first and self._outbox and len(self._outbox) < self._coalescing():
                    self._defer()
                    self._writing = False
                    return
                first = False
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
                        self.finish(waiting, None, RESULT_DISCARDED)
                batch = [(a, r) for a, r in batch if not a.abandoned]
                if not batch:
                    break
                try:
                    if len(batch) == 1:
                        outcome, note = self.complete_one(*batch[0])
                        self.finish(batch[0][0], outcome, note)
                    else:
                        self._write_batch(batch)
                except StoreError as exc:
                    self.ledger.health.failed(exc, f"writing {len(batch)} result(s)")
                    backoff = min(max(backoff * 2, 0.05), MAX_ERROR_BACKOFF)
                    self._write_pause.wait(backoff)
                    continue
                backoff = 0.0
                batch = []

    def _write_batch(self, batch: list[tuple[Attempt, str]]) -> None:
        """Write a batch of results together; one by one if the store refuses them together.

        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached; the results
            not written yet are put back at the front of ``batch``.
        """
        try:
            outcomes = self.complete(batch)
        except StoreError:
            raise
        except Exception:
            logger.warning(
                "the job store refused %d results written together; writing them one by one", len(batch), exc_info=True
            )
            while batch:
                attempt, result_json = batch[0]
                outcome, note = self.complete_one(attempt, result_json)  # a StoreError leaves the rest in batch
                del batch[0]
                self.finish(attempt, outcome, note)
            return
        for (written, _), outcome in zip(batch, outcomes, strict=True):
            self.finish(written, outcome, RESULT_DISCARDED)
        batch.clear()

    def fail(self, attempt: Attempt, error: JobError, *, retry_delay: float | None, now: float | None) -> Job | None:
        """Store a failed attempt: a retry due in ``retry_delay`` seconds, or (``None``) a final failure.

        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
        """
        job = attempt.job
        failed = self.store.fail(
            job.id, attempt.claimed.token, error, retry_delay=retry_delay, result_ttl=self.settings.result_ttl, now=now
        )
        self.ledger.health.answered()
        if failed is None:
            logger.warning(
                "job %s (%s): this attempt no longer holds the job, so its failure is not recorded", job.id, job.name
            )
        # A final failure is logged as its ``failed`` event (at ERROR), a retry as ``retried``.
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
        unreleased: list[str] = []
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
            except StoreError as exc:
                self.ledger.health.failed(exc, "giving back unfinished jobs")
                unreleased.append(attempt.job.id)
            except Exception:
                # A store breaking its contract (a bug of its own): the other jobs are still given
                # back, and the shutdown or claim turn that called this still ends.
                logger.exception("unexpected error while giving back job %s", attempt.job.id)
                unreleased.append(attempt.job.id)
            finally:
                attempt.cancelled.set()
        if unreleased:
            logger.warning(
                "could not give back %d job(s) (%s); each is recovered when its lease expires",
                len(unreleased),
                ", ".join(unreleased),
            )
        return released
