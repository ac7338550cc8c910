"""Prometheus metrics: job event counters and durations from this machine's processes, and gauges
of queues, statuses and workers read from the store at scrape time.

Served at ``ASYNCENDPOINTS_METRICS_URL`` (off when ``None``) under the dashboard's access rule
(:mod:`flask_asyncendpoints.access`). Needs the ``metrics`` extra (``prometheus-client``).

Two kinds of figures, because they come from two places:

* **Counters and the duration histogram** count job events (:mod:`flask_asyncendpoints.events`) in
  the process where each happens: a submit in the web process that took it, a start or a completion
  in the worker that ran it. Several processes on one machine (gunicorn workers, a dedicated
  ``flask asyncendpoints worker``) add theirs up through prometheus-client's multiprocess mode: with
  ``PROMETHEUS_MULTIPROC_DIR`` set for every one of them, each writes its values to files there, and
  whichever process answers the scrape reads them all. Without it, each process counts its own.
* **Gauges** (jobs per queue and status, due jobs, the age of the oldest due job, jobs that
  finished in the last hour, registered workers) are read from the store when the scrape comes,
  so every process of every machine answers the same cluster-wide figures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Flask, Response

from .access import Refusal, check_access
from .errors import ConfigurationError, StoreError
from .jobs import JobStatus
from .signals import (
    job_canceled,
    job_completed,
    job_failed,
    job_recovered,
    job_retried,
    job_started,
    job_submitted,
)
from .state import AppState

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

#: The endpoint name of the metrics view.
METRICS_ENDPOINT = "asyncendpoints.metrics"

#: Where an app's :class:`Metrics` is kept in ``app.extensions``.
EXTENSION_KEY = "asyncendpoints.metrics"

#: The environment variable that turns on prometheus-client's multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Buckets of the duration histogram (seconds): jobs run from milliseconds to an hour or more.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))

#: Each event signal and the ``event`` label it counts under.
EVENT_SIGNALS = {
    "submitted": job_submitted,
    "started": job_started,
    "retried": job_retried,
    "completed": job_completed,
    "failed": job_failed,
    "recovered": job_recovered,
    "canceled": job_canceled,
}

#: The events that end an attempt, and so carry a duration for the histogram.
TIMED_EVENTS = ("completed", "retried", "failed", "canceled")

# In multiprocess mode every metric of a process writes to that process's files, whatever registry
# it is in, so two apps in one process would write the same series twice: the metrics are made once
# per process there, and shared.
_process_metrics: tuple[Any, Any] | None = None


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError(
            "ASYNCENDPOINTS_METRICS_URL is set, but prometheus-client is not installed: "
            "pip install 'flask-asyncendpoints[metrics]'."
        ) from None
    return prometheus_client


def multiprocess_mode() -> bool:
    """Whether prometheus-client writes values to ``PROMETHEUS_MULTIPROC_DIR`` in this process.

    prometheus-client decides when it is first imported, so the variable must be set before that
    (in the environment of the process, not from the app).
    """
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


class StoreCollector:
    """Gauges read from the store at each scrape: the same answer from every process.

    A store that cannot be reached gives ``asyncendpoints_store_up 0`` and no other gauge (the
    scrape still answers); a part of the monitoring API a custom store lacks is left out.
    """

    def __init__(self, state: AppState) -> None:
        self.state = state

    def describe(self) -> list[Metric]:
        # Nothing up front: describing would read the store when the collector is registered.
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("asyncendpoints_store_up", "Whether the job store answered this scrape.")
        gauges: list[Metric] = []
        try:
            gauges.extend(self._status_gauges(GaugeMetricFamily))
            gauges.extend(self._optional(lambda: self._queue_gauges(GaugeMetricFamily)))
            gauges.extend(self._optional(lambda: self._throughput_gauges(GaugeMetricFamily)))
            gauges.extend(self._optional(lambda: self._worker_gauges(GaugeMetricFamily)))
        except StoreError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from gauges

    @staticmethod
    def _optional(read: Callable[[], list[Metric]]) -> list[Metric]:
        try:
            return read()
        except NotImplementedError:
            return []

    def _status_gauges(self, family: Any) -> list[Metric]:
        counts = self.state.store.counts()
        jobs = family("asyncendpoints_jobs", "Stored jobs by status, in every queue.", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], counts[status])
        in_progress = family("asyncendpoints_jobs_in_progress", "Jobs running now, in every queue.")
        in_progress.add_metric([], counts[JobStatus.IN_PROGRESS])
        return [jobs, in_progress]

    def _queue_gauges(self, family: Any) -> list[Metric]:
        now = time.time()
        per_status = family("asyncendpoints_queue_jobs", "Stored jobs by queue and status.", labels=["queue", "status"])
        due = family("asyncendpoints_queue_due_jobs", "Jobs of the queue that could start now.", labels=["queue"])
        waited = family(
            "asyncendpoints_queue_oldest_due_age_seconds",
            "How long the due job that has waited longest has been due (0: none is due).",
            labels=["queue"],
        )
        for stats in self.state.store.queue_stats():
            for status in JobStatus:
                per_status.add_metric([stats.name, status.value], stats.counts[status])
            due.add_metric([stats.name], stats.due)
            age = now - stats.oldest_due_at.timestamp() if stats.oldest_due_at is not None else 0.0
            waited.add_metric([stats.name], max(age, 0.0))
        return [per_status, due, waited]

    def _throughput_gauges(self, family: Any) -> list[Metric]:
        minutes = self.state.store.throughput().minutes
        finished = family(
            "asyncendpoints_jobs_finished_last_hour",
            "Jobs that ended Completed or Failed in the last 60 minutes (the store's per-minute counts).",
            labels=["outcome"],
        )
        finished.add_metric(["completed"], sum(p.completed for p in minutes))
        finished.add_metric(["failed"], sum(p.failed for p in minutes))
        return [finished]

    def _worker_gauges(self, family: Any) -> list[Metric]:
        workers = self.state.store.workers()
        count = family("asyncendpoints_workers", "Worker processes registered with a live heartbeat.")
        count.add_metric([], len(workers))
        threads = family("asyncendpoints_worker_threads", "Worker threads of the registered workers.")
        threads.add_metric([], sum(w.concurrency for w in workers))
        return [count, threads]


class Metrics:
    """The metrics of one app: its counters, its registry, the view that serves them.

    :param app: the app whose job events are counted.
    :param state: its state (the store the gauges read).
    """

    def __init__(self, app: Flask, state: AppState) -> None:
        prometheus = _prometheus()
        self.state = state
        self.multiprocess = multiprocess_mode()
        if os.environ.get(MULTIPROC_ENV) and not self.multiprocess:
            app.logger.warning(
                "%s is set, but prometheus_client was imported before it was: each process counts only its own "
                "job events. Set it in the environment that starts the process.",
                MULTIPROC_ENV,
            )
        #: What a scrape answers.
        self.registry: CollectorRegistry = prometheus.CollectorRegistry(auto_describe=False)
        if self.multiprocess:
            from prometheus_client import multiprocess

            global _process_metrics
            if _process_metrics is None:
                _process_metrics = self._make(prometheus, None)
            self.events, self.durations = _process_metrics
            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            self.events, self.durations = self._make(prometheus, self.registry)
        self.registry.register(StoreCollector(state))
        # Connected weakly and kept here: they go with the app's state, not with the signals.
        self._receivers = [self._receiver(event) for event in EVENT_SIGNALS]
        for signal, receiver in zip(EVENT_SIGNALS.values(), self._receivers, strict=True):
            signal.connect(receiver, sender=app)

    @staticmethod
    def _make(prometheus: Any, registry: CollectorRegistry | None) -> tuple[Any, Any]:
        events = prometheus.Counter(
            "asyncendpoints_job_events",
            "Job events by job name: submitted, started, retried, completed, failed, recovered, canceled.",
            ["job_name", "event"],
            registry=registry,
        )
        durations = prometheus.Histogram(
            "asyncendpoints_job_duration_seconds",
            "How long attempts ran, by job name and how they ended.",
            ["job_name", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        return events, durations

    def _receiver(self, event: str) -> Callable[..., None]:
        timed = event in TIMED_EVENTS

        def receive(sender: Any, job: Any = None, duration: float | None = None, **extra: Any) -> None:
            if job is None:
                return
            self.events.labels(job.name, event).inc()
            if timed and duration is not None:
                self.durations.labels(job.name, event).observe(duration)

        return receive

    def view(self) -> Response:
        """The scrape: the text exposition format, under the dashboard's access rule."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        decision = check_access(self.state.registry)
        if isinstance(decision, Response):
            return decision
        if isinstance(decision, Refusal):
            return _forbidden(decision)
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)


def _forbidden(refusal: Refusal) -> Response:
    how = (
        "The metrics answer only requests from this machine unless the app registers @ae.dashboard_access "
        "(which also opens the dashboard), e.g. to let a Prometheus server in by address or token."
    )
    if refusal.proxied:
        how += " Behind a proxy, wrap the app in werkzeug's ProxyFix so the client's address is known."
    if refusal.hooked:
        how = ""
    body = f"403 Forbidden\n{refusal.reason}\n{how}\n".replace("\n\n", "\n")
    return Response(body, status=403, content_type="text/plain; charset=utf-8")


def register(app: Flask, state: AppState) -> Metrics | None:
    """Count the app's job events and serve them at ``ASYNCENDPOINTS_METRICS_URL``, if that is set.

    :raises ConfigurationError: when it is set and prometheus-client is not installed.
    """
    url = state.settings.metrics_url
    if url is None:
        return None
    metrics = Metrics(app, state)
    app.add_url_rule(url, endpoint=METRICS_ENDPOINT, view_func=metrics.view, methods=["GET"])
    app.extensions[EXTENSION_KEY] = metrics
    return metrics


def metrics_registry(app: Flask) -> CollectorRegistry:
    """The registry the app's scrapes answer from, to serve it elsewhere too.

    For example from a machine that runs only ``flask asyncendpoints worker`` processes, which
    serve no HTTP: ``prometheus_client.start_http_server(9101, registry=metrics_registry(app))``.

    :raises ConfigurationError: when ``ASYNCENDPOINTS_METRICS_URL`` is not set for the app.
    """
    metrics = app.extensions.get(EXTENSION_KEY)
    if not isinstance(metrics, Metrics):
        raise ConfigurationError(
            "The app has no metrics: set ASYNCENDPOINTS_METRICS_URL (e.g. '/metrics') before init_app()."
        )
    return metrics.registry
