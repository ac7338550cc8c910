"""The HTTP surface: submit to an async endpoint, read a job, cancel a job.

Every error is answered as problem JSON (RFC 9457); none of these views lets an exception through.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

from flask import Response, current_app, request, url_for
from marshmallow import ValidationError

from .errors import ProblemError, StoreError
from .jobs import Job, parse_job_id
from .registry import RouteSpec
from .state import AppState
from .stores import CancelResult, PendingLimitReached

#: The header a client sets to make a submit idempotent: its value (a UUID) becomes the job id.
REQUEST_ID_HEADER = "X-Async-Request-Id"

#: Endpoint name of the job details view (``url_for("asyncendpoints.job", job_id=…)``).
JOB_ENDPOINT = "asyncendpoints.job"

JSON_MIMETYPE = "application/json"
PROBLEM_MIMETYPE = "application/problem+json"


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem JSON response (RFC 9457), e.g. for a validator hook to return.

    :param status: the HTTP status code.
    :param detail: what went wrong with this request and what to do about it.
    :param title: a short summary of the problem type (default: the status phrase).
    :param headers: extra response headers.
    :param extra: extension members, such as ``errors``.
    """
    error = ProblemError(status, title or _status_phrase(status), detail, extra=extra, headers=headers)
    return error.get_response()  # type: ignore[return-value]


def _status_phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


#: Job records as sent: compact. Made once: json.dumps with options builds an encoder on every call.
_RECORD_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

#: Stands for the job id in a cached job URL (see :func:`job_location`).
_LOCATION_PLACEHOLDER = uuid.UUID(int=0)

#: Job URL templates kept per app at most (one per script root the app is served under).
_LOCATION_TEMPLATES_MAX = 16


def job_location(state: AppState, job_id: str) -> str:
    """``url_for`` the job's details, built once per script root and filled in after that (``url_for``
    costs about as much as the rest of a job answer)."""
    root = request.script_root
    template = state.location_templates.get(root)
    if template is None:
        template = url_for(JOB_ENDPOINT, job_id=_LOCATION_PLACEHOLDER)
        if len(state.location_templates) < _LOCATION_TEMPLATES_MAX:
            state.location_templates[root] = template
    return template.replace(str(_LOCATION_PLACEHOLDER), job_id)


def job_response(job: Job, status: int, state: AppState, *, location: bool = False) -> Response:
    """The job record as JSON; ``Retry-After`` while the job is not finished."""
    body = _RECORD_ENCODER.encode(
        job.to_dict(
            expose_traceback=state.settings.expose_tracebacks,
            expose_message=state.settings.expose_exception_messages,
        )
    )
    response = Response(body, status=status, mimetype=JSON_MIMETYPE)
    if location:
        response.headers["Location"] = job_location(state, job.id)
    if not job.status.is_final:
        response.headers["Retry-After"] = str(state.retry_after)
    return response


def _hooked(state: AppState, kind: str, subject: Any, response: Response) -> Response:
    """Pass a built response through the app's response hook of that kind, if any."""
    hook = state.registry.response_hooks.get(kind)
    if hook is None:
        return response
    return current_app.make_response(hook(subject, response))


def _store_unavailable(state: AppState, exc: StoreError) -> Response:
    current_app.logger.warning("job store unavailable: %s", exc)
    problem = ProblemError(
        503,
        "Job store unavailable",
        "The job store cannot be reached right now; nothing was changed. Try again shortly.",
        headers={"Retry-After": "5"},
    )
    return _hooked(state, "exception", exc, _problem_response(problem))


def _problem_response(error: ProblemError) -> Response:
    return error.get_response()  # type: ignore[return-value]


def _not_found(job_id: str) -> ProblemError:
    return ProblemError(404, "Job not found", f"There is no job with the id {job_id!r}.")


def _visible_job(state: AppState, job_id: str, action: str) -> Job:
    """The job, if it exists and the current request may ``action`` it; else a 404 problem.

    A job the request may not see answers exactly like an unknown one, so ids of other owners'
    jobs cannot be probed.
    """
    parsed = parse_job_id(job_id)
    job = state.store.get(parsed) if parsed is not None else None
    if job is None or not _may(state, job, action):
        raise _not_found(job_id)
    return job


def _may(state: AppState, job: Job, action: str) -> bool:
    registry = state.registry
    if registry.authorize_func is not None:
        return bool(registry.authorize_func(job, action))
    if job.payload.owner is None:
        return True
    return _current_owner(state) == job.payload.owner


def _current_owner(state: AppState) -> str | None:
    """The owner key of the current request, as a string (as it is stored on jobs)."""
    owner_func = state.registry.owner_func
    owner = owner_func() if owner_func is not None else None
    return str(owner) if owner is not None else None


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
        return _hooked(state, "job_details", job, job_response(job, 200, state))
    except StoreError as exc:
        return _store_unavailable(state, exc)
    except ProblemError as exc:
        return _problem_response(exc)


def cancel_job(state: AppState, job_id: str) -> Response:
    """``DELETE`` a job: 200 canceled, 202 cancel requested (running), 409 finished, 404 unknown."""
    try:
        job = _visible_job(state, job_id, "cancel")
        outcome, canceled = state.store.cancel(job.id, result_ttl=state.settings.result_ttl)
        if outcome is CancelResult.NOT_FOUND or canceled is None:
            raise _not_found(job_id)
        if outcome is CancelResult.FINISHED:
            raise ProblemError(
                409,
                "Job already finished",
                f"The job is {canceled.status.value}; only queued, scheduled or running jobs can be canceled.",
            )
        status = 200 if outcome is CancelResult.CANCELED else 202
        return _hooked(state, "job_details", canceled, job_response(canceled, status, state))
    except StoreError as exc:
        return _store_unavailable(state, exc)
    except ProblemError as exc:
        return _problem_response(exc)


def submit_view(state: AppState, route: RouteSpec, **route_params: Any) -> Response:
    """Accept a request for an async endpoint: validate it, store the job, answer ``202``."""
    try:
        return _submit(state, route, route_params)
    except StoreError as exc:
        return _store_unavailable(state, exc)
    except ProblemError as exc:
        return _hooked(state, "submission_error", exc, _problem_response(exc))


def _submit(state: AppState, route: RouteSpec, route_params: dict[str, Any]) -> Response:
    spec = state.registry.get_handler(route.job_name)
    owner = _current_owner(state)
    job_id = _request_id(owner)
    if job_id is not None:
        existing = state.store.get(job_id)
        if existing is not None:
            return _existing_job(existing, route.job_name, state)

    body: Any = None
    loaded: Any = None
    if route.takes_body(spec):
        body = _read_json_body(state.settings.max_payload_bytes)
        loaded = body
        if spec.request_schema is not None:
            if not isinstance(body, dict):
                raise ProblemError(
                    400, "Invalid request body", f"The request body must be a JSON object, not {_json_kind(body)}."
                )
            try:
                loaded = spec.request_schema.load(body)
            except ValidationError as exc:
                raise ProblemError(
                    422,
                    "Validation failed",
                    "The request body did not pass validation; see 'errors' for each field.",
                    extra={"errors": _jsonable(exc.messages)},
                ) from exc
    if route.validator is not None:
        answer = route.validator(loaded)
        if answer is not None:
            return current_app.make_response(answer)

    try:
        job, created = state.create_job(
            spec,
            job_id or str(uuid.uuid4()),
            body,
            request.headers.items(),
            {k: _jsonable(v) for k, v in route_params.items()},
            request.args.to_dict(flat=False),
            owner,
        )
    except PendingLimitReached as exc:
        raise ProblemError(
            503,
            "Too many pending jobs",
            f"The server already has {state.settings.max_pending_jobs} jobs waiting or running; try again later.",
            headers={"Retry-After": str(state.retry_after)},
        ) from exc
    if not created:
        return _existing_job(job, route.job_name, state)
    return _hooked(state, "submitted", job, job_response(job, 202, state, location=True))


def _existing_job(job: Job, job_name: str, state: AppState) -> Response:
    """Answer a resubmit with the job its request id already names.

    A job of another handler, or one the request may not read, gets the same ``409``: the record of
    another caller's job is never handed out, whoever knows its id.
    """
    if job.name != job_name or not _may(state, job, "read"):
        raise ProblemError(
            409,
            "Request id already used",
            f"The {REQUEST_ID_HEADER} given already names another job; send a new UUID.",
        )
    response = job_response(job, 200 if job.status.is_final else 202, state, location=True)
    return _hooked(state, "submitted", job, response)


#: Namespace of the job ids derived from an owner and their request id.
OWNER_REQUEST_ID_NAMESPACE = uuid.UUID("6a1f3c52-58a4-4d7e-9f0b-2c8e5d9a7b14")


def _request_id(owner: str | None) -> str | None:
    """The job id an ``X-Async-Request-Id`` asks for: the header's UUID, scoped to the owner if any."""
    raw = request.headers.get(REQUEST_ID_HEADER)
    if raw is None:
        return None
    job_id = parse_job_id(raw.strip())
    if job_id is None:
        raise ProblemError(
            400, "Invalid request id", f"The {REQUEST_ID_HEADER} header must be a UUID, e.g. {uuid.uuid4()}."
        )
    if owner is not None:
        # Two owners may pick the same key without seeing (or blocking) each other's job.
        return str(uuid.uuid5(OWNER_REQUEST_ID_NAMESPACE, f"{owner}\n{job_id}"))
    return job_id


def _read_json_body(limit: int) -> Any:
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    raw = _read_at_most(limit + 1, length)
    if len(raw) > limit:
        raise _too_large(limit)
    if not raw.strip():
        raise ProblemError(400, "Missing request body", "This endpoint needs a JSON body; none was sent.")
    mimetype = request.mimetype
    if mimetype != JSON_MIMETYPE and not mimetype.endswith("+json"):
        raise ProblemError(
            415,
            "Unsupported media type",
            f"Send the body as JSON with 'Content-Type: {JSON_MIMETYPE}' (got {mimetype or 'none'!r}).",
        )
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ProblemError(415, "Unsupported media type", "JSON bodies must be encoded as UTF-8.")
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):
            # As json.loads says; the decoder alone would not.
            raise ValueError("Unexpected UTF-8 BOM (decode using utf-8-sig)")
        return _BODY_DECODER.decode(text)
    except UnicodeDecodeError:
        raise ProblemError(400, "Malformed JSON", "The request body is not valid UTF-8.") from None
    except RecursionError:
        raise ProblemError(400, "Malformed JSON", "The request body is nested too deeply.") from None
    except ValueError as exc:
        raise ProblemError(400, "Malformed JSON", f"The request body is not valid JSON: {exc}") from None


def _read_at_most(size: int, length: int | None) -> bytes:
    """Up to ``size`` bytes of the body. A stream may answer a read with less than is left (a
    chunked body read from the socket), so read until the end or ``size``; with a
    ``Content-Length``, until that many bytes are in."""
    parts: list[bytes] = []
    left = size
    while left > 0 and (length is None or size - left < length):
        part = request.stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


#: Request bodies: NaN and Infinity are not JSON. Made once, as json.loads with options would not.
_BODY_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, "Request body too large", f"The request body must be at most {limit} bytes.")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _jsonable(value: Any) -> Any:
    """Make route values and error messages plain JSON (UUIDs and other objects become strings)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def openapi_document(state: AppState, title: str) -> Response:
    """The OpenAPI document of the app's async endpoints and job routes."""
    from .openapi import build_document

    return Response(json.dumps(build_document(state, title), ensure_ascii=False), mimetype=JSON_MIMETYPE)
