"""The job routes: read a job (with long-poll), cancel a job, and the job record as an answer."""

from __future__ import annotations

import math
import uuid

from flask import Response, current_app, request, url_for

from ..encoding import compact_encoder
from ..errors import ProblemError, StoreError
from ..jobs import Job, parse_job_id
from ..state import AppState
from ..stores import CancelResult
from .problems import JSON_MIMETYPE, hooked, not_found, problem_response, store_unavailable

#: Endpoint name of the job details view within its blueprint (``url_for("asyncendpoints.job", job_id=…)``).
JOB_ENDPOINT = "job"

#: Endpoint name of the cancel view within its blueprint (the same URL, ``DELETE``).
CANCEL_ENDPOINT = "cancel"

#: Job records as sent: compact.
_record_json = compact_encoder(allow_nan=True)

#: Stands for the job id in a cached job URL (see :func:`job_location`).
_LOCATION_PLACEHOLDER = uuid.UUID(int=0)
_LOCATION_PLACEHOLDER_TEXT = str(_LOCATION_PLACEHOLDER)

#: Job URL templates kept per app at most (one per script root the app is served under).
_LOCATION_TEMPLATES_MAX = 16


def job_location(state: AppState, job_id: str) -> str:
    """``url_for`` the job's details, built once per script root and filled in after that (``url_for``
    costs about as much as the rest of a job answer)."""
    root = request.script_root
    template = state.location_templates.get(root)
    if template is None:
        template = url_for(state.job_endpoint, job_id=_LOCATION_PLACEHOLDER)
        if len(state.location_templates) < _LOCATION_TEMPLATES_MAX:
            state.location_templates[root] = template
    return template.replace(_LOCATION_PLACEHOLDER_TEXT, job_id)


def job_response(job: Job, status: int, state: AppState, *, location: bool = False) -> Response:
    """The job record as JSON; ``Retry-After`` while the job is not finished."""
    body = _record_json(
        job.to_dict(
            expose_traceback=state.settings.expose_tracebacks,
            expose_message=state.settings.expose_exception_messages,
        )
    )
    # Headers given at once rather than set one by one: each set looks through those there already.
    headers = [("Content-Type", JSON_MIMETYPE)]
    if location:
        headers.append(("Location", job_location(state, job.id)))
    if not job.status.is_final:
        headers.append(("Retry-After", str(state.retry_after)))
    return Response(body, status=status, headers=headers)


def may(state: AppState, job: Job, action: str) -> bool:
    """Whether the current request may ``action`` (``"read"``, ``"cancel"``) the job."""
    registry = state.registry
    if registry.authorize_func is not None:
        return bool(registry.authorize_func(job, action))
    if job.payload.owner is None:
        return True
    return current_owner(state) == job.payload.owner


def current_owner(state: AppState) -> str | None:
    """The owner key of the current request, as a string (as it is stored on jobs)."""
    owner_func = state.registry.owner_func
    owner = owner_func() if owner_func is not None else None
    return str(owner) if owner is not None else None


def _visible_job(state: AppState, job_id: str, action: str) -> Job:
    """The job, if it exists and the current request may ``action`` it; else a 404 problem.

    A job the request may not see answers exactly like an unknown one, so ids of other owners'
    jobs cannot be probed.
    """
    parsed = parse_job_id(job_id)
    job = state.store.get(parsed) if parsed is not None else None
    if job is None or not may(state, job, action):
        raise not_found(job_id)
    return job


def _wait_seconds(state: AppState) -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ProblemError(400, "Invalid wait", "'wait' must be a number of seconds ≥ 0, e.g. ?wait=10.")
    return min(seconds, state.settings.long_poll_max)


def job_details(state: AppState, job_id: str) -> Response:
    """``GET`` the job record: 200, or 404 problem JSON for an unknown or malformed id.

    With ``?wait=<seconds>`` (capped at ``ASYNCENDPOINTS_LONG_POLL_MAX``) the answer waits until
    the job is finished or the time is up, whichever comes first.
    """
    try:
        wait = _wait_seconds(state)
        job = _visible_job(state, job_id, "read")
        if wait > 0 and not job.status.is_final:
            job = state.store.wait_for_finish(job.id, wait) or job
        return hooked(state, "job_details", job, job_response(job, 200, state))
    except StoreError as exc:
        return store_unavailable(state, exc)
    except ProblemError as exc:
        return problem_response(exc)


def cancel_job(state: AppState, job_id: str) -> Response:
    """``DELETE`` a job: 200 canceled, 202 cancel requested (running), 409 finished, 404 unknown."""
    try:
        job = _visible_job(state, job_id, "cancel")
        outcome, canceled = state.cancel(job.id, sender=current_app._get_current_object())  # type: ignore[attr-defined]
        if outcome is CancelResult.NOT_FOUND or canceled is None:
            raise not_found(job_id)
        if outcome is CancelResult.FINISHED:
            raise ProblemError(
                409,
                "Job already finished",
                f"The job is {canceled.status.value}; only queued, scheduled or running jobs can be canceled.",
            )
        status = 200 if outcome is CancelResult.CANCELED else 202
        return hooked(state, "job_details", canceled, job_response(canceled, status, state))
    except StoreError as exc:
        return store_unavailable(state, exc)
    except ProblemError as exc:
        return problem_response(exc)
