"""The memory store, :class:`MemoryStore`: jobs in the memory of one process.

The modules, each importing only those listed after it:

- ``store``: :class:`MemoryStore`, the job lifecycle under one lock.
- ``monitoring``: the monitoring reads, throughput counters and worker registry it mixes in.
- ``entries``: what is kept per job and per queue, and which index holds a job in each status.
- ``index``: :class:`~.index.SortedIndex`, the ordered keys every queue and list is made of.
"""

from __future__ import annotations

from .store import DEFAULT_MAX_FINISHED, DEFAULT_MAX_PENDING, MemoryStore

__all__ = ["DEFAULT_MAX_FINISHED", "DEFAULT_MAX_PENDING", "MemoryStore"]
