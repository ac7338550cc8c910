"""The worker: a pool of threads that claim jobs and run them, and a thread that looks after leases.

One module per concern, each importing only the ones listed before it, so a job's walk from its
claim through its run to its result write never returns into a module it left:

* :mod:`.ledger`: the attempts held in this process, their slots, the lock and the stop flag;
  every other module shares this state rather than calling into each other for it.
* :mod:`.results`: writing outcomes (results one at a time or batched through an outbox,
  failures, cancels, jobs given back) and letting each attempt go.
* :mod:`.run`: one attempt's run: the handler in the app context, its result, the outcome.
* :mod:`.pool`: the pool threads and the claim turn.
* :mod:`.maintenance`: the maintenance thread: leases, timeouts, recovery and expiry.
* :mod:`.lifecycle`: the :class:`Worker` that builds these, starts them and shuts them down.
"""

from __future__ import annotations

from .ledger import MAX_ERROR_BACKOFF, logger
from .lifecycle import Worker, shutdown_all
from .maintenance import TIMEOUT
from .results import COMPLETION_BATCH, RESULT_NOT_SERIALIZABLE, retry_delay
from .run import HANDLER_NOT_FOUND, INVALID_REQUEST, PROGRESS_INTERVAL

__all__ = [
    "COMPLETION_BATCH",
    "HANDLER_NOT_FOUND",
    "INVALID_REQUEST",
    "MAX_ERROR_BACKOFF",
    "PROGRESS_INTERVAL",
    "RESULT_NOT_SERIALIZABLE",
    "TIMEOUT",
    "Worker",
    "logger",
    "retry_delay",
    "shutdown_all",
]
