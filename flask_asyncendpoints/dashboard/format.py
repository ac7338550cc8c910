"""How the dashboard writes values: timestamps, durations, ages and JSON, as template filters.

Every filter answers plain text; Jinja escapes it when it is written into a page.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from typing import Any

from ..jobs import JobStatus

#: How a status is named on the pages.
STATUS_LABELS = {
    JobStatus.QUEUED: "Queued",
    JobStatus.SCHEDULED: "Scheduled",
    JobStatus.IN_PROGRESS: "In progress",
    JobStatus.COMPLETED: "Completed",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELED: "Canceled",
}

#: The longest JSON text (payload, result) written into a page, in characters; longer is cut.
MAX_JSON_CHARS = 100_000


def timestamp(value: datetime | None) -> str:
    """``2026-01-01 12:00:05 UTC`` (to the second), or an em dash for ``None``."""
    if value is None:
        return "—"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def timestamp_epoch(value: float) -> str:
    """:func:`timestamp` of epoch seconds."""
    return timestamp(datetime.fromtimestamp(value, timezone.utc))


def status_label(status: JobStatus) -> str:
    """``In progress`` for ``InProgress``; the other statuses as they are."""
    return STATUS_LABELS[status]


def iso(value: datetime | None) -> str:
    """ISO 8601 for a ``<time datetime=…>`` attribute; empty for ``None``."""
    return value.astimezone(timezone.utc).isoformat(timespec="seconds") if value is not None else ""


def duration(seconds: float | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 05 s``, ``3 h 02 min``, ``2 d 04 h``; an em dash for ``None``."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{sign}{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{sign}{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{sign}{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{sign}{whole // 86400} d {whole % 86400 // 3600:02d} h"


def age(value: datetime | None, now: float | None = None) -> str:
    """How long ago ``value`` was, as :func:`duration` writes it (``in …`` for a future time)."""
    if value is None:
        return "—"
    delta = (now if now is not None else time.time()) - value.timestamp()
    return f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"


def between(start: datetime | None, end: datetime | None) -> str:
    """The :func:`duration` from ``start`` to ``end``; an em dash when either is missing."""
    if start is None or end is None:
        return "—"
    return duration((end - start).total_seconds())


def pretty_json(value: Any) -> str:
    """Indented JSON, cut at :data:`MAX_JSON_CHARS` with a note saying so."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > MAX_JSON_CHARS:
        text = text[:MAX_JSON_CHARS] + f"\n… ({len(text) - MAX_JSON_CHARS} more characters not shown)"
    return text


def percent(fraction: float | None) -> str:
    """``42 %`` for ``0.42``."""
    if fraction is None or not math.isfinite(fraction):
        return "—"
    return f"{fraction * 100:.0f} %"
