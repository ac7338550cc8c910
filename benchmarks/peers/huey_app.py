"""huey with its Redis storage, as its docs set it up for a thread worker: ``results=True`` and
``notify_result=True`` (so a blocking ``result.get`` waits on a Redis list rather than polling).

Worker: ``huey_consumer benchmarks.peers.huey_app.huey -w 2 -k thread``.
"""

from __future__ import annotations

import os
import time

import redis
from huey import RedisHuey

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_PREFIX", "bench")

huey = RedisHuey(PREFIX.replace("-", "_"), url=URL, results=True, notify_result=True)
_client = redis.Redis.from_url(URL)


@huey.task()
def rpush(n: int) -> float:
    started = time.time()
    _client.rpush(f"{PREFIX}:done", started)
    return started
