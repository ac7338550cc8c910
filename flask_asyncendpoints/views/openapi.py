"""The OpenAPI document of an app's async endpoints and job routes, built with apispec.

apispec is an optional dependency (the ``openapi`` extra); it is imported when a document is first
built. The handlers' marshmallow schemas go through apispec's marshmallow plugin, the library's own
records (the job, its error and progress, problem JSON) are fixed JSON Schemas under names of their
own (``asyncendpoints.Job``, …), so a user schema called ``JobSchema`` stays the user's. Paths come
from the app's URL map, so blueprint prefixes are in them.

Served at ``ASYNCENDPOINTS_OPENAPI_URL`` when that is set (off by default), printed by
``flask asyncendpoints openapi``, and added to an existing apispec document (flask-smorest's
``api.spec``, say) by :meth:`AsyncEndpoints.openapi_spec(spec=…) <flask_asyncendpoints.AsyncEndpoints.openapi_spec>`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app
from marshmallow import INCLUDE, RAISE, Schema, fields, validate

from ..errors import ConfigurationError
from ..jobs import JobStatus
from ..registry import RouteSpec
from ..state import AppState
from .jobs import CANCEL_ENDPOINT, JOB_ENDPOINT
from .problems import JSON_MIMETYPE, PROBLEM_MIMETYPE
from .submit import REQUEST_ID_HEADER

if TYPE_CHECKING:
    from apispec import APISpec

_INSTALL_HINT = 'pip install "flask-asyncendpoints[openapi]"'

#: The library's own component names, namespaced so that no user schema can take them.
JOB = "asyncendpoints.Job"
JOB_ERROR = "asyncendpoints.JobError"
EXCEPTION_INFO = "asyncendpoints.ExceptionInfo"
PROGRESS = "asyncendpoints.Progress"
PROBLEM = "asyncendpoints.Problem"
LIBRARY_COMPONENTS = (JOB, JOB_ERROR, EXCEPTION_INFO, PROGRESS, PROBLEM)

#: What ``DELETE`` on a job does: the one cancel rule every store follows.
CANCEL_RULE = (
    "A Queued or Scheduled job is canceled at once (200, the Canceled job). A running job is asked to "
    "stop (202, the job as it is): its handler sees the request through ctx.cancelled, and a running job "
    "asked to cancel always ends Canceled, whatever its handler then returns or raises. A finished job "
    "is left alone (409)."
)


def import_apispec() -> tuple[Any, Any]:
    """``apispec.APISpec`` and ``apispec.ext.marshmallow.MarshmallowPlugin``.

    :raises ConfigurationError: when apispec is not installed, naming the extra that installs it.
    """
    try:
        from apispec import APISpec
        from apispec.ext.marshmallow import MarshmallowPlugin
    except ImportError as exc:
        raise ConfigurationError(
            f"The OpenAPI document is built with apispec, which is not installed. Install it with: {_INSTALL_HINT}"
        ) from exc
    return APISpec, MarshmallowPlugin


# -- the library's records -------------------------------------------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


class _Nulls:
    """Writes "this or null" the way the document's OpenAPI version does (3.1: JSON Schema; 3.0: ``nullable``)."""

    def __init__(self, openapi_version: str) -> None:
        self.v31 = not openapi_version.startswith("3.0")

    def of(self, schema: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in schema:
            return {"oneOf": [{"type": "null"}, schema]} if self.v31 else {"allOf": [schema], "nullable": True}
        if self.v31:
            return {**schema, "type": [schema["type"], "null"]}
        return {**schema, "nullable": True}

    def any(self, description: str) -> dict[str, Any]:
        return {"description": description} if self.v31 else {"description": description, "nullable": True}


def library_components(openapi_version: str) -> dict[str, dict[str, Any]]:
    """The job record, its error and progress, and problem JSON, as JSON Schemas."""
    null = _Nulls(openapi_version)
    timestamp = {"type": "string", "format": "date-time"}
    return {
        JOB: {
            "type": "object",
            "description": "A job record; keys always in this order, null written out.",
            "required": [
                "id",
                "name",
                "status",
                "retryCount",
                "maxRetries",
                "createdAt",
                "startedAt",
                "completedAt",
                "lastUpdatedAt",
                "result",
                "error",
                "retryDelayUntil",
                "progress",
            ],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "name": {"type": "string"},
                "status": {"type": "string", "enum": [s.value for s in JobStatus]},
                "retryCount": {"type": "integer", "minimum": 0},
                "maxRetries": {"type": "integer", "minimum": 0},
                "createdAt": timestamp,
                "startedAt": null.of(timestamp),
                "completedAt": null.of(timestamp),
                "lastUpdatedAt": timestamp,
                "result": null.any("The handler's result as JSON; null until the job completes."),
                "error": null.of(_ref(JOB_ERROR)),
                "retryDelayUntil": null.of(timestamp),
                "progress": null.of(_ref(PROGRESS)),
            },
        },
        JOB_ERROR: {
            "type": "object",
            "required": ["code", "message", "exception"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "exception": null.of(_ref(EXCEPTION_INFO)),
            },
        },
        EXCEPTION_INFO: {
            "type": "object",
            "required": ["type", "message", "stackTrace", "innerException"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "stackTrace": null.of({"type": "string"}),
                "innerException": null.of(_ref(EXCEPTION_INFO)),
            },
        },
        PROGRESS: {
            "type": "object",
            "required": ["fraction", "message", "updatedAt"],
            "properties": {
                "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                "message": null.of({"type": "string"}),
                "updatedAt": timestamp,
            },
        },
        PROBLEM: {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {"type": "object", "description": "On 422: the messages for each field."},
            },
        },
    }


# -- the users' schemas ----------------------------------------------------------------------------


def _nested(field: fields.Field[Any]) -> Iterator[Schema]:
    """The schemas a field nests, directly or through containers."""
    if isinstance(field, fields.Nested):
        try:
            nested = field.schema
        except Exception:  # a schema named by a string marshmallow cannot resolve: apispec says so
            return
        yield nested
    elif isinstance(field, fields.List):
        yield from _nested(field.inner)
    elif isinstance(field, fields.Tuple):
        for inner in field.tuple_fields:
            yield from _nested(inner)
    elif isinstance(field, fields.Dict) and field.value_field is not None:
        yield from _nested(field.value_field)


def _walk(schema: Schema, seen: dict[type[Schema], Schema], order: list[Schema]) -> None:
    """Every schema ``schema`` nests (post-order: the nested ones first) into ``order``."""
    cls = type(schema)
    if cls in seen:
        return
    seen[cls] = schema
    for field in schema.fields.values():
        for nested in _nested(field):
            _walk(nested, seen, order)
    order.append(schema)


def _qualified(cls: type) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{cls.__module__}.{cls.__qualname__}")


def component_names(schemas: list[Schema], taken: set[str]) -> dict[type[Schema], str]:
    """A component name for each schema class: its name without ``Schema``, or, where two classes
    would share that name (or it is ``taken``), the module-qualified name of each of them."""
    short: dict[type[Schema], str] = {}
    for schema in schemas:
        cls = type(schema)
        short[cls] = cls.__name__.removesuffix("Schema") or cls.__name__
    counts: dict[str, int] = {}
    for name in short.values():
        counts[name] = counts.get(name, 0) + 1
    names: dict[type[Schema], str] = {}
    used = set(taken)
    for cls, name in short.items():
        chosen = name if counts[name] == 1 and name not in taken else _qualified(cls)
        base, number = chosen, 2
        while chosen in used:
            chosen = f"{base}_{number}"
            number += 1
        used.add(chosen)
        names[cls] = chosen
    return names


def _exclusive_ranges(self: Any, field: fields.Field[Any], ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """An apispec attribute function: a ``Range`` with ``min_inclusive=False`` (or ``max_inclusive``)
    is an exclusive bound, which apispec writes as an inclusive one."""
    v31 = not str(self.openapi_version).startswith("3.0")
    out: dict[str, Any] = {}
    for validator in field.validators:
        if not isinstance(validator, validate.Range):
            continue
        for bound, inclusive, inclusive_key, exclusive_key in (
            (validator.min, validator.min_inclusive, "minimum", "exclusiveMinimum"),
            (validator.max, validator.max_inclusive, "maximum", "exclusiveMaximum"),
        ):
            if bound is None or inclusive or inclusive_key not in ret:
                continue
            if v31:
                ret.pop(inclusive_key)
                out[exclusive_key] = bound
            else:
                out[exclusive_key] = True
    return out


# -- paths -----------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """A werkzeug rule as an OpenAPI path, and its parameters with what each converter accepts."""
    params: list[dict[str, Any]] = []

    def replace(match: re.Match[str]) -> str:
        converter, arguments, name = match.group(1) or "default", match.group(2) or "", match.group(3)
        signed = "signed=True" in arguments.replace(" ", "")
        schema: dict[str, Any]
        if converter == "int":
            schema = {"type": "integer"} if signed else {"type": "integer", "minimum": 0}
        elif converter == "float":
            schema = {"type": "number"} if signed else {"type": "number", "minimum": 0}
        elif converter == "uuid":
            schema = {"type": "string", "format": "uuid"}
        elif converter == "path":
            schema = {"type": "string", "minLength": 1}
        else:
            schema = {"type": "string", "pattern": "^[^/]+$"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _VARIABLE.sub(replace, rule), params


def _problem(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_MIMETYPE: {"schema": _ref(PROBLEM)}},
    }
    if retry_after:
        response["headers"] = {"Retry-After": _RETRY_AFTER}
    return response


_RETRY_AFTER = {"schema": {"type": "integer", "minimum": 0}, "description": "Seconds to wait before trying again."}


def _job(description: str, *, location: bool = False, retry_after: bool = True) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON_MIMETYPE: {"schema": _ref(JOB)}}}
    headers: dict[str, Any] = {}
    if location:
        headers["Location"] = {"schema": {"type": "string"}, "description": "The job's URL, to poll."}
    if retry_after:
        headers["Retry-After"] = {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Sent while the job is not finished: seconds to wait before polling again.",
        }
    if headers:
        response["headers"] = headers
    return response


_STORE_DOWN = "The job store cannot be reached (Retry-After: 5); nothing was changed."


def _submit_operation(
    route: RouteSpec, state: AppState, params: list[dict[str, Any]], names: dict[type[Schema], str]
) -> dict[str, Any]:
    spec = state.registry.get_handler(route.job_name)
    limit = state.settings.max_pending_jobs
    responses: dict[str, Any] = {
        "202": _job("Accepted: the new job (or, for a repeated request id, that job while it runs).", location=True),
        "200": _job("A repeated request id whose job has finished: that job; nothing new is created.", location=True),
        "400": _problem(
            "A request id that is not a UUID, a header or parameter that cannot be stored as UTF-8 JSON"
            + (
                ", a missing, cut-off or malformed JSON body, or a body that is not an object"
                if route.takes_body(spec)
                else ""
            )
            + (", or refused by the endpoint's validator." if route.validator is not None else ".")
        ),
        "413": _problem(
            "What would be stored with the job is too large: its headers, route and query parameters over "
            f"ASYNCENDPOINTS_MAX_CONTEXT_BYTES ({state.settings.max_context_bytes} bytes)"
            + (
                f", or the body (with them) over ASYNCENDPOINTS_MAX_PAYLOAD_BYTES ({state.settings.max_payload_bytes} "
                "bytes)."
                if route.takes_body(spec)
                else "."
            )
        ),
        "409": _problem("The request id already names a job of another endpoint, or one this caller may not read."),
        "503": _problem(
            ("Too many pending jobs (ASYNCENDPOINTS_MAX_PENDING_JOBS), or the" if limit is not None else "The")
            + " job store cannot be reached; nothing was changed.",
            retry_after=True,
        ),
    }
    operation: dict[str, Any] = {
        "operationId": f"{state.blueprint_name if route.blueprint is None else route.blueprint.name}.{route.endpoint}",
        "summary": f"Submit a {route.job_name} job",
        "tags": ["async endpoints"],
        "parameters": [
            *params,
            {
                "name": REQUEST_ID_HEADER,
                "in": "header",
                "required": False,
                "description": "A UUID that makes the submit idempotent: sending it again returns the same job.",
                "schema": {"type": "string", "format": "uuid"},
            },
        ],
        "responses": responses,
    }
    doc = (spec.func.__doc__ or "").strip()
    if doc:
        operation["description"] = doc
    if route.takes_body(spec):
        body_schema: dict[str, Any] = {}
        if spec.request_schema is not None:
            body_schema = _ref(names[type(spec.request_schema)])
        operation["requestBody"] = {"required": True, "content": {JSON_MIMETYPE: {"schema": body_schema}}}
        responses["415"] = _problem("The body is not sent as JSON (Content-Type), or not in UTF-8.")
        if spec.request_schema is not None:
            responses["422"] = _problem("The body failed validation; 'errors' has the messages for each field.")
    for status, description in route.responses.items():
        responses.setdefault(str(status), _problem(description))
    if spec.response_schema is not None:
        operation["x-job-result"] = _ref(names[type(spec.response_schema)])
    return operation


def _job_operations(state: AppState, params: list[dict[str, Any]]) -> dict[str, Any]:
    job_param = [{**p, "schema": {"type": "string", "format": "uuid"}} if p["name"] == "job_id" else p for p in params]
    not_found = _problem("No such job: unknown, expired, not a UUID, or not visible to this caller.")
    return {
        "get": {
            "operationId": f"{state.blueprint_name}.{JOB_ENDPOINT}",
            "summary": "Read a job",
            "tags": ["jobs"],
            "parameters": [
                *job_param,
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "description": (
                        "Long-poll: answer when the job is finished or after this many seconds, whichever "
                        f"comes first (at most {state.settings.long_poll_max:g})."
                    ),
                    "schema": {"type": "number", "minimum": 0},
                },
            ],
            "responses": {
                "200": _job("The job record; Retry-After while it is not finished."),
                "400": _problem("'wait' is not a number of seconds ≥ 0."),
                "404": not_found,
                "503": _problem(_STORE_DOWN, retry_after=True),
            },
        },
        "delete": {
            "operationId": f"{state.blueprint_name}.{CANCEL_ENDPOINT}",
            "summary": "Cancel a job",
            "description": CANCEL_RULE,
            "tags": ["jobs"],
            "parameters": job_param,
            "responses": {
                "200": _job("Canceled at once (it was Queued or Scheduled).", retry_after=False),
                "202": _job(
                    "Cancel requested: the job is running; its handler is told to stop, and the job ends "
                    "Canceled whatever its attempt does next."
                ),
                "404": not_found,
                "409": _problem("The job has finished already (Completed, Failed or Canceled); nothing changed."),
                "503": _problem(_STORE_DOWN, retry_after=True),
            },
        },
    }


# -- the document ----------------------------------------------------------------------------------


def openapi_spec(app: Flask, state: AppState, spec: APISpec | None = None) -> APISpec:
    """The OpenAPI document of ``app``'s async endpoints and job routes.

    :param spec: add the paths and components to this apispec document (it keeps its own info and
        version) rather than to a new one.
    :raises ConfigurationError: when apispec is not installed.
    """
    api_spec_cls, plugin_cls = import_apispec()
    settings = state.settings
    routes = list(state.registry.routes)
    seen: dict[type[Schema], Schema] = {}
    ordered: list[Schema] = []
    for route in routes:
        handler = state.registry.get_handler(route.job_name)
        for schema in (handler.request_schema, handler.response_schema):
            if schema is not None:
                _walk(schema, seen, ordered)

    if spec is None:
        spec = api_spec_cls(
            title=settings.openapi_title or app.name,
            version=settings.openapi_version,
            openapi_version="3.1.0",
            plugins=[plugin_cls()],
        )
    plugin = next((p for p in spec.plugins if isinstance(p, plugin_cls)), None)
    if plugin is None:
        raise ConfigurationError(
            "The OpenAPI document to add the async endpoints to has no marshmallow plugin: create it with "
            "APISpec(..., plugins=[MarshmallowPlugin()]) (flask-smorest's api.spec has one)."
        )
    if not getattr(plugin.converter, "_asyncendpoints_ranges", False):
        plugin.converter.add_attribute_function(_exclusive_ranges)
        plugin.converter._asyncendpoints_ranges = True
    existing = set(spec.components.schemas)
    clash = existing.intersection(LIBRARY_COMPONENTS)
    if clash:
        raise ConfigurationError(
            f"The OpenAPI document has {', '.join(sorted(clash))} already: add the async endpoints to it once."
        )

    # A schema the document describes already (flask-smorest registered it) keeps its name there.
    known = {key[0]: name for key, name in getattr(plugin.converter, "refs", {}).items() if isinstance(key, tuple)}
    new = [schema for schema in ordered if type(schema) not in known]
    names = {**known, **component_names(new, existing | set(LIBRARY_COMPONENTS))}
    for name, component in library_components(str(spec.openapi_version)).items():
        spec.components.schema(name, component=component)
    for schema in new:
        # Nested schemas come first (post-order), so apispec finds each one registered by name.
        # additionalProperties is set here too: apispec leaves it out when Meta has a description.
        base: dict[str, Any] = {}
        if schema.unknown == RAISE:
            base["additionalProperties"] = False
        elif schema.unknown == INCLUDE:
            base["additionalProperties"] = True
        spec.components.schema(names[type(schema)], component=base, schema=schema)

    endpoints = {f"{state.blueprint_name if r.blueprint is None else r.blueprint.name}.{r.endpoint}": r for r in routes}
    for rule in app.url_map.iter_rules():
        found = endpoints.get(rule.endpoint)
        path, params = _path(rule.rule)
        if found is not None:
            operation = _submit_operation(found, state, params, names)
            operations = {
                m.lower(): {**operation, "operationId": f"{operation['operationId']}.{m.lower()}"}
                for m in found.methods
            }
            spec.path(path=path, operations=operations)
        elif rule.endpoint == state.job_endpoint:
            spec.path(path=path, operations=_job_operations(state, params))
    return spec


def openapi_view(state: AppState) -> Response:
    """``GET`` the app's OpenAPI document (JSON)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    document = openapi_spec(app, state).to_dict()
    return Response(json.dumps(document, ensure_ascii=False), mimetype=JSON_MIMETYPE)
