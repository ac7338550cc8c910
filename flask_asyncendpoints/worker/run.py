"""One attempt's run: the handler called in the app context, and the outcome that follows from it.

The run builds the handler's :class:`~flask_asyncendpoints.handlers.JobContext`, calls the handler,
serializes its result, and decides the outcome: completed, failed (with the delay before the retry,
if any), or canceled. The result writer below stores it; the run never reaches back into the pool
that started it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.datastructures import Headers, MultiDict

from ..config import Settings
from ..encoding import NOT_FINITE, NOT_JSON, SURROGATE, TOO_DEEP, NotJSONError, json_text
from ..errors import JobCanceled, JobFailure, StoreError
from ..events import JobEvent, emit
from ..handlers import HandlerSpec, JobContext, JobLogger
from ..jobs import Job, JobError
from ..stores import Store
from .ledger import Attempt, Ledger, logger
from .logcapture import LogCapture
from .results import NOT_RECORDED, NOTHING_STORED, RESULT_DISCARDED, RESULT_NOT_SERIALIZABLE, Results, retry_delay

#: Progress is written to the store at most this often per attempt (seconds).
PROGRESS_INTERVAL = 0.2

HANDLER_NOT_FOUND = "HANDLERNOTFOUND"
INVALID_REQUEST = "INVALIDREQUEST"

#: What to do about each kind of result that cannot be stored.
_RESULT_ADVICE = {
    SURROGATE: (
        "Text from os.listdir, os.environ or bytes decoded with errors='surrogateescape' can hold these: "
        "decode with errors='replace', or return such names as base64."
    ),
    NOT_FINITE: "JSON has no NaN or infinity: return None or a string in their place.",
    TOO_DEEP: "Return a shallower structure.",
    NOT_JSON: "Return dicts, lists, strings, numbers, booleans or None, or give the handler a response schema.",
}


class Runner:
    """Runs claimed attempts, one per call, in the calling thread.

    :param app: the Flask app; handlers run inside its app context.
    :param settings: the app's extension settings.
    :param store: the app's job store (progress is written to it directly).
    :param find_handler: returns the handler registered under a job name, or ``None``.
    :param ledger: the attempts held in this process.
    :param results: writes each attempt's outcome.
    :param capture: keeps what handlers log (``None``: execution logs are off).
    """

    def __init__(
        self,
        app: Flask,
        settings: Settings,
        store: Store,
        find_handler: Callable[[str], HandlerSpec | None],
        ledger: Ledger,
        results: Results,
        capture: LogCapture | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.store = store
        self.find_handler = find_handler
        self._ledger = ledger
        self._results = results
        self._capture = capture
        #: Attempts run here.
        self.executed = 0

    def execute(self, attempt: Attempt, now: float | None, *, pooled: bool) -> Job | None:
        """Run one claimed job and record its outcome. Never raises.

        :param pooled: called by a pool thread: a store that batches completions then writes the
            result with others (see :meth:`Results.post`), and this returns ``None``.
        :returns: the job as the store has it afterwards, or ``None`` if the attempt's result was discarded.
        """
        if attempt.started is None:
            attempt.started = time.monotonic()
        job = attempt.job
        self.executed += 1
        outcome: Job | None = None
        note = NOTHING_STORED
        try:
            emit(JobEvent.STARTED, self.app, job, attempt=attempt.number)
            ran = self._run(attempt, now)
            if isinstance(ran, str):
                if attempt.abandoned:
                    # Timed out or given back at shutdown: the job is settled, the late result is not.
                    logger.warning("job %s (%s): late result discarded", job.id, job.name)
                    note = RESULT_DISCARDED
                elif pooled and self.store.batches_completions:
                    # Written with others in one round trip. The attempt stays held (and renewed)
                    # until then; shutdown waits for it like for a running one.
                    self._results.post(attempt, ran)
                    return None
                else:
                    outcome, note = self._results.complete_one(attempt, ran, now)
            else:
                outcome = ran
        except StoreError as exc:
            # Its lease runs out and the job is recovered; the outage is logged once, not per job.
            self._ledger.health.failed(exc, "recording an outcome")
            note = NOT_RECORDED
        except BaseException:
            logger.exception("job %s (%s): could not record its outcome", job.id, job.name)
            note = "outcome not recorded (see the error above)"
        self._results.finish(attempt, outcome, note)
        return outcome

    def fail(self, attempt: Attempt, error: JobError, *, retry: bool, now: float | None = None) -> Job | None:
        """Store the attempt as failed: retried after :func:`retry_delay` if ``retry`` (and retries are
        left), else failed for good."""
        delay = retry_delay(attempt.job.retry_count + 1, self.settings) if retry else None
        return self._results.fail(attempt, error, retry_delay=delay, now=now)

    def _run(self, attempt: Attempt, now: float | None) -> Job | str | None:
        """Run the handler; the stored outcome, or the result JSON still to be written on success."""
        job = attempt.job
        spec = self.find_handler(job.name)
        if spec is None:
            self._ledger.done_running(attempt)
            message = f"No handler is registered for the job name {job.name!r} in this process."
            return self.fail(attempt, JobError(code=HANDLER_NOT_FOUND, message=message), retry=True, now=now)
        capture = self._capture
        try:
            ctx = self._context(attempt, spec, now)
            if capture is not None:
                capture.begin(attempt, spec.logger_name)
            try:
                with self.app.app_context():
                    value = spec.func(ctx)
            finally:
                self._ledger.done_running(attempt)
                if capture is not None:
                    capture.end(attempt, now)
            result_json = self._serialize(spec, value)
        except JobCanceled:
            if attempt.abandoned:
                # It stopped because it timed out or was released at shutdown; that outcome is stored.
                return None
            return self._results.cancel(attempt, now)
        except JobFailure as exc:
            # A failure after a cancel request is written as a failure all the same: the store makes
            # the job Canceled (its cancel rule) and keeps the error in the attempt's history.
            return self.fail(attempt, JobError.from_exception(exc), retry=exc.retry, now=now)
        except BaseException as exc:  # the worker must survive SystemExit, KeyboardInterrupt and all
            logger.debug("job %s (%s) attempt %d failed: %r", job.id, job.name, job.retry_count + 1, exc)
            return self.fail(attempt, JobError.from_exception(exc), retry=True, now=now)
        if attempt.cancelled.is_set() and not attempt.abandoned:
            return self._results.cancel(attempt, now)
        self._flush_progress(attempt, now)
        return result_json

    def _context(self, attempt: Attempt, spec: HandlerSpec, now: float | None) -> JobContext:
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
            attempt=attempt.number,
            name=job.name,
            cancelled=attempt.cancelled,
            logger=JobLogger(
                spec.logger,
                {"job_id": job.id, "job_name": job.name, "attempt": attempt.number},
            ),
            _on_progress=lambda fraction, message: self._progress(attempt, fraction, message, now),
        )

    @staticmethod
    def _serialize(spec: HandlerSpec, value: Any) -> str:
        """The result as the JSON text stored for it, checked here, before it joins a batch of writes: a
        result the store cannot encode must fail its own attempt, never the writes of other jobs."""
        try:
            if spec.response_schema is not None:
                value = spec.response_schema.dump(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise JobFailure(
                f"The handler's response schema could not dump its result ({exc!r}).", code=RESULT_NOT_SERIALIZABLE
            ) from exc
        try:
            return json_text(value, "the result")
        except NotJSONError as exc:
            advice = _RESULT_ADVICE.get(exc.kind, _RESULT_ADVICE[NOT_JSON])
            raise JobFailure(
                f"The handler's result cannot be stored as UTF-8 JSON: {exc}. {advice}", code=RESULT_NOT_SERIALIZABLE
            ) from exc

    def _progress(self, attempt: Attempt, fraction: float, message: str | None, now: float | None) -> None:
        attempt.pending_progress = (fraction, message)
        tick = time.monotonic()
        if tick - attempt.last_progress_write >= PROGRESS_INTERVAL or fraction >= 1.0:
            self._flush_progress(attempt, now)

    def _flush_progress(self, attempt: Attempt, now: float | None) -> None:
        pending, attempt.pending_progress = attempt.pending_progress, None
        if pending is None:
            return
        attempt.last_progress_write = time.monotonic()
        try:
            self.store.set_progress(attempt.job.id, attempt.claimed.token, pending[0], pending[1], now=now)
        except StoreError as exc:
            self._ledger.health.failed(exc, "recording progress")
        else:
            self._ledger.health.answered()
