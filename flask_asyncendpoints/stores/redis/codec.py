"""Jobs as the Redis store keeps them and as its scripts answer, and back: pure functions, no client.

A job is two keys (``lua/common.lua`` lists them): its record, the text written once when it was
created, and its state hash, what has changed since. Replies come as ``bytes`` or ``str``
depending on the client's ``decode_responses``; everything here accepts both.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ...jobs import (
    AttemptOutcome,
    AttemptRecord,
    Job,
    JobError,
    JobStatus,
    LogRecord,
    Progress,
    from_timestamp,
)
from ..base import LeaseState
from ..jsontext import compact_json, decode_payload
from .keys import POINTER, priority_of

#: ``renew.lua``'s answer for each lease.
LEASE_STATES = {0: LeaseState.LOST, 1: LeaseState.HELD, 2: LeaseState.CANCEL_REQUESTED}


def script_arg(value: float | None) -> float | str:
    """A script argument for an optional number: ``''`` stands for ``None``.

    redis-py writes floats with ``repr``, so timestamps reach the script without losing precision.
    """
    return "" if value is None else float(value)


def make_record(created_at: float, max_retries: int, sort_key: str, name_json: str, payload_json: str) -> str:
    """A job's record: created at, max retries, the sort key it was queued with, its name as JSON and
    its payload JSON, tab-separated (JSON text has no raw tab, so the fields never run into each other)."""
    return f"{created_at!r}\t{max_retries}\t{sort_key}\t{name_json}\t{payload_json}"


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


def pointed_queue(record: str) -> str | None:
    """The queue a default-queue record points to, or ``None`` when it is a job's own record."""
    return record[1:] if record.startswith(POINTER) else None


@functools.lru_cache(maxsize=1024)
def parse_time(value: str) -> datetime:
    """The time an epoch-seconds field stands for."""
    # Cached (datetimes are immutable): the jobs of one claim share their start time, the results
    # of one batch their completion time.
    stamp = from_timestamp(float(value))
    assert stamp is not None
    return stamp


def _optional_time(value: str | None) -> datetime | None:
    return None if value is None or value == "" else parse_time(value)


@functools.lru_cache(maxsize=256)
def job_name(name_json: str) -> str:
    """The job name a record holds as JSON."""
    name = json.loads(name_json)
    if not isinstance(name, str) or not name:
        raise ValueError(f"not a job name: {name_json!r}")
    return name


def _progress(text: str) -> Progress:
    data = json.loads(text)
    return Progress(fraction=data["fraction"], message=data["message"], updated_at=parse_time(repr(data["updatedAt"])))


def split_record(record: str) -> tuple[str, int, str, str, str]:
    """``(createdAt, maxRetries, sort key, name JSON, payload JSON)`` of a job record.

    :raises ValueError: when the text is not a job record.
    """
    created_at, max_retries, key, name_json, payload_json = record.split("\t", 4)
    return created_at, int(max_retries), key, name_json, payload_json


def decode_job(job_id: str, queue: str, record: str, f: Mapping[str, str]) -> Job:
    """The job a record and its state hash (:func:`hash_fields`) describe; ``KeyError``,
    ``ValueError``, ``TypeError`` or ``AttributeError`` when they are not a job's."""
    created_at, max_retries, key, name_json, payload_json = split_record(record)
    progress = f.get("pg")
    return Job(
        id=job_id,
        name=job_name(name_json),
        status=JobStatus(f.get("s", "Queued")),
        retry_count=int(f.get("rc", 0)),
        max_retries=max_retries,
        created_at=parse_time(created_at),
        last_updated_at=parse_time(f.get("ua", created_at)),
        started_at=_optional_time(f.get("sa")),
        completed_at=_optional_time(f.get("da")),
        result=json.loads(f["r"]) if "r" in f else None,
        error=JobError.from_dict(json.loads(f["e"])) if f.get("e") else None,
        retry_delay_until=_optional_time(f.get("rd")),
        progress=_progress(progress) if progress else None,
        payload=decode_payload(payload_json),
        cancel_requested=f.get("cr") == "1",
        queue=queue,
        priority=priority_of(key),
    )


def claimed_job(job_id: str, queue: str, started: datetime, record: str, retry_count: str, error: str) -> Job:
    """A job as ``claim.lua`` leaves it, from its record, retryCount and error JSON (``''``: none)."""
    created_at, max_retries, key, name_json, payload_json = split_record(record)
    return Job(
        id=job_id,
        name=job_name(name_json),
        status=JobStatus.IN_PROGRESS,
        retry_count=int(retry_count),
        max_retries=max_retries,
        created_at=parse_time(created_at),
        last_updated_at=started,
        started_at=started,
        error=JobError.from_dict(json.loads(error)) if error else None,
        payload=decode_payload(payload_json),
        queue=queue,
        priority=priority_of(key),
    )


def decode_attempts(f: Mapping[str, str], limit: int) -> list[AttemptRecord]:
    """The attempt history of a state hash, oldest first, the last ``limit``.

    The history field holds every attempt that ended but a completing one, which the job's own
    fields tell (its start, its end, its worker).
    """
    records: list[AttemptRecord] = []
    for line in f.get("h", "").split("\n") if f.get("h") else ():
        number, started, finished, worker, outcome, code, message = json.loads(line)
        records.append(
            AttemptRecord(
                number=int(number),
                started_at=parse_time(repr(started)),
                finished_at=parse_time(repr(finished)),
                worker_id=str(worker),
                outcome=AttemptOutcome(outcome),
                error_code=code,
                error_message=message,
            )
        )
    if f.get("s") == JobStatus.COMPLETED.value and "da" in f:
        records.append(
            AttemptRecord(
                number=int(f.get("rc", 0)) + 1,
                started_at=parse_time(f.get("sa", f["da"])),
                finished_at=parse_time(f["da"]),
                worker_id=str(json.loads(f.get("w", '""'))),
                outcome=AttemptOutcome.COMPLETED,
            )
        )
    return records[-limit:] if limit > 0 else []


def encode_log(record: LogRecord) -> tuple[int, str]:
    """A log line as ``append_logs.lua`` takes it: its message's length in UTF-8 bytes, and its JSON."""
    return len(record.message.encode("utf-8", "surrogatepass")), compact_json(record.to_dict())


def decode_log(line: str) -> LogRecord:
    """A log line as ``append_logs.lua`` keeps it."""
    return LogRecord.from_dict(json.loads(line.partition("\t")[2]))


def error_parts(error: JobError | None) -> tuple[str, str]:
    """An attempt record's error code and message, as JSON (``null`` for none)."""
    if error is None:
        return "null", "null"
    return compact_json(error.code), compact_json(error.message)


def created_at_of(record: str) -> float:
    """The creation time (epoch seconds) a record holds."""
    return float(record.partition("\t")[0])
