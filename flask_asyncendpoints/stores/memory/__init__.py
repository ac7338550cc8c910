"""The memory store, :class:`MemoryStore`: jobs in the memory of one process.

The modules, each importing only those listed after it:

- ``store``: :class:`MemoryStore`: creating jobs, claims, the ends of attempts, cancels, progress and logs;
  it mixes in the parts below.
- ``waiting``: idle workers' waits and wake-ups, long-polls, the cancel watchers.
- ``upkeep``: recovering expired leases, purges, requeue and delete, recurring occurrences.
- ``monitoring``: the counts, the monitoring reads, history and logs reads and the worker registry.
- ``state``: the state under the one lock and the bookkeeping every change goes through
  (indexes, counts, history, expiry and eviction, throughput, waking workers).
- ``entries``: what is kept per job and per queue, and which index holds a job in each status.
- ``index``: :class:`~.index.SortedIndex`, the ordered keys every queue and list is made of.
"""

from __future__ import annotations

from .state import DEFAULT_MAX_FINISHED, DEFAULT_MAX_PENDING
from .store import MemoryStore

__all__ = ["DEFAULT_MAX_FINISHED", "DEFAULT_MAX_PENDING", "MemoryStore"]
