"""Jobs as the Redis store keeps them and as its scripts answer, and back: pure functions, no client.

The fields of a job hash are listed in ``lua/common.lua``. Replies come as ``bytes`` or ``str``
depending on the client's ``decode_responses``; everything here accepts both.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ...jobs import Job, JobError, JobPayload, JobStatus, Progress, from_timestamp
from ..base import LeaseState

#: ``renew.lua``'s answer for each lease.
LEASE_STATES = {0: LeaseState.LOST, 1: LeaseState.HELD, 2: LeaseState.CANCEL_REQUESTED}


def script_arg(value: float | None) -> float | str:
    """A script argument for an optional number: ``''`` stands for ``None``.

    redis-py writes floats with ``repr``, so timestamps reach the script without losing precision.
    """
    return "" if value is None else float(value)


#: Compact JSON. Made once: json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def compact_json(value: Any) -> str:
    return _ENCODER.encode(value)


def encode_payload(payload: JobPayload) -> str:
    # Empty members are left out (JobPayload.from_dict fills them in) to keep small jobs small.
    data = payload.to_dict()
    for key in ("headers", "routeParams", "queryParams"):
        if not data[key]:
            del data[key]
    if data["body"] is None:
        del data["body"]
    return compact_json(data)


def encode_error(error: JobError) -> str:
    # Tracebacks are always stored; whether they are shown is decided when the job is rendered.
    return compact_json(error.to_record())


def as_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def hash_fields(raw: Sequence[Any] | Mapping[Any, Any]) -> dict[str, str]:
    """An ``HGETALL`` reply (flat, or a map from a RESP3 connection) as a dict of text, whatever the
    client's ``decode_responses``."""
    if isinstance(raw, Mapping):
        return {as_text(key): as_text(value) for key, value in raw.items()}
    pairs = iter(raw)
    if raw and isinstance(raw[0], bytes):  # on the worker's hot path: no per-item type checks
        return {key.decode(): value.decode() for key, value in zip(pairs, pairs, strict=True)}
    return {as_text(key): as_text(value) for key, value in zip(pairs, pairs, strict=True)}


@functools.lru_cache(maxsize=1024)
def parse_time(value: str) -> datetime:
    """The time an epoch-seconds field stands for."""
    # Cached (datetimes are immutable): the jobs of one claim share their start time, the results
    # of one batch their completion time.
    stamp = from_timestamp(float(value))
    assert stamp is not None
    return stamp


def _optional_time(value: str | None) -> datetime | None:
    return None if value is None else parse_time(value)


def _progress(text: str) -> Progress:
    data = json.loads(text)
    return Progress(fraction=data["fraction"], message=data["message"], updated_at=parse_time(data["updatedAt"]))


def completed_job(claimed: Job, result: Any, reply: Sequence[Any]) -> Job:
    """The job ``claimed`` as ``complete_many.lua`` left it, from its reply for that job."""
    stamp = parse_time(as_text(reply[0]))
    progress = as_text(reply[1])
    return claimed.replace(
        status=JobStatus.COMPLETED,
        result=result,
        error=None,
        completed_at=stamp,
        last_updated_at=stamp,
        progress=_progress(progress) if progress else None,
        cancel_requested=as_text(reply[2]) == "1",
    )


def claimed_job(job_id: str, started: datetime, fields: Sequence[str]) -> Job:
    """A job as ``claim.lua`` leaves it, from its reply: name, retryCount, maxRetries, createdAt,
    payload JSON and error JSON (``''``: none)."""
    name, retry_count, max_retries, created_at, payload, error = fields
    if not name:
        raise ValueError("the job has no name")
    return Job(
        id=job_id,
        name=name,
        status=JobStatus.IN_PROGRESS,
        retry_count=int(retry_count),
        max_retries=int(max_retries),
        created_at=parse_time(created_at),
        last_updated_at=started,
        started_at=started,
        error=JobError.from_dict(json.loads(error)) if error else None,
        payload=JobPayload.from_dict(json.loads(payload)),
    )


def decode_job(job_id: str, f: Mapping[str, str]) -> Job:
    """The job a whole job hash (:func:`hash_fields`) describes; ``KeyError``, ``ValueError``,
    ``TypeError`` or ``AttributeError`` when the hash is not a job's."""
    progress = _progress(f["pg"]) if "pg" in f else None
    return Job(
        id=job_id,
        name=f["n"],
        status=JobStatus(f["s"]),
        retry_count=int(f["rc"]),
        max_retries=int(f["mr"]),
        created_at=parse_time(f["ca"]),
        last_updated_at=parse_time(f["ua"]),
        started_at=_optional_time(f.get("sa")),
        completed_at=_optional_time(f.get("da")),
        result=json.loads(f["r"]) if "r" in f else None,
        error=JobError.from_dict(json.loads(f["e"])) if "e" in f else None,
        retry_delay_until=_optional_time(f.get("rd")),
        progress=progress,
        payload=JobPayload.from_dict(json.loads(f.get("p", "{}"))),
        cancel_requested=f.get("cr") == "1",
    )
