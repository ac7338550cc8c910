"""What an :class:`~flask_asyncendpoints.AsyncEndpoints` object registers: handlers, routes, hooks.

The extension fills a :class:`Registry`; every app bound to it reads the same one through its
:class:`~flask_asyncendpoints.state.AppState`, so the views and the worker find handlers and hooks
without importing the extension.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response
from flask.typing import ResponseReturnValue

from .encoding import NotJSONError, json_text
from .errors import ConfigurationError
from .handlers import HandlerSpec
from .jobs import Job
from .schedules import Schedule

#: A validator hook: gets the loaded request body; returns ``None`` to accept, or a response to send instead.
Validator = Callable[[Any], "ResponseReturnValue | None"]

#: Returns the owner key of the current request (e.g. the user id), or ``None``.
OwnerFunc = Callable[[], "str | None"]
#: Decides whether the current request may ``"read"`` or ``"cancel"`` a job.
AuthorizeFunc = Callable[[Job, str], bool]
#: Decides whether the current request may use the dashboard and the metrics: ``True``, ``False``
#: (a ``403`` page), or a response to send instead (such as a redirect to a login page).
DashboardAccessFunc = Callable[[], "bool | ResponseReturnValue"]
#: Shapes a built response: gets the job (or the error) and the response, returns what to send.
ResponseHook = Callable[[Any, Response], ResponseReturnValue]
#: Runs first on every submit, before the body is read: gets the job name; returns ``None`` to go on,
#: or a response to send instead (or raises an HTTP error, e.g. ``abort(401)``).
BeforeSubmit = Callable[[str], "ResponseReturnValue | None"]
#: A view decorator, as in ``decorators=[login_required]``.
ViewDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]


@dataclass(frozen=True)
class RouteSpec:
    """An async endpoint: a URL rule that submits jobs for one handler."""

    rule: str
    job_name: str
    methods: tuple[str, ...]
    #: The endpoint's name within its blueprint (``url_for("<blueprint>.<endpoint>")``).
    endpoint: str
    #: ``None``: a JSON body exactly when the handler has a request schema.
    body: bool | None = None
    validator: Validator | None = None
    #: Each job's priority (higher runs first): a number, or a function of the loaded body.
    priority: int | Callable[[Any], int] | None = None
    #: Seconds before each job is due: a number, or a function of the loaded body (``None``: at once).
    delay: float | Callable[[Any], float | None] | None = None
    #: The user's blueprint the route is on; ``None``: the extension's own.
    blueprint: Blueprint | None = None
    #: View decorators, applied in order (the last one outermost), as Flask's ``View.decorators``.
    decorators: tuple[ViewDecorator, ...] = ()
    #: More answers the route can give (e.g. ``{401: "Not logged in"}``), for the OpenAPI document.
    responses: Mapping[int, str] = field(default_factory=dict)

    def takes_body(self, spec: HandlerSpec) -> bool:
        return self.body if self.body is not None else spec.request_schema is not None


@dataclass(eq=False)
class Registry:
    """The handlers, routes, response hooks and access functions of one extension object."""

    handlers: dict[str, HandlerSpec] = field(default_factory=dict)
    routes: list[RouteSpec] = field(default_factory=list)
    #: Response hooks by kind: "submitted", "job_details", "submission_error", "exception".
    response_hooks: dict[str, ResponseHook] = field(default_factory=dict)
    owner_func: OwnerFunc | None = None
    authorize_func: AuthorizeFunc | None = None
    before_submit: BeforeSubmit | None = None
    dashboard_access_func: DashboardAccessFunc | None = None
    #: Recurring jobs registered with ``ae.schedule()``, by name.
    schedules: dict[str, Schedule] = field(default_factory=dict)

    def get_handler(self, name: str) -> HandlerSpec:
        """The handler registered under ``name``.

        :raises ConfigurationError: when there is none.
        """
        spec = self.handlers.get(name)
        if spec is None:
            raise ConfigurationError(
                f"No handler is registered for the job name {name!r}. Register one first with @ae.handler({name!r})."
            )
        return spec

    def find_handler(self, name: str) -> HandlerSpec | None:
        """The handler registered under ``name``, or ``None``."""
        return self.handlers.get(name)

    def check_schedule(self, schedule: Schedule) -> None:
        """Check that the schedule's handler is registered and takes its payload, and that the
        payload can be stored as UTF-8 JSON (so a bad one fails at start, not at each occurrence).

        :raises ConfigurationError: when not.
        """
        try:
            json_text(schedule.payload, "payload")
        except NotJSONError as exc:
            raise ConfigurationError(
                f"The payload of the schedule {schedule.name!r} cannot be stored as UTF-8 JSON: {exc}; "
                "give it JSON data of valid text."
            ) from None
        spec = self.find_handler(schedule.job_name)
        if spec is None:
            raise ConfigurationError(
                f"The schedule {schedule.name!r} runs {schedule.job_name!r}, which has no handler. "
                f"Register one first with @ae.handler({schedule.job_name!r}), or pass job_name=."
            )
        if spec.request_schema is not None:
            try:
                spec.request_schema.load(schedule.payload)
            except Exception as exc:
                raise ConfigurationError(
                    f"The payload of the schedule {schedule.name!r} does not pass the request schema of "
                    f"{spec.name!r}: {exc}"
                ) from exc
