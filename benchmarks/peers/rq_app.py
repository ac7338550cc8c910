"""RQ on ``BENCH_REDIS_URL``: a queue of this run's own, ``<BENCH_PREFIX>-rq``, with RQ's
``JSONSerializer`` (RQ's default is pickle, which this project does not use). Everything else is at
RQ's defaults: results kept 500 s (in a Redis stream per job, so ``job.latest_result(timeout=…)``
blocks on ``XREAD`` rather than polling), a job timeout of 180 s, no retries.

RQ's keys cannot be given a prefix of their own (``rq:`` is fixed, or read from the environment
once, when RQ is imported, in the newest releases), so the names in them that are this run's (the
queue's, the worker's, the job ids) are what its clean-up goes by.

Workers (one process; RQ has no threads): ``rq worker <queue> --name <BENCH_PREFIX>-rq-worker
--serializer rq.serializers.JSONSerializer --logging_level WARNING``, the default ``Worker``, which
forks a work horse per job; and the same with ``--worker-class rq.worker.SimpleWorker``, which runs
each job in the worker process itself, RQ's fastest setup.
"""

from __future__ import annotations

import os
import time

import redis
from rq import Queue
from rq.serializers import JSONSerializer

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_PREFIX", "bench")
QUEUE = f"{PREFIX}-rq"
WORKER = f"{PREFIX}-rq-worker"
SERIALIZER = "rq.serializers.JSONSerializer"

connection = redis.Redis.from_url(URL)
queue = Queue(QUEUE, connection=connection, serializer=JSONSerializer)
_client = redis.Redis.from_url(URL)


def rpush(n: int) -> float:
    started = time.time()
    _client.rpush(f"{PREFIX}:done", started)
    return started
