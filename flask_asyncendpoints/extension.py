"""The extension object: handler and route registration, binding to apps.

What it registers goes in a :class:`~flask_asyncendpoints.registry.Registry`; what it keeps per app
in an :class:`~flask_asyncendpoints.state.AppState`. The views get both from the state, so they
never import this module. Its hooks come from :mod:`~flask_asyncendpoints.hooks`, its Python API
(submit, schedule, read and cancel jobs) from :mod:`~flask_asyncendpoints.python_api`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from flask import Blueprint, Flask
from marshmallow import Schema

from .config import Settings, set_defaults
from .dashboard import register as register_dashboard
from .encoding import surrogate_in
from .errors import ConfigurationError
from .handlers import Handler, HandlerSpec
from .hooks import HookRegistration
from .jobs import DEFAULT_QUEUE
from .metrics import register as register_metrics
from .python_api import PythonAPI
from .registry import Registry, RouteSpec, Validator, ViewDecorator
from .state import EXTENSION_KEY, AppState
from .stores import create_store
from .submitting import check_delay, check_priority, route_option
from .views import add_route, job_rule, register
from .views.openapi import import_apispec

H = TypeVar("H", bound=Handler)

ALLOWED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AsyncEndpoints(HookRegistration, PythonAPI):
    """The flask-asyncendpoints extension.

    Register handlers with :meth:`handler`, map them to URLs with :meth:`route`, and bind to apps
    with ``AsyncEndpoints(app)`` or :meth:`init_app` in an app factory. Handlers and routes belong to
    this object and serve every app it is bound to; jobs, stores and workers belong to each app.

    :param app: bind to this app at once.
    :param store: overrides ``ASYNCENDPOINTS_STORE`` for that app: a URL, a
        :class:`~flask_asyncendpoints.stores.Store`, a ``redis.Redis`` client or a callable
        returning one.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        store: Any = None,
        blueprint: Blueprint | None = None,
        url_prefix: str | None = None,
    ) -> None:
        self._registry = Registry()
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app, store=store, blueprint=blueprint, url_prefix=url_prefix)

    # -- binding to apps --------------------------------------------------------------------------

    def init_app(
        self,
        app: Flask,
        *,
        store: Any = None,
        blueprint: Blueprint | None = None,
        url_prefix: str | None = None,
    ) -> None:
        """Bind the extension to ``app``: read its config, open its store, add the routes.

        The job routes and every async endpoint mapped without a blueprint of its own go on a
        blueprint: the extension's own, named ``asyncendpoints``, or ``blueprint``. It is
        registered on ``app`` here.

        The worker starts lazily, with the first request the app serves (so it runs in the process
        that serves, after any fork), unless ``ASYNCENDPOINTS_WORKER`` is false.

        :param app: the Flask app.
        :param store: overrides ``ASYNCENDPOINTS_STORE`` (see the class).
        :param blueprint: a blueprint of the app's own (not registered yet) to put the routes on
            instead, so its ``before_request`` hooks and error handlers apply to them.
        :param url_prefix: the URL prefix of that blueprint (default: the blueprint's own, if any).
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
        if settings.openapi_url is not None:
            import_apispec()  # a missing optional dependency fails here, not at the first request
        state = AppState(
            self._registry,
            settings,
            create_store(
                store if store is not None else settings.store,
                key_prefix=settings.key_prefix,
                history_limit=settings.history_limit,
            ),
        )
        for schedule in state.config_schedules.values():
            self._registry.check_schedule(schedule)
        app.extensions[EXTENSION_KEY] = state
        register(app, state, blueprint=blueprint, url_prefix=url_prefix)
        register_dashboard(app, state)
        register_metrics(app, state)
        if settings.worker:
            app.before_request(state.before_request)
        self._apps.add(app)

    # -- registration -----------------------------------------------------------------------------

    def handler(
        self,
        name: str,
        *,
        request_schema: Schema | type[Schema] | None = None,
        response_schema: Schema | type[Schema] | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        queue: str = DEFAULT_QUEUE,
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
        :param queue: the queue its jobs go to (every route and schedule of the handler uses it);
            workers serve the queues of ``ASYNCENDPOINTS_QUEUES``.
        :raises ConfigurationError: when ``name`` already has a handler.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError("A handler needs a non-empty job name, e.g. @ae.handler('ProcessData').")
        if surrogate_in(name) is not None:
            raise ConfigurationError(
                f"The job name {name!a} holds a lone UTF-16 surrogate; give it a name of valid text."
            )
        if max_retries is not None and (isinstance(max_retries, bool) or max_retries < 0):
            raise ConfigurationError(f"max_retries must be a whole number ≥ 0, not {max_retries!r}.")
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"timeout must be a number of seconds > 0, not {timeout!r}.")
        if not isinstance(queue, str) or not queue:
            raise ConfigurationError(f"queue must be a non-empty queue name, not {queue!r}.")

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
                queue=queue,
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
        priority: int | Callable[[Any], int] | None = None,
        delay: float | Callable[[Any], float | None] | None = None,
        blueprint: Blueprint | None = None,
        decorators: Iterable[ViewDecorator] = (),
        responses: Mapping[int, str] | None = None,
    ) -> None:
        """Map a URL to a handler: a request to ``rule`` submits a job and answers ``202``.

        The job goes to the handler's queue.

        .. code-block:: python

            ae.route("/api/reports", "GenerateReport", decorators=[login_required])
            ae.route("/reports", "GenerateReport", blueprint=admin, responses={403: "Not an admin."})

        :param rule: a Flask URL rule; its variables reach the handler as ``ctx.route_params``.
        :param job_name: the name the handler was registered under (register it first).
        :param methods: any of ``POST``, ``PUT``, ``PATCH``, ``DELETE``.
        :param body: whether the endpoint takes a JSON body. ``None`` (default): exactly when the
            handler has a request schema. ``True`` without a schema accepts any JSON value.
        :param validator: called with the loaded body before the job is queued; return ``None`` to
            accept, or a response (anything a view may return) to answer with instead.
        :param endpoint: the endpoint's name within its blueprint (default: ``<job_name>``, so
            ``url_for("asyncendpoints.<job_name>")``).
        :param priority: each job's priority (higher runs first among the due jobs of its queue;
            default 0): a whole number, or a function that gets the loaded body (as the validator
            does) and returns one.
        :param delay: seconds before each job is due (it is ``Scheduled`` until then): a number, or
            a function of the loaded body that returns one (or ``None`` for at once).
        :param blueprint: put the route on this blueprint of the app's own (before it is
            registered) rather than on the extension's: its URL prefix, ``before_request`` hooks
            and error handlers apply.
        :param decorators: view decorators such as ``login_required``, applied in order (the last
            one outermost), as Flask's ``View.decorators``. They run before anything is read.
        :param responses: more statuses the route can answer, with a description each (such as
            ``{401: "Not logged in."}``), for the OpenAPI document.
        :raises ConfigurationError: for an unknown job name, an unsupported method, or a priority or
            delay that is neither a number nor a function.
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
            endpoint=endpoint or self._endpoint_name(job_name, blueprint),
            body=body,
            validator=validator,
            priority=priority if callable(priority) or priority is None else route_option(check_priority, priority),
            delay=delay if callable(delay) or delay is None else route_option(check_delay, delay),
            blueprint=blueprint,
            decorators=tuple(decorators),
            responses=dict(responses or {}),
        )
        if blueprint is not None:
            # The app registers the user's blueprint when it is ready; Flask refuses rules added later.
            add_route(blueprint, spec)
        self._registry.routes.append(spec)
        if blueprint is None:
            for app in list(self._apps):
                # The extension's blueprint is registered already: the rule goes straight to the app,
                # under the blueprint's prefix and name (so its hooks apply).
                state = self._state(app)
                add_route(app, spec, rule_prefix=state.url_prefix, endpoint_prefix=state.blueprint_name + ".")

    @property
    def routes(self) -> tuple[RouteSpec, ...]:
        """The async endpoints mapped so far."""
        return tuple(self._registry.routes)

    def _endpoint_name(self, job_name: str, blueprint: Blueprint | None) -> str:
        """``<job_name>``, numbered from the second route of the same handler on the same blueprint on."""
        taken = {route.endpoint for route in self._registry.routes if route.blueprint is blueprint}
        name = job_name
        number = 2
        while name in taken:
            name = f"{job_name}_{number}"
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


def _schema(schema: Schema | type[Schema] | None) -> Schema | None:
    if schema is None or isinstance(schema, Schema):
        return schema
    if isinstance(schema, type) and issubclass(schema, Schema):
        return schema()
    raise ConfigurationError(f"Expected a marshmallow Schema class or instance, not {schema!r}.")
