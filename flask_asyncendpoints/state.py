"""The per-app state: what the extension keeps for each app in ``app.extensions["asyncendpoints"]``.

The views, the CLI and the gunicorn hooks work from an :class:`AppState` alone (settings, store,
worker and the extension's :class:`~flask_asyncendpoints.registry.Registry`), so none of them
imports the extension.
"""

from __future__ import annotations

import atexit
import math
import os
import signal
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from flask import Flask, current_app, request

from . import submitting
from .config import QueuePlan, Settings
from .errors import ConfigurationError
from .events import JobEvent, emit
from .handlers import HandlerSpec
from .jobs import DEFAULT_QUEUE, Job, JobPayload
from .registry import Registry
from .schedules import Schedule
from .stores import CancelResult, MemoryStore, Store
from .submitting import CheckedPayload
from .worker import Worker, logger

#: Where the state lives in ``app.extensions``.
EXTENSION_KEY = "asyncendpoints"

#: The error for an app without the extension, wherever it is noticed.
NOT_INITIALIZED = "flask-asyncendpoints is not initialized on this app. Did you forget to call init_app()?"


#: Batches one immediate-mode submit runs at most (a handler that submits a job each run would never end).
IMMEDIATE_MAX_BATCHES = 1000


def app_state(app: Flask) -> AppState | None:
    """The app's state, or ``None`` when the extension is not bound to it."""
    state = app.extensions.get(EXTENSION_KEY)
    return state if isinstance(state, AppState) else None


class AppState:
    """Everything the extension keeps for one app.

    :param registry: the handlers, routes and hooks of the extension object bound to the app.
    :param settings: the app's settings, read from its config.
    :param store: the app's job store.
    """

    def __init__(self, registry: Registry, settings: Settings, store: Store) -> None:
        self.registry = registry
        self.settings = settings
        self.store = store
        self.worker: Worker | None = None
        self.lock = threading.Lock()
        #: Seconds a client should wait before polling a job that is not finished.
        self.retry_after = max(1, math.ceil(settings.poll_interval))
        #: ``url_for`` the job route, with a placeholder id, by script root (see ``views.jobs.job_location``).
        self.location_templates: dict[str, str] = {}
        #: The blueprint of the job routes, its URL prefix, and the job details endpoint (set by ``views.register``).
        self.blueprint_name = "asyncendpoints"
        self.url_prefix = ""
        self.job_endpoint = "asyncendpoints.job"
        #: Recurring jobs from ``ASYNCENDPOINTS_SCHEDULES``, by name.
        self.config_schedules: dict[str, Schedule] = {}
        for entry in settings.schedules:
            schedule = Schedule.from_config(entry)
            if schedule.name in self.config_schedules or schedule.name in registry.schedules:
                raise ConfigurationError(
                    f"ASYNCENDPOINTS_SCHEDULES: the schedule {schedule.name!r} is defined twice; "
                    "give each its own name."
                )
            self.config_schedules[schedule.name] = schedule

    @property
    def schedules(self) -> list[Schedule]:
        """Every recurring job of the app: those of ``ae.schedule()``, then those of the config."""
        return [*self.registry.schedules.values(), *self.config_schedules.values()]

    def worker_queues(self) -> QueuePlan:
        """The queues this app's workers serve: ``ASYNCENDPOINTS_QUEUES``, else every queue that a
        handler or schedule names, ``default`` first and the others by name, with equal weights."""
        if self.settings.queues is not None:
            return self.settings.queues
        named = {spec.queue for spec in self.registry.handlers.values()}
        named.update(s.queue for s in self.schedules if s.queue is not None)
        named.discard(DEFAULT_QUEUE)
        names = (DEFAULT_QUEUE, *sorted(named))
        return QueuePlan(names, tuple(1.0 for _ in names) if len(names) > 1 else None)

    def build_payload(
        self,
        body: Any,
        headers: Iterable[tuple[str, str]],
        route_params: dict[str, Any],
        query_params: dict[str, list[str]],
        owner: str | None,
    ) -> CheckedPayload:
        """The payload a job is stored with, checked (:func:`~flask_asyncendpoints.submitting.build_payload`
        with this app's settings: the one builder every submit goes through).

        :param body: the request body as sent (JSON data), not yet validated.
        :param headers: the request headers, redacted ones included (they are dropped).
        :param route_params: the URL rule's variables, as JSON.
        :param query_params: the query string, every value of each name.
        :param owner: the owner key the job is bound to, or ``None``.
        :returns: the payload and its size as stored.
        :raises ~flask_asyncendpoints.errors.InvalidPayload: naming the first part that cannot be stored.
        """
        return submitting.build_payload(self.settings, body, headers, route_params, query_params, owner)

    def store_job(
        self,
        spec: HandlerSpec,
        job_id: str,
        payload: JobPayload,
        *,
        sender: Flask,
        priority: int = 0,
        due: float | None = None,
    ) -> tuple[Job, bool]:
        """Store a new job for ``spec``, in its handler's queue, with a payload from :meth:`build_payload`.

        A job created is a ``submitted`` event.

        :param spec: the handler the job is for.
        :param job_id: the new job's id (normalized); an existing job with it is returned instead.
        :param payload: what the handler will be called with.
        :param sender: the app (the sender of ``job_submitted``).
        :param priority: higher runs first among the due jobs of its queue.
        :param due: epoch seconds when it becomes due (``None``: at once).
        :returns: the job, and whether it was created (``False``: ``job_id`` named an existing job).
        :raises ~flask_asyncendpoints.stores.PendingLimitReached: at ``ASYNCENDPOINTS_MAX_PENDING_JOBS``.
        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
        """
        return submitting.store_job(
            self.store, self.settings, spec, job_id, payload, sender=sender, priority=priority, due=due
        )

    def create_job(
        self,
        spec: HandlerSpec,
        job_id: str,
        body: Any,
        headers: Iterable[tuple[str, str]],
        route_params: dict[str, Any],
        query_params: dict[str, list[str]],
        owner: str | None,
        *,
        sender: Flask,
        priority: int = 0,
        due: float | None = None,
    ) -> tuple[Job, bool]:
        """:meth:`build_payload`, then :meth:`store_job` (see them for the parameters).

        :raises ~flask_asyncendpoints.errors.InvalidPayload: when the request cannot be stored as UTF-8 JSON.
        :raises ~flask_asyncendpoints.stores.PendingLimitReached: at ``ASYNCENDPOINTS_MAX_PENDING_JOBS``.
        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
        """
        checked = self.build_payload(body, headers, route_params, query_params, owner)
        return self.store_job(spec, job_id, checked.payload, sender=sender, priority=priority, due=due)

    def cancel(self, job_id: str, *, sender: Flask) -> tuple[CancelResult, Job | None]:
        """Cancel a job (the one way both ``DELETE`` and the Python API do); a job canceled at once
        (it was waiting) is a ``canceled`` event here, a running one's is the worker's."""
        outcome, job = self.store.cancel(job_id, result_ttl=self.settings.result_ttl)
        if outcome is CancelResult.CANCELED and job is not None:
            emit(JobEvent.CANCELED, sender, job)
        return outcome, job

    def run_immediately(self, app: Flask) -> None:
        """``ASYNCENDPOINTS_IMMEDIATE``: run every due job now, in the calling thread (tests)."""
        worker = self.get_worker(app)
        for _ in range(IMMEDIATE_MAX_BATCHES):
            if worker.run_once() == 0:
                return
        current_app.logger.warning("ASYNCENDPOINTS_IMMEDIATE: jobs keep coming; the rest is left queued")

    def get_worker(self, app: Flask) -> Worker:
        """This process's worker for the app (a new one after a fork)."""
        with self.lock:
            if self.worker is None or self.worker.pid != os.getpid():
                self.worker = Worker(
                    app,
                    self.settings,
                    self.store,
                    self.registry.find_handler,
                    # Asked again on each claim turn and each look, so handlers and schedules
                    # registered after the worker was made are served too.
                    queues=self.worker_queues,
                    schedules=lambda: self.schedules,
                )
            return self.worker

    def start_worker(self, app: Flask) -> Worker:
        """Start this process's worker for the app, if it is not running yet."""
        worker = self.get_worker(app)
        with self.lock:
            if worker.started:
                return worker
            worker.start()
        atexit.register(_shutdown_at_exit, weakref.ref(worker))
        return worker

    def before_request(self) -> None:
        """Start the worker with the first request a process serves (so it runs after any fork)."""
        worker = self.worker
        if worker is not None and worker.started and worker.pid == os.getpid():
            return
        if isinstance(self.store, MemoryStore) and request.environ.get("wsgi.multiprocess"):
            current_app.logger.warning(
                "flask-asyncendpoints uses the memory store under a server with several processes: "
                "each process has its own jobs, so a poll that reaches another process answers 404. "
                "Set ASYNCENDPOINTS_STORE to a shared store: sqlite:///jobs.db on one machine, or a "
                "PostgreSQL, MySQL or Redis URL."
            )
        self.start_worker(current_app._get_current_object())  # type: ignore[attr-defined]


def _shutdown_at_exit(ref: weakref.ReferenceType[Worker]) -> None:
    """Shut the worker down as the interpreter exits (``flask run`` stopped by Ctrl+C, a script ending).

    Under Werkzeug's reloader (``flask run --debug``) the serving process is restarted on every code
    change, so it gives its jobs back at once instead of waiting for them. Elsewhere it says what
    it waits for, and a second Ctrl+C gives every job back at once.
    """
    worker = ref()
    if worker is None or worker.pid != os.getpid():
        return
    if os.environ.get("WERKZEUG_RUN_MAIN") == "true":
        worker.shutdown(timeout=0)
        return
    try:
        # In the try: a Ctrl+C pressed as soon as the message shows may land while it is still written.
        running = worker.running_jobs
        if running:
            logger.warning(
                "flask-asyncendpoints: waiting up to %g s for %d running job(s) to finish "
                "(ASYNCENDPOINTS_SHUTDOWN_TIMEOUT); press Ctrl+C again to stop now and give them back to the queue",
                worker.settings.shutdown_timeout,
                running,
            )
        worker.shutdown()
    except KeyboardInterrupt:
        if threading.current_thread() is threading.main_thread():
            # The process is going: a third Ctrl+C must not cut the release short with a traceback.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        released = worker.release_now()
        logger.warning("flask-asyncendpoints: stopped at once; %d unfinished job(s) given back to the queue", released)
