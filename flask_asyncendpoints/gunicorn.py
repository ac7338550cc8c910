"""Gunicorn server hooks: release claimed jobs when a gunicorn worker process exits.

Gunicorn stops a worker process by SIGTERM and kills it after ``graceful_timeout``; the job
worker's own exit handler runs only at interpreter exit, which may come too late. Add to
``gunicorn.conf.py``::

    from flask_asyncendpoints.gunicorn import worker_exit  # noqa: F401

The hook stops claiming, waits for running jobs up to ``ASYNCENDPOINTS_SHUTDOWN_TIMEOUT`` (but not
past gunicorn's ``graceful_timeout``) and re-queues every job the process claimed but did not
finish, so another process picks them up at once instead of after their lease expires.
"""

from __future__ import annotations

from typing import Any

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
