"""An OpenAPI 3.1 document for an app's async endpoints and job routes, built from its schemas.

Served at ``ASYNCENDPOINTS_OPENAPI_URL`` when that is set (off by default). The marshmallow to
JSON Schema mapping covers the built-in field types and validators; a field it does not know is
described as any value rather than guessed at.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Response
from marshmallow import Schema, fields, validate

from ..jobs import JobStatus
from ..registry import RouteSpec
from ..state import AppState
from .problems import JSON_MIMETYPE
from .submit import REQUEST_ID_HEADER

_SIMPLE: list[tuple[type[fields.Field[Any]], dict[str, Any]]] = [
    (fields.AwareDateTime, {"type": "string", "format": "date-time"}),
    (fields.NaiveDateTime, {"type": "string", "format": "date-time"}),
    (fields.DateTime, {"type": "string", "format": "date-time"}),
    (fields.Date, {"type": "string", "format": "date"}),
    (fields.Time, {"type": "string", "format": "time"}),
    (fields.TimeDelta, {"type": "number"}),
    (fields.UUID, {"type": "string", "format": "uuid"}),
    (fields.Email, {"type": "string", "format": "email"}),
    (fields.Url, {"type": "string", "format": "uri"}),
    (fields.IP, {"type": "string"}),
    (fields.String, {"type": "string"}),
    (fields.Integer, {"type": "integer"}),
    (fields.Decimal, {"type": "number"}),
    (fields.Float, {"type": "number"}),
    (fields.Number, {"type": "number"}),
    (fields.Boolean, {"type": "boolean"}),
]

_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}

#: The job record on the wire, keys in their documented order.
JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
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
        "createdAt": {"type": "string", "format": "date-time"},
        "startedAt": _TIMESTAMP,
        "completedAt": _TIMESTAMP,
        "lastUpdatedAt": {"type": "string", "format": "date-time"},
        "result": {"description": "The handler's result as JSON; null until the job completes."},
        "error": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/JobError"}]},
        "retryDelayUntil": _TIMESTAMP,
        "progress": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {
                        "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                        "message": {"type": ["string", "null"]},
                        "updatedAt": {"type": "string", "format": "date-time"},
                    },
                },
            ]
        },
    },
}

EXCEPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "message": {"type": "string"},
        "stackTrace": {"type": ["string", "null"]},
        "innerException": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/ExceptionInfo"}]},
    },
}

JOB_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "exception": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/ExceptionInfo"}]},
    },
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "object", "description": "On 422: the messages for each field."},
    },
}


def field_schema(field: fields.Field[Any], components: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one marshmallow field (nested schemas go to ``components``)."""
    schema: dict[str, Any]
    if isinstance(field, fields.Nested):
        nested = field.schema
        ref = {"$ref": f"#/components/schemas/{schema_component(nested, components)}"}
        schema = {"type": "array", "items": ref} if field.many else ref
    elif isinstance(field, fields.List):
        schema = {"type": "array", "items": field_schema(field.inner, components)}
    elif isinstance(field, fields.Tuple):
        schema = {"type": "array", "prefixItems": [field_schema(f, components) for f in field.tuple_fields]}
    elif isinstance(field, fields.Dict):
        values = field.value_field
        schema = {"type": "object"}
        if values is not None:
            schema["additionalProperties"] = field_schema(values, components)
    elif isinstance(field, fields.Enum):
        schema = {"enum": [m.value if field.by_value else m.name for m in field.enum]}
    else:
        schema = next((dict(s) for cls, s in _SIMPLE if isinstance(field, cls)), {})
    for validator in field.validators:
        schema.update(_validator_schema(validator, schema.get("type")))
    kind = schema.get("type")
    if field.allow_none and isinstance(kind, str):
        schema = {**schema, "type": [kind, "null"]}
    description = field.metadata.get("description")
    if description:
        schema["description"] = description
    return schema


def _validator_schema(validator: Any, kind: Any) -> dict[str, Any]:
    if isinstance(validator, validate.Range):
        out: dict[str, Any] = {}
        if validator.min is not None:
            out["minimum" if validator.min_inclusive else "exclusiveMinimum"] = validator.min
        if validator.max is not None:
            out["maximum" if validator.max_inclusive else "exclusiveMaximum"] = validator.max
        return out
    if isinstance(validator, validate.Length):
        prefix = "Items" if kind == "array" else "Length"
        if validator.equal is not None:
            return {f"min{prefix}": validator.equal, f"max{prefix}": validator.equal}
        sizes: dict[str, Any] = {}
        if validator.min is not None:
            sizes[f"min{prefix}"] = validator.min
        if validator.max is not None:
            sizes[f"max{prefix}"] = validator.max
        return sizes
    if isinstance(validator, validate.OneOf):
        return {"enum": list(validator.choices)}
    if isinstance(validator, validate.Regexp):
        return {"pattern": validator.regex.pattern}
    return {}


def schema_component(schema: Schema, components: dict[str, Any]) -> str:
    """Add ``schema`` (and what it nests) to ``components``; its component name."""
    name = type(schema).__name__.removesuffix("Schema") or "Schema"
    if name in components:
        return name
    components[name] = {}  # placeholder first, so a schema that nests itself terminates
    properties = {}
    required = []
    for field_name, field in schema.fields.items():
        if field.load_only and field.dump_only:
            continue
        key = field.data_key or field_name
        properties[key] = field_schema(field, components)
        if field.required:
            required.append(key)
    body: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        body["required"] = required
    components[name] = body
    return name


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """A Flask rule as an OpenAPI path, and its parameters."""
    params = []

    def replace(match: re.Match[str]) -> str:
        converter, name = match.group(1), match.group(2)
        kind = {"int": "integer", "float": "number"}.get(converter or "", "string")
        schema: dict[str, Any] = {"type": kind}
        if converter == "uuid":
            schema["format"] = "uuid"
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", replace, rule), params


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _job(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}},
    }


def _operation(route: RouteSpec, state: AppState, components: dict[str, Any], params: list[Any]) -> dict[str, Any]:
    spec = state.registry.get_handler(route.job_name)
    func_doc = (spec.func.__doc__ or "").strip()
    operation: dict[str, Any] = {
        "operationId": route.endpoint.replace(".", "_"),
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
        "responses": {
            "202": {
                **_job("Accepted: the job record; poll the Location header's URL."),
                "headers": {
                    "Location": {"schema": {"type": "string"}, "description": "The job details URL."},
                    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds before polling."},
                },
            },
            "200": _job("An idempotent resubmit of a finished job."),
            "400": _problem("Malformed JSON, a body that is not an object, or a bad request id."),
            "409": _problem("The request id belongs to a job of another endpoint."),
            "503": _problem("Too many pending jobs, or the job store is unavailable."),
        },
    }
    if func_doc:
        operation["description"] = func_doc
    if route.takes_body(spec):
        body_schema: dict[str, Any] = {}
        if spec.request_schema is not None:
            body_schema = {"$ref": f"#/components/schemas/{schema_component(spec.request_schema, components)}"}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
        operation["responses"].update(
            {
                "413": _problem("The body is larger than ASYNCENDPOINTS_MAX_PAYLOAD_BYTES."),
                "415": _problem("The body is not JSON."),
                "422": _problem("The body failed validation; 'errors' has the messages for each field."),
            }
        )
    if spec.response_schema is not None:
        name = schema_component(spec.response_schema, components)
        operation["x-job-result"] = {"$ref": f"#/components/schemas/{name}"}
    return operation


def build_document(state: AppState, title: str) -> dict[str, Any]:
    """The OpenAPI document for the app that ``state`` belongs to."""
    components: dict[str, Any] = {
        "Job": JOB_SCHEMA,
        "JobError": JOB_ERROR_SCHEMA,
        "ExceptionInfo": EXCEPTION_SCHEMA,
        "Problem": PROBLEM_SCHEMA,
    }
    paths: dict[str, Any] = {}
    for route in state.registry.routes:
        path, params = _path(route.rule)
        operation = _operation(route, state, components, params)
        for method in route.methods:
            paths.setdefault(path, {})[method.lower()] = {
                **operation,
                "operationId": f"{operation['operationId']}_{method.lower()}",
            }
    job_path, job_params = _path(state.settings.job_details_url)
    paths[job_path] = {
        "get": {
            "operationId": "asyncendpoints_get_job",
            "summary": "Read a job",
            "tags": ["jobs"],
            "parameters": [
                *job_params,
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "description": "Long-poll: wait up to this many seconds for the job to finish.",
                    "schema": {"type": "number", "minimum": 0},
                },
            ],
            "responses": {
                "200": _job("The job record."),
                "404": _problem("No such job."),
                "503": _problem("The job store is unavailable."),
            },
        },
        "delete": {
            "operationId": "asyncendpoints_cancel_job",
            "summary": "Cancel a job",
            "tags": ["jobs"],
            "parameters": job_params,
            "responses": {
                "200": _job("Canceled (it was queued or scheduled)."),
                "202": _job(
                    "Cancel requested: the running handler is told to stop, and the job ends Canceled "
                    "whatever its attempt does next."
                ),
                "404": _problem("No such job."),
                "409": _problem("The job has already finished."),
                "503": _problem("The job store is unavailable."),
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0"},
        "paths": paths,
        "components": {"schemas": components},
    }


def openapi_document(state: AppState, title: str) -> Response:
    """The OpenAPI document of the app's async endpoints and job routes."""
    return Response(json.dumps(build_document(state, title), ensure_ascii=False), mimetype=JSON_MIMETYPE)
