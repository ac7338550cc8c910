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
from typing import Any, NamedTuple

from flask import Flask, current_app, request

from .config import Settings
from .encoding import SURROGATE, NotJSONError, json_bytes, surrogate_in
from .errors import InvalidPayload
from .handlers import HandlerSpec
from .jobs import Job, JobPayload
from .registry import Registry
from .stores import MemoryStore, Store
from .worker import Worker, logger

#: Where the state lives in ``app.extensions``.
EXTENSION_KEY = "asyncendpoints"

#: The error for an app without the extension, wherever it is noticed.
NOT_INITIALIZED = "flask-asyncendpoints is not initialized on this app. Did you forget to call init_app()?"


#: Batches one immediate-mode submit runs at most (a handler that submits a job each run would never end).
IMMEDIATE_MAX_BATCHES = 1000


class CheckedPayload(NamedTuple):
    """A job's request as it will be stored, with its size as stored."""

    payload: JobPayload
    #: The body as stored (UTF-8 JSON), in bytes; 0 for no body.
    body_bytes: int
    #: The stored headers, route and query parameters and owner key (UTF-8 JSON), in bytes.
    context_bytes: int


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

    def max_retries_of(self, spec: HandlerSpec) -> int:
        """The handler's retries, else ``ASYNCENDPOINTS_DEFAULT_MAX_RETRIES``."""
        return spec.max_retries if spec.max_retries is not None else self.settings.default_max_retries

    def build_payload(
        self,
        body: Any,
        headers: Iterable[tuple[str, str]],
        route_params: dict[str, Any],
        query_params: dict[str, list[str]],
        owner: str | None,
    ) -> CheckedPayload:
        """The payload a job is stored with, checked (the one place both the HTTP submit and the Python API build it).

        The redacted headers are dropped here, so no caller can store them. Everything is checked to
        be storable as UTF-8 JSON here, before any store sees it: a lone surrogate that Python's
        ``json`` reads from ``"\\ud800"`` would otherwise fail in one store's encoder and be kept by
        another, to fail every answer that shows it.

        :param body: the request body as sent (JSON data), not yet validated.
        :param headers: the request headers, redacted ones included.
        :param route_params: the URL rule's variables, as JSON.
        :param query_params: the query string, every value of each name.
        :param owner: the owner key the job is bound to, or ``None``.
        :returns: the payload and its size as stored.
        :raises ~flask_asyncendpoints.errors.InvalidPayload: naming the first part that cannot be stored.
        """
        redact = self.settings.redact_headers
        kept = tuple((k, v) for k, v in headers if k.lower() not in redact)
        payload = JobPayload(
            body=body,
            headers=kept,
            route_params=route_params,
            query_params=query_params,
            owner=owner,
        )
        try:
            body_bytes = json_bytes(body, "body") if body is not None else 0
            context_bytes = (
                _headers_bytes(kept)
                + json_bytes(route_params, "route_params")
                + json_bytes(query_params, "query_params")
                + (json_bytes(owner, "the owner key") if owner is not None else 0)
            )
        except NotJSONError as exc:
            raise InvalidPayload(f"The request cannot be stored as UTF-8 JSON: {exc}.", exc.kind) from None
        return CheckedPayload(payload, body_bytes, context_bytes)

    def store_job(self, spec: HandlerSpec, job_id: str, payload: JobPayload) -> tuple[Job, bool]:
        """Store a new job for ``spec`` with a payload from :meth:`build_payload`.

        :param spec: the handler the job is for.
        :param job_id: the new job's id (normalized); an existing job with it is returned instead.
        :param payload: what the handler will be called with.
        :returns: the job, and whether it was created (``False``: ``job_id`` named an existing job).
        :raises ~flask_asyncendpoints.stores.PendingLimitReached: at ``ASYNCENDPOINTS_MAX_PENDING_JOBS``.
        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
        """
        return self.store.create(
            job_id,
            spec.name,
            payload,
            max_retries=self.max_retries_of(spec),
            max_pending=self.settings.max_pending_jobs,
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
    ) -> tuple[Job, bool]:
        """:meth:`build_payload`, then :meth:`store_job`.

        :raises ~flask_asyncendpoints.errors.InvalidPayload: when the request cannot be stored as UTF-8 JSON.
        :raises ~flask_asyncendpoints.stores.PendingLimitReached: at ``ASYNCENDPOINTS_MAX_PENDING_JOBS``.
        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
        """
        checked = self.build_payload(body, headers, route_params, query_params, owner)
        return self.store_job(spec, job_id, checked.payload)

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
                self.worker = Worker(app, self.settings, self.store, self.registry.find_handler)
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


def _headers_bytes(headers: tuple[tuple[str, str], ...]) -> int:
    """The headers' size as stored (a JSON list of ``[name, value]`` pairs); each one named when it cannot be."""
    for name, value in headers:
        for part in (name, value):
            bad = surrogate_in(part) if isinstance(part, str) else None
            if bad is not None:
                raise NotJSONError(f"the header {name!a} holds a lone UTF-16 surrogate ({bad!a})", SURROGATE)
    return json_bytes([list(pair) for pair in headers], "headers")
