"""Signals sent by the worker (blinker, as Flask's own signals).

Connect a receiver for metrics, logging or tests::

    from flask_asyncendpoints.signals import job_finished

    @job_finished.connect_via(app)
    def count(sender, job, **extra):
        if job is not None:
            metrics.incr(f"jobs.{job.status.value}")

Receivers run in the worker thread, outside any lock; an exception in a receiver is logged and
does not affect the job.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent when a handler starts an attempt: ``sender`` is the app, ``job`` the claimed
#: :class:`~flask_asyncendpoints.Job` (``InProgress``).
job_started = _signals.signal("asyncendpoints.job-started")

#: Sent when an attempt's outcome is stored: ``sender`` is the app, ``job`` the job as stored
#: afterwards (``Completed``, ``Failed``, ``Canceled``, or ``Scheduled`` for a retry), or ``None``
#: when the outcome was discarded because the attempt had lost its lease; ``job_id`` its id.
job_finished = _signals.signal("asyncendpoints.job-finished")
