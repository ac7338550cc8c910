"""The SQL store's monitoring reads and its registry of worker processes, as store methods.

Each is one transaction around a query of :mod:`.reads`, which says how each stays cheap (counter
rows, index walks from a cursor, throughput buckets).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from ...jobs import JobStatus
from ..monitoring import DEFAULT_PAGE_SIZE, JobPage, Monitoring, QueueStats, RunningJob, Throughput, WorkerInfo

if TYPE_CHECKING:
    from .reads import Reads
    from .txn import Tx

T = TypeVar("T")


class SQLMonitoring(Monitoring):
    """:class:`~flask_asyncendpoints.stores.monitoring.Monitoring` on the SQL store's tables."""

    if TYPE_CHECKING:
        _reads: Reads

        def _read(self, what: str, operation: Callable[[Tx], T], now: float | None = None) -> T: ...
        def _write(self, what: str, operation: Callable[[Tx], T], now: float | None) -> T: ...

    def queue_stats(self, *, now: float | None = None) -> list[QueueStats]:
        """See :meth:`Monitoring.queue_stats <flask_asyncendpoints.stores.monitoring.Monitoring.queue_stats>`."""
        return self._read("reading queue statistics", self._reads.queue_stats, now)

    def counts_by_name(self) -> Mapping[str, Mapping[JobStatus, int]]:
        """See :meth:`Monitoring.counts_by_name <flask_asyncendpoints.stores.monitoring.Monitoring.counts_by_name>`."""
        return self._read("counting jobs by name", self._reads.counts_by_name)

    def list_jobs(
        self,
        status: JobStatus,
        *,
        queue: str | None = None,
        name: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> JobPage:
        """See :meth:`Monitoring.list_jobs <flask_asyncendpoints.stores.monitoring.Monitoring.list_jobs>`.

        A ``queue`` filter, like a ``name`` filter, walks the status's index past other queues' jobs.
        """
        status = JobStatus(status)
        listing = self._reads.list_jobs
        return self._read("listing jobs", lambda tx: listing(tx, status, queue, name, cursor, limit))

    def running_jobs(self, *, limit: int = 100) -> list[RunningJob]:
        """See :meth:`Monitoring.running_jobs <flask_asyncendpoints.stores.monitoring.Monitoring.running_jobs>`."""
        return self._read("listing running jobs", lambda tx: self._reads.running_jobs(tx, limit))

    def throughput(self, *, now: float | None = None) -> Throughput:
        """See :meth:`Monitoring.throughput <flask_asyncendpoints.stores.monitoring.Monitoring.throughput>`."""
        return self._read("reading throughput", self._reads.throughput, now)

    def register_worker(self, info: WorkerInfo, *, ttl: float, now: float | None = None) -> None:
        """See :meth:`Monitoring.register_worker
        <flask_asyncendpoints.stores.monitoring.Monitoring.register_worker>`."""
        self._write("registering a worker", lambda tx: self._reads.register_worker(tx, info, ttl), now)

    def unregister_worker(self, worker_id: str) -> None:
        """See :meth:`Monitoring.unregister_worker
        <flask_asyncendpoints.stores.monitoring.Monitoring.unregister_worker>`."""
        self._write("unregistering a worker", lambda tx: self._reads.unregister_worker(tx, worker_id), None)

    def workers(self, *, now: float | None = None) -> list[WorkerInfo]:
        """See :meth:`Monitoring.workers <flask_asyncendpoints.stores.monitoring.Monitoring.workers>`."""
        return self._read("listing workers", self._reads.workers, now)
