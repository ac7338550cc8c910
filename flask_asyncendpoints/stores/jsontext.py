"""The JSON text of a job's parts as the Redis and SQL stores keep them: compact, UTF-8, written
once per value. (The memory store keeps the objects themselves.)"""

from __future__ import annotations

import json
from typing import Any

from ..jobs import JobError, JobPayload

#: Compact JSON. Made once: json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def compact_json(value: Any) -> str:
    return _ENCODER.encode(value)


def encode_payload(payload: JobPayload) -> str:
    # Empty members are left out (JobPayload.from_dict fills them in) to keep small jobs small.
    if not (payload.headers or payload.route_params or payload.query_params) and payload.owner is None:
        # Every job submitted from Python: the body alone, as compact_json({"body": ...}) writes it.
        return "{}" if payload.body is None else f'{{"body":{compact_json(payload.body)}}}'
    data = payload.to_dict()
    for key in ("headers", "routeParams", "queryParams"):
        if not data[key]:
            del data[key]
    if data["body"] is None:
        del data["body"]
    return compact_json(data)


def decode_payload(text: str) -> JobPayload:
    return JobPayload.from_dict(json.loads(text))


def encode_error(error: JobError) -> str:
    # Tracebacks are always stored; whether they are shown is decided when the job is rendered.
    return compact_json(error.to_record())
