"""Recurring jobs: the maintenance thread's step that enqueues each occurrence once, everywhere.

Every worker process runs this for every schedule, so the occurrence is enqueued even when some
workers are down. Exactly one of them enqueues it: the store's ``claim_occurrence(name, at)``
answers ``True`` to one caller per occurrence across every process, and the job it then creates has
an id derived from the schedule and the occurrence, so even a second creator would find the first
job rather than make another.

Missed occurrences (no worker ran when they fell due): when a worker starts, it looks at the latest
occurrence of each schedule; if it is no older than the schedule's missed window
(``ASYNCENDPOINTS_SCHEDULE_MISSED_WINDOW``, one hour by default) and nobody claimed it, it is
enqueued once. Older ones, and every occurrence before the latest, are skipped. While a worker runs
it enqueues each occurrence as it falls due; if its maintenance thread could not run for a while, it
enqueues the latest occurrence then and skips the ones before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from flask import Flask

from ..config import Settings
from ..errors import InvalidPayload, StoreError
from ..handlers import HandlerSpec
from ..jobs import Job
from ..schedules import Schedule
from ..stores import PendingLimitReached, Store
from ..submitting import build_payload, store_job
from .ledger import StoreHealth, logger

#: Seconds between tries to create the job of an occurrence this process claimed but could not save.
UNSAVED_RETRY = 5.0


class Scheduler:
    """Enqueues the occurrences of recurring jobs as they fall due.

    :param app: the Flask app (the sender of ``job_submitted``).
    :param settings: the app's extension settings.
    :param store: the app's job store.
    :param schedules: the app's schedules, or a function that returns them (asked on each look,
        so schedules added after the worker was made count).
    :param find_handler: returns the handler registered under a job name, or ``None``.
    :param health: the worker's outage tracker, told of each store call that goes through (the
        maintenance thread reports the ones that fail).
    """

    def __init__(
        self,
        app: Flask,
        settings: Settings,
        store: Store,
        schedules: Sequence[Schedule] | Callable[[], Sequence[Schedule]],
        find_handler: Callable[[str], HandlerSpec | None],
        health: StoreHealth,
    ) -> None:
        self.app = app
        self.settings = settings
        self.store = store
        self.health = health
        self._source = schedules if callable(schedules) else (lambda: tuple(schedules))
        self.find_handler = find_handler
        #: The next occurrence to look at, per schedule name; missing until the first look.
        self._next: dict[str, float] = {}
        #: Occurrences claimed here whose job could not be created yet (the store failed in
        #: between, or the queue was full); tried again from ``_retry_at`` on.
        self._unsaved: list[tuple[Schedule, float]] = []
        self._retry_at = 0.0

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        """The schedules as they stand now."""
        return tuple(self._source())

    def next_due(self) -> float | None:
        """Epoch seconds when the next look is due: the next occurrence of any schedule, now for a
        schedule not looked at yet, ``None`` without schedules."""
        schedules = self.schedules
        if not schedules:
            return None
        if any(s.name not in self._next for s in schedules):
            return time.time()
        due = min(self._next[s.name] for s in schedules)
        return min(due, self._retry_at) if self._unsaved else due

    def run_due(self, now: float | None = None) -> list[Job]:
        """Enqueue every occurrence due by ``now`` that this process wins; the jobs created here.

        :param now: epoch seconds (default: this machine's clock); also passed to the store.
        :raises StoreError: when the store cannot be reached (what was not done is retried next time).
        """
        current = time.time() if now is None else now
        created: list[Job] = []
        unsaved, self._unsaved = self._unsaved, []
        for index, (waiting, occurrence) in enumerate(unsaved):
            try:
                saved = self._save(waiting, occurrence, now, created)
            except StoreError:
                self._unsaved.extend(unsaved[index:])
                raise
            if not saved:
                self._unsaved.append((waiting, occurrence))
        for schedule in self.schedules:
            planned = self._next.get(schedule.name)
            if planned is not None and current < planned:
                continue
            at = schedule.latest(current)
            following = schedule.next_after(current)
            if at is not None:
                window = schedule.missed_window
                window = self.settings.schedule_missed_window if window is None else window
                if planned is None and current - at > window:
                    logger.info(
                        "recurring job %s: skipped the occurrence of %s, missed by %.0f s (more than %g s ago)",
                        schedule.name,
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
                        current - at,
                        window,
                    )
                elif self._claim(schedule, at, now):
                    # Ours now: kept until its job exists, whatever fails in between.
                    self._unsaved.append((schedule, at))
                    self._next[schedule.name] = following
                    if self._save(schedule, at, now, created):
                        self._unsaved.remove((schedule, at))
            self._next[schedule.name] = following
        if self._unsaved:
            self._retry_at = current + UNSAVED_RETRY
        return created

    def _claim(self, schedule: Schedule, at: float, now: float | None) -> bool:
        """Whether this process won the occurrence (the store's ``claim_occurrence``)."""
        won = self.store.claim_occurrence(schedule.name, at, now=now)
        self.health.answered()
        return won

    def _save(self, schedule: Schedule, at: float, now: float | None, created: list[Job]) -> bool:
        """Create the occurrence's job (added to ``created``); ``False`` when its queue is full and it
        must wait for room (it keeps its claim, so no other process takes it meanwhile)."""
        try:
            job = self._create(schedule, at, now)
        except PendingLimitReached:
            self.health.answered()  # it answered, with a refusal
            logger.warning(
                "recurring job %s: the queue is at its pending-jobs limit; the occurrence waits for room",
                schedule.name,
            )
            return False
        if job is not None:
            created.append(job)
        return True

    def _create(self, schedule: Schedule, at: float, now: float | None) -> Job | None:
        """Create the occurrence's job; ``None`` when it existed already or its handler is gone."""
        spec = self.find_handler(schedule.job_name)
        if spec is None:
            logger.error(
                "recurring job %s: no handler is registered for %r in this process; the occurrence is dropped",
                schedule.name,
                schedule.job_name,
            )
            return None
        try:
            # The one payload builder of every submit: what it refuses no store would keep.
            payload = build_payload(self.settings, schedule.payload, (), {}, {}, None).payload
        except InvalidPayload as exc:
            logger.error("recurring job %s: %s The occurrence is dropped.", schedule.name, exc)
            return None
        job, created = store_job(
            self.store,
            self.settings,
            spec,
            schedule.occurrence_id(at),
            payload,
            sender=self.app,
            queue=schedule.queue,
            priority=schedule.priority,
            now=now,
        )
        self.health.answered()
        return job if created else None
