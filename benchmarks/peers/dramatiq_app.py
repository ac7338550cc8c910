"""Dramatiq with its Redis broker and its default worker (``dramatiq`` starts one process per core,
8 threads each); no result backend, so only drain is measured.

Worker: ``dramatiq benchmarks.peers.dramatiq_app``.
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_PREFIX", "bench")

dramatiq.set_broker(RedisBroker(url=URL, namespace=f"{PREFIX}-dramatiq"))
_client = redis.Redis.from_url(URL)


@dramatiq.actor(max_retries=0)
def rpush(n: int) -> None:
    _client.rpush(f"{PREFIX}:done", time.time())
