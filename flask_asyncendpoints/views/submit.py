"""The submit view: read and validate a request to an async endpoint, store its job, answer ``202``."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

from flask import Request, Response, current_app, request
from marshmallow import ValidationError
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..encoding import NOT_FINITE, SURROGATE, TOO_DEEP, safe_text
from ..errors import InvalidPayload, ProblemError, StoreError
from ..jobs import Job, new_job_id, parse_job_id
from ..registry import BeforeSubmit, RouteSpec
from ..state import AppState
from ..stores import PendingLimitReached
from ..submitting import CheckedPayload, check_priority, due_at
from .jobs import current_owner, job_response, may
from .problems import JSON_MIMETYPE, hooked, problem_response, store_unavailable

#: The header a client sets to make a submit idempotent: its value (a UUID) becomes the job id.
REQUEST_ID_HEADER = "X-Async-Request-Id"


def submit_view(state: AppState, route: RouteSpec, **route_params: Any) -> Response:
    """Accept a request for an async endpoint: validate it, store the job, answer ``202``."""
    try:
        before = state.registry.before_submit
        if before is not None:
            # First of all, before the request id or the body is looked at: a caller who may not
            # submit learns nothing about either (a 401 comes before any field error).
            answer = _before_submit(before, route.job_name)
            if answer is not None:
                return answer
        return _submit(state, route, route_params)
    except StoreError as exc:
        return store_unavailable(state, exc)
    except ProblemError as exc:
        return hooked(state, "submission_error", exc, problem_response(exc))


def _before_submit(before: BeforeSubmit, job_name: str) -> Response | None:
    """Run the pre-queue hook: its response, or ``None`` to go on; an HTTP error it raises
    (``abort(401)``) is answered as problem JSON."""
    try:
        answer = before(job_name)
    except ProblemError:
        raise
    except HTTPException as exc:
        if exc.response is not None or exc.code is None:
            raise
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        raise ProblemError(exc.code, exc.name, exc.description or exc.name, headers=headers) from exc
    return None if answer is None else current_app.make_response(answer)


def _submit(state: AppState, route: RouteSpec, route_params: dict[str, Any]) -> Response:
    # The request itself, looked up once: each ``request.<name>`` goes through the context's proxy.
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    spec = state.registry.get_handler(route.job_name)
    owner = current_owner(state)
    job_id = _request_id(req, owner)

    body: Any = None
    if route.takes_body(spec):
        body = _read_json_body(req, state.settings.max_payload_bytes)
    try:
        checked = state.build_payload(
            body,
            _request_headers(req.environ),
            {k: _jsonable(v) for k, v in route_params.items()},
            req.args.to_dict(flat=False) if req.query_string else {},
            owner,
        )
    except InvalidPayload as exc:
        # Before validation: a schema's messages would carry a bad key back into the answer.
        raise ProblemError(400, "Request cannot be stored", f"{exc} {_HINTS.get(exc.kind, '')}".strip()) from None
    _check_size(state, checked)
    loaded: Any = body
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
    if job_id is not None:
        # After the body is checked (a malformed request is refused whatever its id names), before
        # the validator: a repeat of an accepted request answers with its job.
        existing = state.store.get(job_id)
        if existing is not None:
            # As durable as a new job before it is acknowledged (Redis with wait_replicas).
            state.store.confirm_stored(existing)
            return _existing_job(existing, route.job_name, state)
    if route.validator is not None:
        answer = route.validator(loaded)
        if answer is not None:
            return current_app.make_response(answer)
    priority, due = _scheduling(route, loaded)

    try:
        job, created = state.store_job(
            spec,
            job_id or new_job_id(),
            checked.payload,
            sender=current_app._get_current_object(),  # type: ignore[attr-defined]
            priority=priority,
            due=due,
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
    if state.settings.immediate:
        state.run_immediately(current_app._get_current_object())  # type: ignore[attr-defined]
        job = state.store.get(job.id) or job
    return hooked(state, "submitted", job, job_response(job, 202, state, location=True))


def _scheduling(route: RouteSpec, loaded: Any) -> tuple[int, float | None]:
    """The job's priority and due time from the route's options, called with the loaded body.

    A function given as an option is the app's own code: what it returns must be a priority (a whole
    number) or a delay (seconds, or ``None``), else it is the app's error, not the client's.
    """
    priority = route.priority(loaded) if callable(route.priority) else route.priority
    delay = route.delay(loaded) if callable(route.delay) else route.delay
    return check_priority(priority if priority is not None else 0), due_at(delay)


def _existing_job(job: Job, job_name: str, state: AppState) -> Response:
    """Answer a resubmit with the job its request id already names.

    A job of another handler, or one the request may not read, gets the same ``409``: the record of
    another caller's job is never handed out, whoever knows its id.
    """
    if job.name != job_name or not may(state, job, "read"):
        raise ProblemError(
            409,
            "Request id already used",
            f"The {REQUEST_ID_HEADER} given already names another job; send a new UUID.",
        )
    response = job_response(job, 200 if job.status.is_final else 202, state, location=True)
    return hooked(state, "submitted", job, response)


#: What to do about each kind of :class:`~flask_asyncendpoints.errors.InvalidPayload` a request can cause.
_HINTS = {
    SURROGATE: "Send text as valid Unicode: a \\ud800-\\udbff escape is only valid followed by a \\udc00-\\udfff one.",
    NOT_FINITE: "Send numbers JSON can hold: 1e400 and the like overflow to infinity.",
    TOO_DEEP: "Send a body nested less deeply.",
}

#: The header name werkzeug's ``EnvironHeaders`` gives each WSGI environ key (``None``: the key is no
#: header), made once per key rather than on every request; cleared when it grows past
#: :data:`_MAX_HEADER_NAMES` (a client can send any names).
_HEADER_NAMES: dict[str, str | None] = {}
_MAX_HEADER_NAMES = 1024
_UNSEEN: Any = object()
#: The two headers the environ holds without the ``HTTP_`` prefix, kept only when not empty.
_CONTENT_HEADERS = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}


def _request_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """``request.headers.items()`` for the request's WSGI environ: the same names and values, in the
    same order, without a generator per header or the same name spelled again on every request."""
    names = _HEADER_NAMES
    headers = []
    for key, value in environ.items():
        name = names.get(key, _UNSEEN)
        if name is _UNSEEN:
            if len(names) >= _MAX_HEADER_NAMES:
                names.clear()
            name = names[key] = _header_name(key)
        if name is None:
            if key not in _CONTENT_HEADERS or not value:
                continue
            name = _CONTENT_HEADERS[key]
        if type(value) is not str:  # a server that puts bytes there: werkzeug says what they are
            return list(EnvironHeaders(environ).items())
        headers.append((name, value))
    return headers


def _header_name(key: str) -> str | None:
    """The header name of a WSGI environ key, as ``EnvironHeaders`` spells it; ``None`` for no header
    (``CONTENT_TYPE`` and ``CONTENT_LENGTH`` included: they count only when not empty)."""
    if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        return key[5:].replace("_", "-").title()
    return None


#: Namespace of the job ids derived from an owner and their request id.
OWNER_REQUEST_ID_NAMESPACE = uuid.UUID("6a1f3c52-58a4-4d7e-9f0b-2c8e5d9a7b14")


def _request_id(req: Request, owner: str | None) -> str | None:
    """The job id an ``X-Async-Request-Id`` asks for: the header's UUID, scoped to the owner if any."""
    raw = req.headers.get(REQUEST_ID_HEADER)
    if raw is None:
        return None
    job_id = parse_job_id(raw.strip())
    if job_id is None:
        raise ProblemError(
            400, "Invalid request id", f"The {REQUEST_ID_HEADER} header must be a UUID, e.g. {uuid.uuid4()}."
        )
    if owner is not None:
        # Two owners may pick the same key without seeing (or blocking) each other's job.
        return str(uuid.uuid5(OWNER_REQUEST_ID_NAMESPACE, safe_text(f"{owner}\n{job_id}")))
    return job_id


def _read_json_body(req: Request, limit: int) -> Any:
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    raw = _read_at_most(req, limit + 1, length)
    if len(raw) > limit:
        raise _too_large(limit)
    if not raw.strip():
        raise ProblemError(400, "Missing request body", "This endpoint needs a JSON body; none was sent.")
    mimetype = req.mimetype
    if mimetype != JSON_MIMETYPE and not mimetype.endswith("+json"):
        raise ProblemError(
            415,
            "Unsupported media type",
            f"Send the body as JSON with 'Content-Type: {JSON_MIMETYPE}' (got {mimetype or 'none'!r}).",
        )
    charset = req.mimetype_params.get("charset", "utf-8").lower()
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


def _read_at_most(req: Request, size: int, length: int | None) -> bytes:
    """Up to ``size`` bytes of the body. A stream may answer a read with less than is left (a
    chunked body read from the socket), so read until the end or ``size``; with a
    ``Content-Length``, until that many bytes are in.

    A body that ends early (its client closed the connection before sending all of it) or that
    the server cannot read (a chunked body without its last chunk) answers ``400``: a job made of
    part of a body would run on data nobody sent.
    """
    parts: list[bytes] = []
    left = size
    while left > 0 and (length is None or size - left < length):
        try:
            part = req.stream.read(left)
        except RequestEntityTooLarge:
            # The app's own MAX_CONTENT_LENGTH, which werkzeug enforces as the body is read.
            raise ProblemError(
                413, "Request body too large", "The request body is larger than this server accepts."
            ) from None
        except Exception as exc:
            # Each server has its own (gunicorn's NoMoreData and ParseException, werkzeug's
            # ClientDisconnected, an OSError from the socket): none of them is the app's fault.
            raise ProblemError(
                400,
                "Incomplete request body",
                f"The request body could not be read to its end ({type(exc).__name__}); send it again, whole.",
            ) from None
        if not part:
            break
        parts.append(part)
        left -= len(part)
    got = size - left
    if length is not None and got < min(length, size):
        raise ProblemError(
            400,
            "Incomplete request body",
            f"The request body ended after {got} of the {length} bytes its Content-Length announced; "
            "send it again, whole.",
        )
    return b"".join(parts)


def _check_size(state: AppState, checked: CheckedPayload) -> None:
    """``413`` when what would be stored with the job is over its limits."""
    settings = state.settings
    if checked.context_bytes > settings.max_context_bytes:
        raise ProblemError(
            413,
            "Request context too large",
            f"The request's headers, route and query parameters come to {checked.context_bytes} bytes as "
            f"stored with the job; at most {settings.max_context_bytes} are kept. Send fewer or shorter ones.",
        )
    total = checked.body_bytes + checked.context_bytes
    if total > settings.max_payload_bytes:
        raise ProblemError(
            413,
            "Request too large",
            f"The request body with its headers, route and query parameters comes to {total} bytes as "
            f"stored with the job; at most {settings.max_payload_bytes} are accepted.",
        )


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
