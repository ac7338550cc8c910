"""Celery with its Redis broker and its Redis result backend, both on ``BENCH_REDIS_URL``.

Configured: ``broker_url`` and ``result_backend`` (the URL); ``task_default_queue`` (a queue of this
run's own, ``<BENCH_PREFIX>-celery``); and ``global_keyprefix`` ``<BENCH_PREFIX>-celery:`` in both
``broker_transport_options`` and ``result_backend_transport_options``, so every key Celery writes
(the queue's list, ``_kombu.binding.*``, ``unacked*``, ``celery-task-meta-*``) starts with it and
the run's clean-up can delete them. Everything else is at Celery's defaults: JSON for tasks and
results, ``task_acks_late`` off, a prefetch multiplier of 4, results kept for a day. With the Redis
backend, ``delay`` subscribes to the task's result channel and ``AsyncResult.get`` waits on that
subscription (pub/sub), not by polling.

Worker: ``celery -A benchmarks.peers.celery_app worker --pool threads --concurrency 2
--without-gossip --without-mingle --without-heartbeat -Q <queue> --loglevel WARNING``: one process,
2 threads, without the cluster chatter a lone worker does not need.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_PREFIX", "bench")
#: The queue, and the start of every key Celery writes for this run.
QUEUE = f"{PREFIX}-celery"
KEY_PREFIX = f"{QUEUE}:"

app = Celery("benchmarks.peers.celery_app")
app.conf.update(
    broker_url=URL,
    result_backend=URL,
    task_default_queue=QUEUE,
    broker_transport_options={"global_keyprefix": KEY_PREFIX},
    result_backend_transport_options={"global_keyprefix": KEY_PREFIX},
)
_client = redis.Redis.from_url(URL)


@app.task()
def rpush(n: int) -> float:
    started = time.time()
    _client.rpush(f"{PREFIX}:done", started)
    return started
