"""A Python client for async endpoints: submit a job, wait for its result, cancel it.

Standard library only (:mod:`urllib.request`), so any Python program can call an app that uses
flask-asyncendpoints without the app's dependencies mattering. Every error it raises derives from
:class:`ClientError`, itself an :class:`~flask_asyncendpoints.AsyncEndpointsError`.

.. code-block:: python

    from flask_asyncendpoints.client import Client, JobFailedError

    client = Client("http://127.0.0.1:5000")
    job = client.submit("/api/process-data", {"data": "Hello, AsyncEndpoints!"})
    try:
        result = client.result(job, timeout=60)
    except JobFailedError as exc:
        print(exc.job.error["code"])
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from .errors import AsyncEndpointsError

__all__ = [
    "Client",
    "ClientError",
    "Conflict",
    "HTTPError",
    "JobCanceledError",
    "JobFailedError",
    "NotFound",
    "RemoteJob",
    "ServiceUnavailable",
    "TransportError",
    "WaitTimeout",
]

#: The statuses after which a job never changes again.
FINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled"})


class _NoBody:
    def __repr__(self) -> str:
        return "NO_BODY"


#: ``submit``'s default: send no body at all (``None`` sends JSON ``null``).
NO_BODY: Any = _NoBody()


# -- errors ----------------------------------------------------------------------------------------


class ClientError(AsyncEndpointsError):
    """The root of every error the client raises."""


class TransportError(ClientError):
    """The server could not be reached, or did not answer in time, or answered something that is
    not JSON."""


class HTTPError(ClientError):
    """The server refused a request: a ``4xx``/``5xx`` answer, usually problem JSON.

    :ivar status: the HTTP status code.
    :ivar problem: the problem document (``type``, ``title``, ``status``, ``detail``, …), or ``{}``.
    :ivar retry_after: the ``Retry-After`` header in seconds, or ``None``.
    """

    def __init__(self, status: int, problem: dict[str, Any], retry_after: float | None) -> None:
        detail = problem.get("detail") or problem.get("title") or "no detail given"
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.problem = problem
        self.retry_after = retry_after


class NotFound(HTTPError):
    """``404``: no such job (unknown, expired, or not visible to this caller), or no such URL."""


class Conflict(HTTPError):
    """``409``: the job has finished already (a cancel), or the request id names another job."""


class ServiceUnavailable(HTTPError):
    """``503``: too many pending jobs, or the server's job store is down; try again after
    ``retry_after`` seconds."""


class JobFailedError(ClientError):
    """The job ended ``Failed``; ``job`` has its ``error``.

    :ivar job: the finished :class:`RemoteJob`.
    """

    def __init__(self, job: RemoteJob) -> None:
        error = job.error or {}
        super().__init__(f"job {job.id} failed: {error.get('code', 'UNKNOWN')}: {error.get('message', '')}")
        self.job = job


class JobCanceledError(ClientError):
    """The job ended ``Canceled``.

    :ivar job: the finished :class:`RemoteJob`.
    """

    def __init__(self, job: RemoteJob) -> None:
        super().__init__(f"job {job.id} was canceled")
        self.job = job


class WaitTimeout(ClientError, TimeoutError):
    """The job had not finished when the wait's timeout ran out.

    :ivar job: the job as last seen.
    """

    def __init__(self, job: RemoteJob, timeout: float) -> None:
        super().__init__(f"job {job.id} is still {job.status} after {timeout:g} s")
        self.job = job


_ERRORS: dict[int, type[HTTPError]] = {404: NotFound, 409: Conflict, 503: ServiceUnavailable}


# -- the job record --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteJob:
    """A job record as the server sent it.

    :ivar id: the job's id.
    :ivar url: the job's URL (absolute).
    :ivar record: the whole record, as JSON (``createdAt``, ``progress``, …).
    :ivar retry_after: the ``Retry-After`` the answer carried (seconds), or ``None``.
    """

    id: str
    url: str
    record: dict[str, Any] = field(repr=False)
    retry_after: float | None = None

    @property
    def name(self) -> str:
        return str(self.record.get("name", ""))

    @property
    def status(self) -> str:
        """``Queued``, ``Scheduled``, ``InProgress``, ``Completed``, ``Failed`` or ``Canceled``."""
        return str(self.record.get("status", ""))

    @property
    def finished(self) -> bool:
        """Whether the job is ``Completed``, ``Failed`` or ``Canceled``."""
        return self.status in FINAL_STATUSES

    @property
    def result(self) -> Any:
        """The handler's result (``None`` until the job is ``Completed``)."""
        return self.record.get("result")

    @property
    def error(self) -> dict[str, Any] | None:
        """Why the last attempt failed: ``{"code", "message", "exception"}``, or ``None``."""
        error = self.record.get("error")
        return error if isinstance(error, dict) else None

    @property
    def progress(self) -> dict[str, Any] | None:
        """What the handler last reported: ``{"fraction", "message", "updatedAt"}``, or ``None``."""
        progress = self.record.get("progress")
        return progress if isinstance(progress, dict) else None


# -- the client ------------------------------------------------------------------------------------


class Client:
    """Talks to one app's async endpoints and job routes.

    :param base_url: the app's root, e.g. ``"http://127.0.0.1:5000"`` (a path prefix is kept).
    :param timeout: seconds one HTTP request may take (a long-poll gets its wait on top).
    :param headers: headers sent with every request (``Authorization``, say).
    :param long_poll: seconds each poll asks the server to hold its answer (``?wait=``) while
        waiting; ``0`` polls without holding, ``Retry-After`` seconds apart.
    :param job_url: where a job is found by id: ``{id}`` stands for it (the app's
        ``ASYNCENDPOINTS_JOB_DETAILS_URL``, relative to ``base_url``).
    :param opener: a :class:`urllib.request.OpenerDirector` (proxies, TLS settings, cookies);
        default: ``urllib.request.build_opener()``.
    :param sleep: waits between polls (tests pass their own).
    :param clock: a monotonic clock for the deadlines (tests pass their own).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        long_poll: float = 20.0,
        job_url: str = "/jobs/{id}",
        opener: urllib.request.OpenerDirector | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.long_poll = max(0.0, long_poll)
        self.job_url = job_url
        self._opener = opener or urllib.request.build_opener()
        self._sleep = sleep
        self._clock = clock

    # -- operations --------------------------------------------------------------------------------

    def submit(
        self,
        path: str,
        body: Any = NO_BODY,
        *,
        method: str = "POST",
        request_id: str | uuid.UUID | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RemoteJob:
        """Submit a job to the async endpoint at ``path``; the accepted job (usually ``Queued``).

        :param path: the endpoint, relative to ``base_url`` (``"/api/process-data"``).
        :param body: sent as JSON; leave it out for endpoints without a body.
        :param method: ``POST``, ``PUT``, ``PATCH`` or ``DELETE``.
        :param request_id: sent as ``X-Async-Request-Id``, which makes the submit idempotent: a
            resubmit with the same id (after a timeout, say) returns the same job.
        :param headers: more headers for this request.
        :raises HTTPError: when the server refuses it (``400``, ``413``, ``415``, ``422``,
            :class:`ServiceUnavailable` for ``503``, …).
        :raises TransportError: when the server cannot be reached.
        """
        extra = dict(headers or {})
        if request_id is not None:
            extra["X-Async-Request-Id"] = str(uuid.UUID(str(request_id)))
        _, answer_headers, data = self._request(method, self._url(path), body, extra, self.timeout)
        return self._job(data, answer_headers)

    def get(self, job: RemoteJob | str) -> RemoteJob:
        """The job as it is now.

        :param job: a :class:`RemoteJob`, a job URL or a job id.
        :raises NotFound: when there is no such job (unknown, or expired).
        """
        _, headers, data = self._request("GET", self._job_url(job), NO_BODY, {}, self.timeout)
        return self._job(data, headers)

    def wait(self, job: RemoteJob | str, *, timeout: float = 60.0) -> RemoteJob:
        """Wait until the job is finished (``Completed``, ``Failed`` or ``Canceled``); the job then.

        Each poll is a long-poll (the server answers as soon as the job finishes); without one
        (``long_poll=0``, or a server that answers at once) polls are ``Retry-After`` seconds
        apart. A ``503`` (the server's store is down for a moment) is retried after its
        ``Retry-After`` until the timeout.

        :param timeout: seconds to wait at most.
        :raises WaitTimeout: when the job has not finished by then.
        :raises NotFound: when the job is not there (it expired, or never was).
        """
        deadline = self._clock() + timeout
        current = job if isinstance(job, RemoteJob) else None
        url = self._job_url(job)
        while current is None or not current.finished:
            remaining = deadline - self._clock()
            if remaining <= 0 and current is not None:
                raise WaitTimeout(current, timeout)
            hold = min(self.long_poll, max(0.0, remaining))
            poll_url = url if hold <= 0 else f"{url}{'&' if '?' in url else '?'}wait={hold:.3f}"
            started = self._clock()
            try:
                _, headers, data = self._request("GET", poll_url, NO_BODY, {}, self.timeout + hold)
            except ServiceUnavailable as exc:
                self._pause(exc.retry_after, deadline)
                if current is None and deadline - self._clock() <= 0:
                    raise
                continue
            current = self._job(data, headers)
            if not current.finished and (hold <= 0 or self._clock() - started < hold / 2):
                # Not a long-poll, or the server did not hold the answer (no long-poll there, or its cap is lower).
                self._pause(current.retry_after, deadline)
        return current

    def result(self, job: RemoteJob | str, *, timeout: float = 60.0) -> Any:
        """Wait for the job (:meth:`wait`) and return its result.

        :raises JobFailedError: when the job ended ``Failed``.
        :raises JobCanceledError: when it ended ``Canceled``.
        :raises WaitTimeout: when it has not finished within ``timeout`` seconds.
        """
        finished = self.wait(job, timeout=timeout)
        if finished.status == "Failed":
            raise JobFailedError(finished)
        if finished.status == "Canceled":
            raise JobCanceledError(finished)
        return finished.result

    def call(self, path: str, body: Any = NO_BODY, *, timeout: float = 60.0, **submit_options: Any) -> Any:
        """:meth:`submit`, then :meth:`result`: the job's result, as if the endpoint answered it."""
        return self.result(self.submit(path, body, **submit_options), timeout=timeout)

    def cancel(self, job: RemoteJob | str) -> RemoteJob:
        """Cancel the job: ``Canceled`` at once if it was waiting, else asked to stop (it ends
        ``Canceled``; :meth:`wait` for it).

        :raises Conflict: when the job has finished already.
        :raises NotFound: when there is no such job.
        """
        _, headers, data = self._request("DELETE", self._job_url(job), NO_BODY, {}, self.timeout)
        return self._job(data, headers)

    # -- HTTP --------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return urllib.parse.urljoin(self.base_url, path.lstrip("/"))

    def _job_url(self, job: RemoteJob | str) -> str:
        if isinstance(job, RemoteJob):
            return job.url
        if job.startswith(("http://", "https://", "/")):
            return self._url(job) if job.startswith("/") else job
        return self._url(self.job_url.format(id=urllib.parse.quote(str(uuid.UUID(job)))))

    def _pause(self, retry_after: float | None, deadline: float) -> None:
        wait = 1.0 if retry_after is None else retry_after
        self._sleep(max(0.0, min(wait, deadline - self._clock())))

    def _request(
        self, method: str, url: str, body: Any, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, Message, Any]:
        data = None
        all_headers = {"Accept": "application/json, application/problem+json", **self.headers, **headers}
        if body is not NO_BODY:
            data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.status, response.headers, self._json(response.read(), url)
        except urllib.error.HTTPError as exc:
            with exc:
                raw = exc.read()
            try:
                problem = json.loads(raw.decode("utf-8")) if raw else {}
            except ValueError:
                problem = {}
            if not isinstance(problem, dict):
                problem = {}
            error_class = _ERRORS.get(exc.code, HTTPError)
            raise error_class(exc.code, problem, _seconds(exc.headers.get("Retry-After"))) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"{method} {url} failed: {reason}") from exc

    @staticmethod
    def _json(raw: bytes, url: str) -> Any:
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise TransportError(f"{url} answered something that is not JSON: {raw[:80]!r}") from exc

    def _job(self, data: Any, headers: Message) -> RemoteJob:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise TransportError(f"expected a job record, got {str(data)[:80]!r}")
        location = headers.get("Location")
        url = self._url(location) if location else self._job_url(data["id"])
        return RemoteJob(id=data["id"], url=url, record=data, retry_after=_seconds(headers.get("Retry-After")))


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (a number; an HTTP date is read as "soon")."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return 1.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
