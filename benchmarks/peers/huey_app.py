"""huey with its Redis storage, as its docs set it up for a thread worker: ``results=True`` and
``notify_result=True`` (so a blocking ``result.get`` waits on a Redis list rather than polling).

huey serializes with pickle by default; this benchmark stores only JSON, as the project does, so
huey gets :class:`JSONSerializer` (its task messages as JSON arrays, results as JSON), which costs
it about half a microsecond more a message than pickle (2.2 µs against 1.6 µs here).

Worker: ``huey_consumer benchmarks.peers.huey_app.huey -w 2 -k thread``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from huey import RedisHuey
from huey.registry import Message
from huey.serializer import Serializer

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_PREFIX", "bench")


class JSONSerializer(Serializer):  # type: ignore[misc]
    """huey's serializer with JSON for pickle: a task message as ``{"m": [fields]}``, anything else
    (a result) as ``{"v": value}``."""

    def _serialize(self, data: Any) -> bytes:
        if isinstance(data, Message):
            return json.dumps({"m": list(data)}).encode()
        return json.dumps({"v": data}).encode()

    def _deserialize(self, data: bytes) -> Any:
        decoded = json.loads(data)
        if "m" in decoded:
            return Message(*decoded["m"])
        return decoded["v"]


huey = RedisHuey(PREFIX.replace("-", "_"), url=URL, results=True, notify_result=True, serializer=JSONSerializer())
_client = redis.Redis.from_url(URL)


@huey.task()
def rpush(n: int) -> float:
    started = time.time()
    _client.rpush(f"{PREFIX}:done", started)
    return started
