"""Checks shared by every way a job is submitted: its priority, and when it becomes due.

The Python API (:meth:`~flask_asyncendpoints.AsyncEndpoints.submit`) and the HTTP submit (a route's
``priority=`` and ``delay=``) read them the same way here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .errors import ConfigurationError

#: The priorities a job may have (higher runs first). Wide enough for any scheme, narrow enough for
#: every store to order them exactly.
MIN_PRIORITY = -1_000_000
MAX_PRIORITY = 1_000_000


def check_priority(value: Any) -> int:
    """``value`` as a job priority.

    :raises ValueError: when it is not a whole number from :data:`MIN_PRIORITY` to :data:`MAX_PRIORITY`.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(
            f"A job's priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY} "
            f"(higher runs first), not {value!r}."
        )
    return value


def check_delay(value: Any) -> float:
    """``value`` as a delay in seconds.

    :raises ValueError: when it is not a finite number ≥ 0.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"A job's delay must be a number of seconds ≥ 0, not {value!r}.")
    return float(value)


def due_at(
    delay: float | None = None, eta: datetime | None = None, *, clock: Callable[[], float] | None = None
) -> float | None:
    """When a job submitted now becomes due, in epoch seconds; ``None`` for at once.

    :param delay: seconds from now.
    :param eta: the moment, a timezone-aware :class:`~datetime.datetime`.
    :param clock: the current time (default: this machine's clock, ``time.time``).
    :raises ValueError: when both are given, the delay is negative or the moment has no time zone.
    """
    if delay is not None and eta is not None:
        raise ValueError("Give a job either a delay (seconds) or an eta (a datetime), not both.")
    if eta is not None:
        if not isinstance(eta, datetime):
            raise ValueError(f"eta must be a datetime, not {type(eta).__name__}.")
        if eta.tzinfo is None or eta.utcoffset() is None:
            raise ValueError(
                "eta must be timezone-aware, e.g. datetime(2026, 1, 1, 3, 0, tzinfo=timezone.utc): "
                "a naive datetime does not say which 3 o'clock it means."
            )
        return eta.timestamp()
    if delay is None:
        return None
    seconds = check_delay(delay)
    if seconds <= 0:
        return None
    return (clock() if clock is not None else time.time()) + seconds


def route_option(check: Callable[[Any], Any], value: Any) -> Any:
    """``check(value)`` for a route's ``priority=`` or ``delay=``, as a configuration error.

    :raises ConfigurationError: when the check refuses the value.
    """
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigurationError(f"{exc} Give the route a number, or a function of the request body.") from None
