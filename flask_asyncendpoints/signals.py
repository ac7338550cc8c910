"""Signals sent for job events (blinker, as Flask's own signals).

Connect a receiver for metrics, logging or tests::

    from flask_asyncendpoints.signals import job_completed

    @job_completed.connect_via(app)
    def count(sender, job, **extra):
        metrics.incr(f"jobs.completed.{job.name}")

Every receiver gets ``sender`` (the app), ``job`` (the :class:`~flask_asyncendpoints.Job` as stored
after the event) and ``job_id``; the event signals also get ``attempt`` (the attempt number, 0 for a
job that never started) and ``duration`` (seconds the attempt ran, or ``None``).

Each event signal is sent exactly once per occurrence, in the process where the event happened:
``job_submitted`` where the job was created, ``job_recovered`` in the process that recovered it,
``job_canceled`` where it became ``Canceled`` (the process that answered the ``DELETE`` of a waiting
job; the worker for a running one). Receivers run in the thread of the event, outside any lock; an
exception in a receiver is logged and does not affect the job.
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

#: Sent when a job is created (an HTTP submit, :meth:`~flask_asyncendpoints.AsyncEndpoints.submit`,
#: ``submit_many`` or a recurring job's occurrence); not for a resubmit that found its job.
job_submitted = _signals.signal("asyncendpoints.job-submitted")

#: Sent when a failed attempt is scheduled for a retry (``job`` is ``Scheduled``).
job_retried = _signals.signal("asyncendpoints.job-retried")

#: Sent when a job ends ``Completed``.
job_completed = _signals.signal("asyncendpoints.job-completed")

#: Sent when a job ends ``Failed`` (out of retries, ``retry=False``, or recovered with none left).
job_failed = _signals.signal("asyncendpoints.job-failed")

#: Sent when a job whose lease expired is taken back (``job`` is ``Queued`` again, or ``Failed``
#: or ``Canceled``, in which case ``job_failed`` or ``job_canceled`` follows).
job_recovered = _signals.signal("asyncendpoints.job-recovered")

#: Sent when a job ends ``Canceled``.
job_canceled = _signals.signal("asyncendpoints.job-canceled")
