"""The access and response hooks an :class:`~flask_asyncendpoints.AsyncEndpoints` object registers.

A base class of the extension: its decorators fill the extension's
:class:`~flask_asyncendpoints.registry.Registry`, where the views find them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .registry import AuthorizeFunc, DashboardAccessFunc, OwnerFunc, Registry, ResponseHook

F = TypeVar("F", bound=Callable[..., Any])


class HookRegistration:
    """Registers who may see a job and how answers are shaped (see :class:`~flask_asyncendpoints.AsyncEndpoints`)."""

    _registry: Registry

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

        It runs in the request, so it can look at :obj:`flask.request` and :data:`flask.g`; it
        replaces the owner check of :meth:`owner`. A ``False`` answers ``404``.
        """
        self._registry.authorize_func = func
        return func

    def before_submit(self, func: F) -> F:
        """Register ``func(job_name)``, run first on every submit, before the request id or the
        body is read: return ``None`` to go on, or a response to send instead (nothing is read or
        stored then). An HTTP error it raises (``abort(401)``) is answered as problem JSON.

        .. code-block:: python

            @ae.before_submit
            def must_be_logged_in(job_name):
                if g.get("user") is None:
                    abort(401)
        """
        self._registry.before_submit = func
        return func

    def dashboard_access(self, func: F) -> F:
        """Register ``func()`` to decide who may open the dashboard and the metrics endpoint.

        It runs in the request (it can look at :obj:`flask.request`, :data:`flask.g` or a login
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
    def dashboard_access_func(self) -> DashboardAccessFunc | None:
        """The function registered with :meth:`dashboard_access`, or ``None``."""
        return self._registry.dashboard_access_func

    @dashboard_access_func.setter
    def dashboard_access_func(self, func: DashboardAccessFunc | None) -> None:
        self._registry.dashboard_access_func = func

    @property
    def response_hooks(self) -> dict[str, ResponseHook]:
        """Response hooks by kind: ``submitted``, ``job_details``, ``submission_error``, ``exception``."""
        return self._registry.response_hooks
