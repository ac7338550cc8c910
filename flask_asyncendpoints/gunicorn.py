"""Gunicorn server hooks: release claimed jobs when a gunicorn worker process exits.

Gunicorn stops a worker process by SIGTERM and kills it after ``graceful_timeout``; the job
worker's own exit handler runs only at interpreter exit, which may come too late. Add to
``gunicorn.conf.py``::

    from flask_asyncendpoints.gunicorn import post_worker_init, worker_exit  # noqa: F401

``worker_exit`` stops claiming, waits for running jobs up to ``ASYNCENDPOINTS_SHUTDOWN_TIMEOUT``
(but not past gunicorn's ``graceful_timeout``) and re-queues every job the process claimed but did
not finish, so another process picks them up at once instead of after their lease expires.

``post_worker_init`` starts the job worker as soon as a gunicorn worker process is ready, rather
than with its first request: a process that gunicorn starts to replace one (after a crash,
``max_requests`` or a reload) runs jobs even before traffic reaches it.
"""

from __future__ import annotations

from typing import Any

from .state import EXTENSION_KEY
from .worker import shutdown_all

#: Seconds kept back from gunicorn's ``graceful_timeout`` so the release itself finishes in time.
MARGIN = 2.0


def worker_exit(server: Any, worker: Any) -> None:
    """Gunicorn's ``worker_exit`` hook: shut down this process's job workers."""
    graceful = getattr(getattr(worker, "cfg", None), "graceful_timeout", None)
    timeout = None
    if isinstance(graceful, (int, float)):
        timeout = max(0.0, float(graceful) - MARGIN)
    shutdown_all(timeout, cap=True)


def post_worker_init(worker: Any) -> None:
    """Gunicorn's ``post_worker_init`` hook: start the app's job worker in this process now.

    Looks through WSGI middleware that keeps the app as ``.app`` or ``.wsgi_app`` (ProxyFix and
    the like) for the Flask app; does nothing for apps without the extension or with
    ``ASYNCENDPOINTS_WORKER`` off.
    """
    app = getattr(worker, "wsgi", None)
    for _ in range(10):
        state = getattr(app, "extensions", {}).get(EXTENSION_KEY) if hasattr(app, "extensions") else None
        if state is not None:
            if state.settings.worker:
                state.start_worker(app)
            return
        app = getattr(app, "app", None) or getattr(app, "wsgi_app", None)
        if app is None:
            return
