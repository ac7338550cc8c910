"""The app the store and worker benchmarks run: a no-op handler and a timestamping one.

``flask --app benchmarks.bench_app:create_app asyncendpoints worker`` runs its worker in a process
of its own; ``FLASK_ASYNCENDPOINTS_*`` variables configure it.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from flask import Flask, current_app

from flask_asyncendpoints import AsyncEndpoints, JobContext
from flask_asyncendpoints.stores import MemoryStore

ae = AsyncEndpoints()

#: A handler that does nothing (its result is ``null``).
NOOP = "Noop"
#: A handler that returns the epoch time it started at, so a poller learns when the handler ran.
STAMP = "Stamp"


@ae.handler(NOOP)
def noop(ctx: JobContext) -> None:
    return None


@ae.handler(STAMP)
def stamp(ctx: JobContext) -> dict[str, float]:
    return {"handlerStartedAt": time.time()}


#: A handler that does one RPUSH (the time it started, to ``<key prefix>:done`` in the store's Redis)
#: and returns that time: the job :mod:`benchmarks.compare` runs through this library and its peers.
RPUSH = "Rpush"


@functools.lru_cache(maxsize=4)
def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


@ae.handler(RPUSH)
def rpush(ctx: JobContext) -> float:
    started = time.time()
    config = current_app.config
    _redis_client(config["ASYNCENDPOINTS_STORE"]).rpush(f"{config['ASYNCENDPOINTS_KEY_PREFIX']}:done", started)
    return started


def small_body(n: int) -> dict[str, Any]:
    """The small dict payload of every benchmark job."""
    return {"n": n, "data": "hello world", "priority": 3}


#: Worker settings of every benchmark: 2 threads, leases and recovery on, otherwise the defaults.
BENCH_CONFIG: dict[str, Any] = {
    "WORKER": False,
    "MAX_CONCURRENCY": 2,
    "CLAIM_TIMEOUT": 300.0,
    "RECOVERY_ENABLED": True,
}


def memory_store() -> MemoryStore:
    """A memory store without its default bounds: a benchmark queues and keeps more jobs than they allow."""
    return MemoryStore(max_pending=None, max_finished=None)


def create_app(store: Any = None, **config: Any) -> Flask:
    """An app on ``store`` (default: ``ASYNCENDPOINTS_STORE`` from the environment, else memory).

    :param config: ``ASYNCENDPOINTS_*`` keys without the prefix; they override the environment.
    """
    app = Flask(__name__)
    app.config.update({f"ASYNCENDPOINTS_{key}": value for key, value in BENCH_CONFIG.items()})
    app.config.from_prefixed_env()
    app.config.update({f"ASYNCENDPOINTS_{key}": value for key, value in config.items()})
    ae.init_app(app, store=store)
    return app
