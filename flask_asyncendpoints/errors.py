"""Every exception the library raises derives from :class:`AsyncEndpointsError`."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.sansio.response import Response as SansIOResponse
from werkzeug.wrappers import Response


class AsyncEndpointsError(Exception):
    """The root of every exception raised by flask-asyncendpoints."""


class ConfigurationError(AsyncEndpointsError):
    """A configuration value or a registration is wrong; the message says how to fix it."""


class StoreError(AsyncEndpointsError):
    """The job store could not be reached or answered in a way that could not be used.

    HTTP requests that hit it answer ``503``; the worker logs it and retries with back-off.
    """


class JobIdConflict(AsyncEndpointsError):
    """A job was submitted with an id that already names a job of another handler."""


class InvalidPayload(AsyncEndpointsError, ValueError):
    """A job's request cannot be stored as UTF-8 JSON; nothing was stored.

    Raised by :meth:`~flask_asyncendpoints.AsyncEndpoints.submit` and
    :meth:`~flask_asyncendpoints.AsyncEndpoints.submit_many` for a body, header, route or query
    parameter holding a lone UTF-16 surrogate (such as ``"\\udcff"`` from ``os.listdir`` or
    ``surrogateescape`` decoding), NaN or an infinity, or a value that is not JSON at all (a
    ``datetime``, a ``set``...). The HTTP endpoints answer the same inputs with ``400``. The
    message names the first part that cannot be stored, e.g. ``body['name']``.

    :param message: what cannot be stored, and where.
    :param kind: ``"surrogate"``, ``"not-finite"``, ``"not-json"`` or ``"too-deep"``.
    """

    def __init__(self, message: str, kind: str = "not-json") -> None:
        super().__init__(message)
        #: What is wrong: ``"surrogate"``, ``"not-finite"``, ``"not-json"`` or ``"too-deep"``.
        self.kind = kind


class JobFailure(AsyncEndpointsError):
    """Raise from a handler to fail the attempt with a chosen error code.

    :param message: the error message recorded on the job.
    :param code: the error ``code`` recorded on the job (default: ``JOBFAILURE``).
    :param retry: ``False`` fails the job at once, without the retries it has left.
    """

    #: Its message is meant for clients: ``ASYNCENDPOINTS_EXPOSE_EXCEPTION_MESSAGES`` never hides it.
    public_message = True

    def __init__(self, message: str, *, code: str | None = None, retry: bool = True) -> None:
        super().__init__(message)
        self.code = code or "JOBFAILURE"
        self.retry = retry


class JobCanceled(AsyncEndpointsError):
    """Raise from a handler that noticed ``ctx.cancelled`` to end the job as ``Canceled``."""


class ProblemError(AsyncEndpointsError, HTTPException):
    """An HTTP error answered as RFC 9457 problem JSON (``application/problem+json``).

    :param status: the HTTP status code.
    :param title: a short, fixed summary of the problem type.
    :param detail: what went wrong with this request and what to do about it.
    :param extra: more members for the problem document (such as ``errors``).
    :param headers: extra response headers (such as ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        AsyncEndpointsError.__init__(self, detail)
        HTTPException.__init__(self, description=detail)
        self.code = status
        self.title = title
        self.detail = detail
        self.extra = dict(extra or {})
        self.extra_headers = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        """The problem document: ``type``, ``title``, ``status``, ``detail`` and any extra members."""
        return {"type": "about:blank", "title": self.title, "status": self.code, "detail": self.detail, **self.extra}

    def get_response(self, environ: Any = None, scope: Any = None) -> SansIOResponse:  # type: ignore[override]
        """The problem JSON response, so the error renders right wherever it is raised."""
        # A lone surrogate in a detail or an error message (from a field name a client sent, say) is
        # written as its JSON escape: the answer must never fail to encode.
        body = json.dumps(self.to_dict(), ensure_ascii=False).encode("utf-8", "backslashreplace")
        response = Response(body, status=self.code, mimetype="application/problem+json")
        for name, value in self.extra_headers.items():
            response.headers[name] = value
        return response
