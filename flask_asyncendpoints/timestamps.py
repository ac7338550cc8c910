"""Timestamps as the job records hold them: timezone-aware UTC datetimes, epoch seconds in the
stores, ISO 8601 with the offset on the wire."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import overload


@overload
def from_timestamp(value: float) -> datetime: ...
@overload
def from_timestamp(value: None) -> None: ...
@overload
def from_timestamp(value: float | None) -> datetime | None: ...
def from_timestamp(value: float | None) -> datetime | None:
    """Epoch seconds to an aware UTC datetime (``None`` stays ``None``)."""
    if value is None:
        return None
    return datetime.fromtimestamp(value, timezone.utc)


def parse_isoformat(text: str) -> datetime:
    """Read a timestamp written by :func:`isoformat` (or any ISO 8601 text with an offset) as aware UTC.

    :raises ValueError: for text that is not such a timestamp.
    """
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {text!r}")
    return value.astimezone(timezone.utc)


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 with the UTC offset written out, always to the microsecond, e.g.
    ``2026-11-23T12:00:00.250000+00:00``."""
    return value.isoformat(timespec="microseconds") if value is not None else None
