"""The Python API of the extension object: submit and schedule jobs, read and cancel them, reach each app's parts.

A base class of :class:`~flask_asyncendpoints.AsyncEndpoints`: it works on the per-app
:class:`~flask_asyncendpoints.state.AppState` the extension's ``init_app`` made, and on the
handlers and schedules in its :class:`~flask_asyncendpoints.registry.Registry`.
"""

from __future__ import annotations

import os
import uuid
import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from .errors import ConfigurationError, JobIdConflict
from .jobs import Job, new_job_id, parse_job_id
from .registry import Registry
from .schedules import Schedule
from .state import NOT_INITIALIZED, AppState, app_state
from .stores import CancelResult, Store
from .submitting import check_priority, due_at, store_jobs
from .views.openapi import openapi_spec
from .worker import Worker

if TYPE_CHECKING:
    from apispec import APISpec


class PythonAPI:
    """Submits, schedules, reads and cancels jobs without HTTP (see :class:`~flask_asyncendpoints.AsyncEndpoints`)."""

    _registry: Registry
    _apps: weakref.WeakSet[Flask]

    @staticmethod
    def _app(app: Flask | None) -> Flask:
        return app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]

    def _state(self, app: Flask | None = None) -> AppState:
        app = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        state = app_state(app)
        if state is None or state.registry is not self._registry:
            raise ConfigurationError(NOT_INITIALIZED)
        return state

    def submit(
        self,
        job_name: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        route_params: Mapping[str, Any] | None = None,
        query_params: Mapping[str, list[str]] | None = None,
        job_id: str | uuid.UUID | None = None,
        owner: str | None = None,
        priority: int = 0,
        delay: float | None = None,
        eta: datetime | None = None,
        app: Flask | None = None,
    ) -> Job:
        """Submit a job without HTTP (from scripts, CLI commands, other views or tests).

        The body is validated by the handler's request schema, as on the HTTP endpoint. The job
        goes to the handler's queue.

        .. code-block:: python

            ae.submit("GenerateReport", {"day": "2026-11-23"}, priority=5)
            ae.submit("SendReminder", {"user": 42}, delay=3600)  # Scheduled for an hour

        :param job_name: the handler's job name.
        :param body: the request body (JSON data).
        :param job_id: the job's id; submitting an id that exists returns that job (idempotent).
        :param owner: bind the job to this owner key (see :meth:`owner`).
        :param priority: among the due jobs of its queue, higher runs first (default 0).
        :param delay: seconds until the job is due; it is ``Scheduled`` (with ``retryDelayUntil``)
            until then.
        :param eta: when the job is due, a timezone-aware datetime (instead of ``delay``).
        :param app: the app (default: the current app).
        :returns: the stored job record.
        :raises ValueError: for a priority that is not a whole number, a negative delay, a naive
            ``eta``, or both ``delay`` and ``eta``.
        :raises ~flask_asyncendpoints.errors.InvalidPayload: when the body, a header or a parameter
            cannot be stored as UTF-8 JSON (a lone surrogate, NaN, a value that is not JSON); a
            subclass of ``ValueError``.
        :raises ~marshmallow.exceptions.ValidationError: when the body fails the request schema.
        :raises ~flask_asyncendpoints.stores.PendingLimitReached: at ``ASYNCENDPOINTS_MAX_PENDING_JOBS``.
        :raises ~flask_asyncendpoints.errors.JobIdConflict: when ``job_id`` names a job of another handler.
        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
        """
        state = self._state(app)
        spec = self._registry.get_handler(job_name)
        priority = check_priority(priority)
        due = due_at(delay, eta)
        checked = state.build_payload(
            body,
            (headers or {}).items(),
            dict(route_params or {}),
            {k: list(v) for k, v in (query_params or {}).items()},
            owner,
        )
        if spec.request_schema is not None:
            spec.request_schema.load(body)
        job, _ = state.store_job(
            spec,
            str(uuid.UUID(str(job_id))) if job_id is not None else new_job_id(),
            checked.payload,
            sender=self._app(app),
            priority=priority,
            due=due,
        )
        if job.name != job_name:
            raise JobIdConflict(f"The job id {job.id} already names a {job.name!r} job; use a new id.")
        if state.settings.immediate:
            state.run_immediately(self._app(app))
            job = state.store.get(job.id) or job
        return job

    def submit_many(
        self,
        job_name: str,
        bodies: Iterable[Any],
        *,
        owner: str | None = None,
        priority: int = 0,
        delay: float | None = None,
        eta: datetime | None = None,
        app: Flask | None = None,
    ) -> list[Job | None]:
        """Submit one job per body in one go (bulk loads, fan-out); much faster than :meth:`submit` in a loop.

        Every body is validated by the handler's request schema before any job is stored, so a
        bad body stores nothing. On Redis the jobs are created in one round trip.

        :param job_name: the handler's job name.
        :param bodies: the request body of each job.
        :param owner: bind the jobs to this owner key (see :meth:`owner`).
        :param priority: the priority of every job (as for :meth:`submit`).
        :param delay: seconds until the jobs are due (as for :meth:`submit`).
        :param eta: when the jobs are due (as for :meth:`submit`).
        :param app: the app (default: the current app).
        :returns: the stored jobs in order; ``None`` for a job refused at
            ``ASYNCENDPOINTS_MAX_PENDING_JOBS`` (nothing is stored for it).
        :raises ValueError: as :meth:`submit` does.
        :raises ~flask_asyncendpoints.errors.InvalidPayload: when a body cannot be stored as UTF-8 JSON.
        :raises ~marshmallow.exceptions.ValidationError: when a body fails the request schema.
        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
        """
        state = self._state(app)
        spec = self._registry.get_handler(job_name)
        priority = check_priority(priority)
        due = due_at(delay, eta)
        payloads = [state.build_payload(body, (), {}, {}, owner).payload for body in bodies]
        if spec.request_schema is not None:
            for payload in payloads:
                spec.request_schema.load(payload.body)
        created = store_jobs(
            state.store,
            state.settings,
            spec,
            [(new_job_id(), payload) for payload in payloads],
            sender=self._app(app),
            priority=priority,
            due=due,
        )
        jobs = [outcome[0] if outcome is not None else None for outcome in created]
        if state.settings.immediate:
            state.run_immediately(self._app(app))
            jobs = [(state.store.get(job.id) or job) if job is not None else None for job in jobs]
        return jobs

    def schedule(
        self,
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
        """Enqueue a job at each occurrence of a cron expression (a recurring job).

        .. code-block:: python

            ae.schedule("nightly-report", cron="0 3 * * *", job_name="GenerateReport",
                        payload={"kind": "daily"}, timezone="Europe/Berlin")

        Workers enqueue each occurrence exactly once, however many processes and machines run
        them: each claims the occurrence in the store, and only the winner creates the job (whose
        id is derived from the schedule and the occurrence). A missed occurrence (no worker ran at
        the time) is enqueued once when a worker starts, if it is at most ``missed_window`` seconds
        old; older ones are skipped. Needs the ``cron`` extra (``cronsim``). See :doc:`/scheduling`.

        :param name: the schedule's name, unique in the app (it keys the occurrence claims).
        :param cron: five fields, minute hour day-of-month month day-of-week (``"*/15 * * * *"``).
        :param job_name: the handler to run (default: ``name``); register it first.
        :param payload: the job's request body (JSON data), validated by the handler's request schema.
        :param queue: the queue (default: the handler's).
        :param priority: the jobs' priority (default 0).
        :param timezone: the zone the expression is read in: a tzinfo or an IANA name (default UTC).
        :param missed_window: overrides ``ASYNCENDPOINTS_SCHEDULE_MISSED_WINDOW`` (seconds).
        :returns: the schedule.
        :raises ConfigurationError: for a name already used, an unknown handler, a payload the
            handler's schema refuses, or a cron expression or time zone that does not parse.
        """
        schedule = Schedule.create(
            name,
            cron=cron,
            job_name=job_name,
            payload=payload,
            queue=queue,
            priority=priority,
            timezone=timezone,
            missed_window=missed_window,
        )
        states = [app_state(bound) for bound in list(self._apps)]
        taken = any(state is not None and name in state.config_schedules for state in states)
        if name in self._registry.schedules or taken:
            raise ConfigurationError(f"A schedule named {name!r} exists already; give each schedule its own name.")
        self._registry.check_schedule(schedule)
        self._registry.schedules[name] = schedule
        return schedule

    def get_job(self, job_id: str | uuid.UUID, *, app: Flask | None = None) -> Job | None:
        """The job with this id (any spelling of the UUID), or ``None``."""
        state = self._state(app)
        normalized = parse_job_id(job_id)
        return state.store.get(normalized) if normalized is not None else None

    def cancel(self, job_id: str | uuid.UUID, *, app: Flask | None = None) -> tuple[CancelResult, Job | None]:
        """Cancel a job: queued or scheduled ones at once, running ones by request (the handler sees it)."""
        state = self._state(app)
        normalized = parse_job_id(job_id)
        if normalized is None:
            return CancelResult.NOT_FOUND, None
        return state.cancel(normalized, sender=self._app(app))

    def openapi_spec(self, app: Flask | None = None, *, spec: APISpec | None = None) -> APISpec:
        """The app's OpenAPI document (async endpoints and job routes) as an ``apispec.APISpec``.

        Needs the ``openapi`` extra (apispec). ``.to_dict()`` gives the document; it is also served
        at ``ASYNCENDPOINTS_OPENAPI_URL`` and printed by ``flask asyncendpoints openapi``.

        .. code-block:: python

            api = flask_smorest.Api(app)
            ae.openapi_spec(app, spec=api.spec)  # the async endpoints in flask-smorest's document

        :param app: the app (default: the current app).
        :param spec: add the paths and components to this document (flask-smorest's ``api.spec``,
            or any apispec document) instead of a new one; it keeps its own title and version.
        :raises ConfigurationError: when apispec is not installed, or ``spec`` has this library's
            components already.
        """
        app = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        return openapi_spec(app, self._state(app), spec)

    def get_store(self, app: Flask | None = None) -> Store:
        """The app's job store."""
        return self._state(app).store

    def get_worker(self, app: Flask | None = None) -> Worker:
        """The app's worker in this process (not started: see :meth:`start_worker`)."""
        app = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        return self._state(app).get_worker(app)

    def start_worker(self, app: Flask | None = None) -> Worker:
        """Start the app's worker threads in this process now, rather than at the first request."""
        app = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        return self._state(app).start_worker(app)

    def shutdown(self, app: Flask | None = None, *, timeout: float | None = None) -> None:
        """Stop the app's worker in this process (see :meth:`~flask_asyncendpoints.worker.Worker.shutdown`)."""
        state = self._state(app)
        worker = state.worker
        if worker is not None and worker.pid == os.getpid():
            worker.shutdown(timeout)
