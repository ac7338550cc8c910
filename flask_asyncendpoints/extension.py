"""The extension object: handler and route registration, binding to apps, the Python API.

What it registers goes in a :class:`~flask_asyncendpoints.registry.Registry`; what it keeps per app
in an :class:`~flask_asyncendpoints.state.AppState`. The views get both from the state, so they
never import this module.
"""

from __future__ import annotations

import os
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from flask import Flask, current_app
from marshmallow import Schema

from .config import Settings, set_defaults
from .errors import ConfigurationError, JobIdConflict
from .handlers import Handler, HandlerSpec
from .jobs import Job, JobPayload, parse_job_id
from .registry import AuthorizeFunc, OwnerFunc, Registry, ResponseHook, RouteSpec, Validator
from .state import EXTENSION_KEY, NOT_INITIALIZED, AppState, app_state
from .stores import CancelResult, NewJob, Store, create_store
from .dashboard import register as register_dashboard
from .views import add_route, job_rule, register
from .worker import Worker

H = TypeVar("H", bound=Handler)
F = TypeVar("F", bound=Callable[..., Any])

ALLOWED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AsyncEndpoints:
    """The flask-asyncendpoints extension.

    Register handlers with :meth:`handler`, map them to URLs with :meth:`route`, and bind to apps
    with ``AsyncEndpoints(app)`` or :meth:`init_app` in an app factory. Handlers and routes belong to
    this object and serve every app it is bound to; jobs, stores and workers belong to each app.

    :param app: bind to this app at once.
    :param store: overrides ``ASYNCENDPOINTS_STORE`` for that app: a URL, a
        :class:`~flask_asyncendpoints.stores.Store`, a ``redis.Redis`` client or a callable
        returning one.
    """

    def __init__(self, app: Flask | None = None, *, store: Any = None) -> None:
        self._registry = Registry()
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app, store=store)

    # -- binding to apps --------------------------------------------------------------------------

    def init_app(self, app: Flask, *, store: Any = None) -> None:
        """Bind the extension to ``app``: read its config, open its store, add the routes.

        The worker starts lazily, with the first request the app serves (so it runs in the process
        that serves, after any fork), unless ``ASYNCENDPOINTS_WORKER`` is false.

        :param app: the Flask app.
        :param store: overrides ``ASYNCENDPOINTS_STORE`` (see the class).
        :raises ConfigurationError: when the app is already bound or a config value is wrong.
        """
        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError(
                "flask-asyncendpoints is already initialized on this app. Call init_app() once per app "
                "(AsyncEndpoints(app) already calls it)."
            )
        set_defaults(app.config)
        settings = Settings.from_config(app.config, debug=app.debug)
        job_rule(settings.job_details_url)  # a bad URL fails before the store is opened
        state = AppState(
            self._registry,
            settings,
            create_store(store if store is not None else settings.store, key_prefix=settings.key_prefix),
        )
        app.extensions[EXTENSION_KEY] = state
        register(app, state)
        register_dashboard(app, state)
        if settings.worker:
            app.before_request(state.before_request)
        self._apps.add(app)

    def _state(self, app: Flask | None = None) -> AppState:
        app = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        state = app_state(app)
        if state is None or state.registry is not self._registry:
            raise ConfigurationError(NOT_INITIALIZED)
        return state

    # -- registration -----------------------------------------------------------------------------

    def handler(
        self,
        name: str,
        *,
        request_schema: Schema | type[Schema] | None = None,
        response_schema: Schema | type[Schema] | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated function as the handler of the job name ``name``.

        .. code-block:: python

            @ae.handler("ProcessData", request_schema=ProcessDataSchema)
            def process_data(ctx):
                return {"processedData": ctx.request["data"].upper()}

        :param name: the job name, written in each job record's ``name``.
        :param request_schema: a marshmallow schema (class or instance) that validates the request
            body on submit (``422`` on errors) and loads it into ``ctx.request`` when the job runs.
        :param response_schema: a marshmallow schema that dumps the handler's return value.
        :param max_retries: overrides ``ASYNCENDPOINTS_DEFAULT_MAX_RETRIES`` for this handler.
        :param timeout: overrides ``ASYNCENDPOINTS_JOB_TIMEOUT`` (seconds) for this handler.
        :raises ConfigurationError: when ``name`` already has a handler.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError("A handler needs a non-empty job name, e.g. @ae.handler('ProcessData').")
        if max_retries is not None and (isinstance(max_retries, bool) or max_retries < 0):
            raise ConfigurationError(f"max_retries must be a whole number ≥ 0, not {max_retries!r}.")
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"timeout must be a number of seconds > 0, not {timeout!r}.")

        def decorator(func: H) -> H:
            if name in self._registry.handlers:
                raise ConfigurationError(
                    f"A handler is already registered for the job name {name!r} "
                    f"({self._registry.handlers[name].func.__qualname__}). Give each handler its own name."
                )
            self._registry.handlers[name] = HandlerSpec(
                name=name,
                func=func,
                request_schema=_schema(request_schema),
                response_schema=_schema(response_schema),
                max_retries=max_retries,
                timeout=timeout,
            )
            return func

        return decorator

    def route(
        self,
        rule: str,
        job_name: str,
        *,
        methods: Iterable[str] = ("POST",),
        body: bool | None = None,
        validator: Validator | None = None,
        endpoint: str | None = None,
    ) -> None:
        """Map a URL to a handler: a request to ``rule`` submits a job and answers ``202``.

        :param rule: a Flask URL rule; its variables reach the handler as ``ctx.route_params``.
        :param job_name: the name the handler was registered under (register it first).
        :param methods: any of ``POST``, ``PUT``, ``PATCH``, ``DELETE``.
        :param body: whether the endpoint takes a JSON body. ``None`` (default): exactly when the
            handler has a request schema. ``True`` without a schema accepts any JSON value.
        :param validator: called with the loaded body before the job is queued; return ``None`` to
            accept, or a response (anything a view may return) to answer with instead.
        :param endpoint: the Flask endpoint name (default ``asyncendpoints.<job_name>``).
        :raises ConfigurationError: for an unknown job name or an unsupported method.
        """
        handler = self.get_handler(job_name)
        if body is False and handler.request_schema is not None:
            raise ConfigurationError(
                f"The handler {job_name!r} has a request schema, so its endpoints take a JSON body; "
                "drop body=False or the schema."
            )
        methods = tuple(m.upper() for m in methods)
        bad = [m for m in methods if m not in ALLOWED_METHODS]
        if bad or not methods:
            raise ConfigurationError(
                f"Async endpoints take POST, PUT, PATCH or DELETE, not {', '.join(bad) or 'no method'}."
            )
        spec = RouteSpec(
            rule=rule,
            job_name=job_name,
            methods=methods,
            endpoint=endpoint or self._endpoint_name(job_name),
            body=body,
            validator=validator,
        )
        self._registry.routes.append(spec)
        for app in list(self._apps):
            add_route(app, self._state(app), spec)

    # -- access control and response hooks --------------------------------------------------------

    def owner(self, func: F) -> F:
        """Register the function that names the owner of the current request (e.g. the user id).

        Each job is bound to the owner of the request that submitted it; only requests with the same
        owner may read or cancel it (others get ``404``, exactly as for an unknown id), and
        ``X-Async-Request-Id`` keys are scoped per owner. Without it, anyone holding a job's id
        (an unguessable UUID) may read and cancel it.

        .. code-block:: python

            @ae.owner
            def current_user():
                return str(g.user.id) if g.get("user") else None
        """
        self._registry.owner_func = func
        return func

    def authorize(self, func: F) -> F:
        """Register ``func(job, action) -> bool`` to decide who may ``"read"`` or ``"cancel"`` a job.

        It runs in the request, so it can look at :data:`flask.request` and :data:`flask.g`; it
        replaces the owner check of :meth:`owner`. A ``False`` answers ``404``.
        """
        self._registry.authorize_func = func
        return func

    def dashboard_access(self, func: F) -> F:
        """Register ``func()`` to decide who may open the dashboard and the metrics endpoint.

        It runs in the request (it can look at :data:`flask.request`, :data:`flask.g` or a login
        extension's current user) before every dashboard page, action and metrics scrape, and
        answers ``True`` to let the request in, ``False`` for a ``403`` page, or a response to send
        instead (such as a redirect to a login page). It replaces the default rule, which lets in
        only requests from this machine; call
        :func:`~flask_asyncendpoints.dashboard.is_local_request` to keep that rule as part of yours.

        .. code-block:: python

            @ae.dashboard_access
            def operators_only():
                return current_user.is_authenticated and current_user.is_admin
        """
        self._registry.dashboard_access_func = func
        return func

    def submitted_response(self, func: F) -> F:
        """Register ``func(job, response)`` to shape the ``202`` answer to a submit.

        It gets the :class:`~flask_asyncendpoints.Job` and the response the extension built, and
        returns the response to send (anything a view may return).

        .. code-block:: python

            @ae.submitted_response
            def add_job_header(job, response):
                response.headers["Async-Job-Id"] = job.id
                return response
        """
        self._registry.response_hooks["submitted"] = func
        return func

    def job_details_response(self, func: F) -> F:
        """Register ``func(job, response)`` to shape the answers about one job (``GET``, ``DELETE``)."""
        self._registry.response_hooks["job_details"] = func
        return func

    def submission_error_response(self, func: F) -> F:
        """Register ``func(error, response)`` to shape the ``4xx``/``503`` answers to a refused submit.

        ``error`` is the :class:`~flask_asyncendpoints.ProblemError` (its ``code``, ``title``,
        ``detail`` and ``extra``); ``response`` is the problem JSON the extension built.
        """
        self._registry.response_hooks["submission_error"] = func
        return func

    def exception_response(self, func: F) -> F:
        """Register ``func(error, response)`` to shape the answer when the job store fails (``503``).

        ``error`` is the :class:`~flask_asyncendpoints.StoreError`; ``response`` is the problem JSON
        the extension built.
        """
        self._registry.response_hooks["exception"] = func
        return func

    @property
    def owner_func(self) -> OwnerFunc | None:
        """The function registered with :meth:`owner`, or ``None``."""
        return self._registry.owner_func

    @owner_func.setter
    def owner_func(self, func: OwnerFunc | None) -> None:
        self._registry.owner_func = func

    @property
    def authorize_func(self) -> AuthorizeFunc | None:
        """The function registered with :meth:`authorize`, or ``None``."""
        return self._registry.authorize_func

    @authorize_func.setter
    def authorize_func(self, func: AuthorizeFunc | None) -> None:
        self._registry.authorize_func = func

    @property
    def response_hooks(self) -> dict[str, ResponseHook]:
        """Response hooks by kind: ``submitted``, ``job_details``, ``submission_error``, ``exception``."""
        return self._registry.response_hooks

    @property
    def routes(self) -> tuple[RouteSpec, ...]:
        """The async endpoints mapped so far."""
        return tuple(self._registry.routes)

    def _endpoint_name(self, job_name: str) -> str:
        """``asyncendpoints.<job_name>``, numbered from the second route of the same handler on."""
        taken = {route.endpoint for route in self._registry.routes}
        name = f"asyncendpoints.{job_name}"
        number = 2
        while name in taken:
            name = f"asyncendpoints.{job_name}_{number}"
            number += 1
        return name

    def get_handler(self, name: str) -> HandlerSpec:
        """The handler registered under ``name``.

        :raises ConfigurationError: when there is none.
        """
        return self._registry.get_handler(name)

    def find_handler(self, name: str) -> HandlerSpec | None:
        """The handler registered under ``name``, or ``None``."""
        return self._registry.find_handler(name)

    # -- the Python API ---------------------------------------------------------------------------

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
        app: Flask | None = None,
    ) -> Job:
        """Submit a job without HTTP (from scripts, CLI commands, other views or tests).

        The body is validated by the handler's request schema, as on the HTTP endpoint.

        :param job_name: the handler's job name.
        :param body: the request body (JSON data).
        :param job_id: the job's id; submitting an id that exists returns that job (idempotent).
        :param owner: bind the job to this owner key (see :meth:`owner`).
        :param app: the app (default: the current app).
        :returns: the stored job record.
        :raises marshmallow.ValidationError: when the body fails the request schema.
        :raises ~flask_asyncendpoints.stores.PendingLimitReached: at ``ASYNCENDPOINTS_MAX_PENDING_JOBS``.
        :raises ~flask_asyncendpoints.errors.JobIdConflict: when ``job_id`` names a job of another handler.
        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
        """
        state = self._state(app)
        spec = self.get_handler(job_name)
        if spec.request_schema is not None:
            spec.request_schema.load(body)
        job, _ = state.create_job(
            spec,
            body=body,
            headers=(headers or {}).items(),
            route_params=dict(route_params or {}),
            query_params={k: list(v) for k, v in (query_params or {}).items()},
            owner=owner,
            job_id=str(uuid.UUID(str(job_id))) if job_id is not None else str(uuid.uuid4()),
        )
        if job.name != job_name:
            raise JobIdConflict(f"The job id {job.id} already names a {job.name!r} job; use a new id.")
        return job

    def submit_many(
        self,
        job_name: str,
        bodies: Iterable[Any],
        *,
        owner: str | None = None,
        app: Flask | None = None,
    ) -> list[Job | None]:
        """Submit one job per body in one go (bulk loads, fan-out); much faster than :meth:`submit` in a loop.

        Every body is validated by the handler's request schema before any job is stored, so a
        bad body stores nothing. On Redis the jobs are created in one round trip.

        :param job_name: the handler's job name.
        :param bodies: the request body of each job.
        :param owner: bind the jobs to this owner key (see :meth:`owner`).
        :param app: the app (default: the current app).
        :returns: the stored jobs in order; ``None`` for a job refused at
            ``ASYNCENDPOINTS_MAX_PENDING_JOBS`` (nothing is stored for it).
        :raises marshmallow.ValidationError: when a body fails the request schema.
        :raises ~flask_asyncendpoints.errors.StoreError: when the store cannot be reached.
        """
        state = self._state(app)
        spec = self.get_handler(job_name)
        bodies = list(bodies)
        if spec.request_schema is not None:
            for body in bodies:
                spec.request_schema.load(body)
        max_retries = state.max_retries_of(spec)
        created = state.store.create_many(
            [NewJob(str(uuid.uuid4()), job_name, JobPayload(body=body, owner=owner), max_retries) for body in bodies],
            max_pending=state.settings.max_pending_jobs,
        )
        return [outcome[0] if outcome is not None else None for outcome in created]

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
        return state.store.cancel(normalized, result_ttl=state.settings.result_ttl)

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
        """Stop the app's worker in this process (see :meth:`Worker.shutdown`)."""
        state = self._state(app)
        worker = state.worker
        if worker is not None and worker.pid == os.getpid():
            worker.shutdown(timeout)


def _schema(schema: Schema | type[Schema] | None) -> Schema | None:
    if schema is None or isinstance(schema, Schema):
        return schema
    if isinstance(schema, type) and issubclass(schema, Schema):
        return schema()
    raise ConfigurationError(f"Expected a marshmallow Schema class or instance, not {schema!r}.")
