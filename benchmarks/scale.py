"""scale: whether Redis store costs stay flat as the queue grows, and what a finished job costs in memory.

1. Throughput with 10^3, 10^5 and 10^6 jobs already queued (``--sizes``): the queue is pre-filled with
   pipelined calls of the store's own create script, plus ``--measure`` jobs per run so it never drops
   below the size; then one thread claims (``BATCH_SIZE`` at a time) and completes ``--measure`` jobs
   through the store API, and separately submits ``--measure`` new ones. Each run is one such window on
   the same queue; figures are medians over runs, plus the slowdown: the smallest size's claim+complete
   rate over the largest's (1.0 is flat).
2. Redis memory per finished small job: ``INFO memory`` ``used_memory`` before and after creating,
   claiming and completing ``--memory-jobs`` jobs, over that number; and ``MEMORY USAGE`` of one job
   hash plus its share of the index it is left in (the expiring set), and the hash's encoding.
3. Memory store: Python memory (tracemalloc) per finished job, after submitting and running
   ``--memory-jobs`` jobs through the worker's ``run_once``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: see benchmarks/__init__.py
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import gc
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from typing import Any

from benchmarks import _common as common
from benchmarks.bench_app import NOOP, ae, create_app, memory_store, small_body
from flask_asyncendpoints.config import DEFAULTS
from flask_asyncendpoints.jobs import JobPayload, JobStatus
from flask_asyncendpoints.stores.redis import RedisStore

LEASE = 300.0
RESULT_TTL = float(DEFAULTS["RESULT_TTL"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(__doc__, runs=3)
    parser.add_argument(
        "--sizes", type=common.int_list, default=[1000, 100_000, 1_000_000], help="queue sizes (default 1e3,1e5,1e6)"
    )
    parser.add_argument(
        "--measure", type=common.positive_int, default=5000, help="jobs claimed+completed per run (default 5000)"
    )
    parser.add_argument(
        "--batch-size", type=common.positive_int, default=int(DEFAULTS["BATCH_SIZE"]), help="jobs per claim"
    )
    parser.add_argument(
        "--memory-jobs", type=common.positive_int, default=10_000, help="jobs for the memory figures (default 10000)"
    )
    parser.add_argument("--part", choices=["all", "throughput", "memory"], default="all")
    args = parser.parse_args(argv)
    report = common.Report(
        "scale",
        {
            "sizes": args.sizes,
            "measure": args.measure,
            "batch_size": args.batch_size,
            "memory_jobs": args.memory_jobs,
            "runs": args.runs,
        },
    )
    with common.redis_target(args.redis_url) as target:
        report.note(target.describe())
        if not target.owned:
            report.note("a shared Redis: used_memory deltas include whatever else changed meanwhile")
        if args.part in ("all", "throughput"):
            report.note("throughput: one thread, store API calls (claim a batch, complete each job; create)")
            for size in args.sizes:
                claim_runs, create_runs = _throughput(target, size, args.measure, args.batch_size, args.runs)
                report.add(f"scale.redis.claim_complete.queued_{size}", "jobs/s", claim_runs)
                report.add(f"scale.redis.create.queued_{size}", "jobs/s", create_runs)
            smallest, largest = min(args.sizes), max(args.sizes)
            if largest != smallest:
                low = report.get(f"scale.redis.claim_complete.queued_{smallest}").value
                high = report.get(f"scale.redis.claim_complete.queued_{largest}").value
                # How many times slower the largest queue is than the smallest (1.0: flat).
                report.add(f"scale.redis.claim_complete.slowdown_{largest}_vs_{smallest}", "x", [low / high])
        if args.part in ("all", "memory"):
            _redis_memory(target, args.memory_jobs, report)
    if args.part in ("all", "memory"):
        report.add("scale.memory_store.bytes_per_finished_job", "bytes", [_memory_store_bytes(args.memory_jobs)])
    report.emit(args.json)
    return 0


def _throughput(
    target: common.RedisTarget, size: int, measure: int, batch: int, runs: int
) -> tuple[list[float], list[float]]:
    prefix = target.new_prefix()
    store = RedisStore.from_url(target.url, key_prefix=prefix)
    try:
        ids = [str(uuid.uuid4()) for _ in range(size + measure * runs)]
        common.prefill_redis(store, ids, NOOP, small_body)
        del ids
        claim_runs, create_runs = [], []
        payload = JobPayload(body=small_body(0))
        for _ in range(runs):
            done = 0
            began = time.perf_counter()
            while done < measure:
                claimed = store.claim(min(batch, measure - done), LEASE)
                if not claimed:
                    raise RuntimeError("the queue ran dry")
                for attempt in claimed:
                    store.complete(attempt.job.id, attempt.token, "null", result_ttl=RESULT_TTL)
                done += len(claimed)
            claim_runs.append(measure / (time.perf_counter() - began))
            began = time.perf_counter()
            for _ in range(measure):
                store.create(str(uuid.uuid4()), NOOP, payload, max_retries=3)
            create_runs.append(measure / (time.perf_counter() - began))
        return claim_runs, create_runs
    finally:
        store.close()
        target.clean(prefix)


def _redis_memory(target: common.RedisTarget, jobs: int, report: common.Report) -> None:
    prefix = target.new_prefix()
    store = RedisStore.from_url(target.url, key_prefix=prefix)
    client = target.client
    try:
        ids = [str(uuid.uuid4()) for _ in range(jobs)]
        # One job first, so the shared keys (queue, counts, indexes) exist before the baseline.
        common.prefill_redis(store, ids[:1], NOOP, small_body)
        _finish_all(store, 1)
        before = int(client.info("memory")["used_memory"])
        common.prefill_redis(store, ids[1:], NOOP, small_body)
        _finish_all(store, jobs - 1)
        after = int(client.info("memory")["used_memory"])
        if store.counts()[JobStatus.COMPLETED] != jobs:
            raise RuntimeError("not every job completed")
        report.add("scale.redis.used_memory_per_finished_job", "bytes", [(after - before) / max(jobs - 1, 1)])
        sample = f"{prefix}:job:{ids[len(ids) // 2]}"
        hash_bytes = int(client.memory_usage(sample, samples=0) or 0)
        expiring = f"{prefix}:jobs:expiring"
        entry_bytes = int(client.memory_usage(expiring, samples=0) or 0) / max(int(client.zcard(expiring)), 1)
        report.add("scale.redis.job_hash_memory_usage", "bytes", [hash_bytes])
        report.add("scale.redis.expiring_entry_memory_usage", "bytes", [entry_bytes])
        report.add("scale.redis.job_memory_usage_total", "bytes", [hash_bytes + entry_bytes])
        encoding = client.object("encoding", sample)
        fields = client.hlen(sample)
        report.note(f"a finished job hash: {fields} fields, encoding {encoding!r}")
    finally:
        store.close()
        target.clean(prefix)


def _finish_all(store: RedisStore, jobs: int) -> None:
    done = 0
    while done < jobs:
        claimed = store.claim(100, LEASE)
        if not claimed:
            raise RuntimeError(f"only {done} of {jobs} jobs could be claimed")
        for attempt in claimed:
            store.complete(attempt.job.id, attempt.token, "null", result_ttl=RESULT_TTL)
        done += len(claimed)


def _memory_store_bytes(jobs: int) -> float:
    """tracemalloc's count of the Python memory that ``jobs`` submitted and completed jobs hold."""
    app = create_app(memory_store(), BATCH_SIZE=100)
    worker = ae.get_worker(app)
    ae.submit(NOOP, small_body(0), app=app)  # one job first: lazily created structures are not counted
    worker.run_once()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(jobs):
            ae.submit(NOOP, small_body(n), app=app)
        while worker.run_once():
            pass
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    counts: Any = ae.get_store(app).counts()
    if counts[JobStatus.COMPLETED] != jobs + 1:
        raise RuntimeError("not every job completed")
    return (after - before) / jobs


if __name__ == "__main__":
    sys.exit(main())
