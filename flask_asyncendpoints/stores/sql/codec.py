"""Rows of the jobs table to :class:`~flask_asyncendpoints.jobs.Job` and back: pure functions, no connection.

JSON columns hold compact JSON text. Progress is kept with its time in epoch seconds, so it reads
back to the very same datetime; attempt records and log lines are lists of their ``to_dict()`` forms.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column

from ...jobs import AttemptRecord, Job, JobError, JobStatus, LogRecord, Progress, from_timestamp
from .. import jsontext
from ..jsontext import compact_json, decode_payload
from .schema import Tables


def job_columns(tables: Tables) -> list[Column[Any]]:
    """The columns :func:`job_from_row` reads (everything but the history and the log)."""
    c = tables.jobs.c
    return [
        c.id,
        c.name,
        c.queue,
        c.priority,
        c.status,
        c.retry_count,
        c.max_retries,
        c.created_at,
        c.last_updated_at,
        c.started_at,
        c.completed_at,
        c.retry_delay_until,
        c.result,
        c.error,
        c.progress,
        c.payload,
        c.cancel_requested,
    ]


@functools.lru_cache(maxsize=1024)
def stamp(value: float) -> datetime:
    """The datetime of an epoch-seconds column."""
    # Cached (datetimes are immutable): the jobs of one claim share their start time, and so on.
    result = from_timestamp(float(value))
    assert result is not None
    return result


def optional_stamp(value: float | None) -> datetime | None:
    return None if value is None else stamp(value)


def job_from_row(row: Mapping[str, Any]) -> Job:
    """The job a row of :func:`job_columns` describes; ``KeyError``, ``ValueError`` or ``TypeError`` when it
    is not a job's."""
    return Job(
        id=row["id"],
        name=row["name"],
        status=JobStatus(row["status"]),
        retry_count=int(row["retry_count"]),
        max_retries=int(row["max_retries"]),
        created_at=stamp(row["created_at"]),
        last_updated_at=stamp(row["last_updated_at"]),
        started_at=optional_stamp(row["started_at"]),
        completed_at=optional_stamp(row["completed_at"]),
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=decode_error(row["error"]),
        retry_delay_until=optional_stamp(row["retry_delay_until"]),
        progress=decode_progress(row["progress"]),
        payload=decode_payload(row["payload"]),
        cancel_requested=bool(row["cancel_requested"]),
        queue=row["queue"],
        priority=int(row["priority"]),
    )


def encode_error(error: JobError | None) -> str | None:
    return None if error is None else jsontext.encode_error(error)


def decode_error(text: str | None) -> JobError | None:
    return None if text is None else JobError.from_dict(json.loads(text))


def encode_progress(fraction: float, message: str | None, at: float) -> str:
    return compact_json({"fraction": fraction, "message": message, "at": at})


def decode_progress(text: str | None) -> Progress | None:
    if text is None:
        return None
    data = json.loads(text)
    return Progress(fraction=data["fraction"], message=data["message"], updated_at=stamp(data["at"]))


def decode_attempts(text: str | None) -> list[AttemptRecord]:
    return [AttemptRecord.from_dict(item) for item in json.loads(text)] if text else []


def append_attempt(text: str | None, record: AttemptRecord, limit: int) -> str | None:
    """The stored history ``text`` with ``record`` added and only the last ``limit`` records kept."""
    if limit <= 0:
        return None
    items: list[Any] = json.loads(text) if text else []
    items.append(record.to_dict())
    return compact_json(items[-limit:])


def decode_logs(text: str | None) -> list[LogRecord]:
    return [LogRecord.from_dict(item) for item in json.loads(text)] if text else []


def append_logs(text: str | None, records: Sequence[LogRecord], max_lines: int, max_bytes: int) -> str | None:
    """The stored log ``text`` with ``records`` added, then the oldest lines dropped until at most
    ``max_lines`` lines and ``max_bytes`` bytes of messages (UTF-8) are left."""
    items: list[dict[str, Any]] = json.loads(text) if text else []
    items.extend(record.to_dict() for record in records)
    sizes = [len(item["message"].encode("utf-8", "surrogatepass")) for item in items]
    total = sum(sizes)
    start = max(0, len(items) - max(0, max_lines))
    total -= sum(sizes[:start])
    while start < len(items) and total > max_bytes:
        total -= sizes[start]
        start += 1
    kept = items[start:]
    return compact_json(kept) if kept else None
