"""The peers :mod:`benchmarks.compare` runs the same workloads through (``pip install -e ".[bench]"``).

Each module defines the same job as :data:`benchmarks.bench_app.RPUSH`: push the time the handler
started to a Redis list and return it. Each reads the Redis URL and a key prefix of its own from the
environment (``BENCH_REDIS_URL``, ``BENCH_PREFIX``), so its worker processes find the same queue.
"""
