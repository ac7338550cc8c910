"""Recurring jobs: a cron expression, the job it enqueues, and when its occurrences fall.

A :class:`Schedule` is plain data plus the cron arithmetic; the worker's scheduler
(:mod:`flask_asyncendpoints.worker.scheduler`) decides when to enqueue an occurrence and claims it
in the store, so each occurrence is enqueued once across every process.

Cron expressions are read by `cronsim <https://pypi.org/project/cronsim/>`_, installed with the
``cron`` extra (``pip install flask-asyncendpoints[cron]``): five fields (minute, hour, day of
month, month, day of week) or six (seconds first), with ``L``, ``#`` and names such as ``MON``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from .errors import ConfigurationError

#: Namespace of the job ids of occurrences: ``uuid5(namespace, "<schedule>\n<epoch seconds>")``.
OCCURRENCE_NAMESPACE = uuid.UUID("0c6f1d9e-3b7a-5e42-8a1d-6f4b2c9e7d31")

#: The keys a schedule given in ``ASYNCENDPOINTS_SCHEDULES`` may have.
SCHEDULE_KEYS = frozenset({"name", "cron", "job_name", "payload", "queue", "priority", "timezone", "missed_window"})


def _cronsim() -> Any:
    try:
        import cronsim
    except ImportError:  # pragma: no cover - the test extra installs it
        raise ConfigurationError(
            "Recurring jobs need a cron parser: pip install 'flask-asyncendpoints[cron]' (it installs cronsim)."
        ) from None
    return cronsim


def _zone(value: Any, name: str) -> tzinfo:
    if value is None:
        return timezone.utc
    if isinstance(value, tzinfo):
        return value
    if isinstance(value, str):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if value.upper() == "UTC":
            return timezone.utc
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise ConfigurationError(
        f"The schedule {name!r} has the timezone {value!r}; give a tzinfo or an IANA name such as 'Europe/Berlin'."
    )


@dataclass(frozen=True)
class Schedule:
    """A recurring job: enqueue a ``job_name`` job with ``payload`` at each occurrence of ``cron``.

    Build one with :meth:`create` (or :meth:`~flask_asyncendpoints.AsyncEndpoints.schedule`), which
    checks every field.
    """

    name: str
    cron: str
    job_name: str
    payload: Any = None
    #: ``None``: the handler's queue.
    queue: str | None = None
    priority: int = 0
    timezone: tzinfo = timezone.utc
    #: How late a missed occurrence may still be enqueued (seconds); ``None``:
    #: ``ASYNCENDPOINTS_SCHEDULE_MISSED_WINDOW``.
    missed_window: float | None = None

    @classmethod
    def create(
        cls,
        name: str,
        *,
        cron: str,
        job_name: str | None = None,
        payload: Any = None,
        queue: str | None = None,
        priority: int = 0,
        timezone: tzinfo | str | None = None,
        missed_window: float | None = None,
    ) -> Schedule:
        """Check the fields and build the schedule.

        :raises ConfigurationError: for an empty name, a cron expression that does not parse, an
            unknown time zone, a priority that is not a whole number or a negative window.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError("A schedule needs a non-empty name, e.g. ae.schedule('nightly-report', ...).")
        if not isinstance(cron, str) or not cron.strip():
            raise ConfigurationError(f"The schedule {name!r} needs a cron expression, e.g. cron='0 3 * * *'.")
        if job_name is not None and (not isinstance(job_name, str) or not job_name):
            raise ConfigurationError(f"The schedule {name!r} has the job name {job_name!r}; give a handler's name.")
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise ConfigurationError(f"The schedule {name!r} has the queue {queue!r}; give a non-empty name.")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigurationError(f"The schedule {name!r} has the priority {priority!r}; give a whole number.")
        if missed_window is not None and (
            isinstance(missed_window, bool)
            or not isinstance(missed_window, (int, float))
            or not math.isfinite(missed_window)
            or missed_window < 0
        ):
            raise ConfigurationError(
                f"The schedule {name!r} has missed_window={missed_window!r}; give a number of seconds ≥ 0."
            )
        zone = _zone(timezone, name)
        schedule = cls(
            name=name,
            cron=" ".join(cron.split()),
            job_name=job_name or name,
            payload=payload,
            queue=queue,
            priority=priority,
            timezone=zone,
            missed_window=float(missed_window) if missed_window is not None else None,
        )
        try:
            schedule.next_after(datetime(2000, 1, 1, tzinfo=zone).timestamp())
        except _cronsim().CronSimError as exc:
            raise ConfigurationError(
                f"The schedule {name!r} has the cron expression {cron!r}, which does not parse ({exc}). "
                "Use five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *'."
            ) from None
        return schedule

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> Schedule:
        """Build a schedule from one dict of ``ASYNCENDPOINTS_SCHEDULES`` (the keys of :meth:`create`).

        :raises ConfigurationError: for an unknown or missing key, or a wrong value.
        """
        unknown = set(entry) - SCHEDULE_KEYS
        if unknown:
            raise ConfigurationError(
                f"ASYNCENDPOINTS_SCHEDULES: unknown key(s) {', '.join(sorted(map(str, unknown)))} in {dict(entry)!r}; "
                f"a schedule takes {', '.join(sorted(SCHEDULE_KEYS))}."
            )
        if "name" not in entry or "cron" not in entry:
            raise ConfigurationError(
                f"ASYNCENDPOINTS_SCHEDULES: each schedule needs a 'name' and a 'cron', not {dict(entry)!r}."
            )
        options = dict(entry)
        return cls.create(options.pop("name"), **options)

    def _at(self, epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, self.timezone)

    def next_after(self, epoch: float) -> float:
        """The first occurrence strictly after ``epoch`` (epoch seconds)."""
        when: datetime = next(_cronsim().CronSim(self.cron, self._at(math.floor(epoch))))
        return when.timestamp()

    def latest(self, epoch: float) -> float | None:
        """The last occurrence at or before ``epoch`` (``None`` if there is none)."""
        start = self._at(math.floor(epoch)) + timedelta(seconds=1)
        try:
            when: datetime = next(_cronsim().CronSim(self.cron, start, reverse=True))
        except StopIteration:
            return None
        return when.timestamp()

    def occurrence_id(self, at: float) -> str:
        """The id of the job of the occurrence at ``at``: the same in every process, so even two
        processes that both got past the claim would create one job."""
        return str(uuid.uuid5(OCCURRENCE_NAMESPACE, f"{self.name}\n{math.floor(at)}"))

    def describe(self) -> str:
        """The cron expression in words (``"At 03:00 every day"``), when the parser can say it."""
        try:
            text: str = _cronsim().CronSim(self.cron, datetime.now(self.timezone)).explain()
        except Exception:  # explaining is a nicety; never let it break a listing
            return self.cron
        return text
