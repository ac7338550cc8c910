"""drain: how fast one worker with 2 threads empties a queue of no-op jobs.

Each run pre-enqueues N no-op jobs with a small dict payload, then starts one worker (2 threads,
MAX_CONCURRENCY=2, leases and recovery on, BATCH_SIZE as configured) and waits until every job is
finished. Jobs/s is N over the time from the earliest ``startedAt`` to the latest ``completedAt`` in
the job records, so neither the worker's start-up nor the waiting costs anything per job.

With Redis the worker runs in a process of its own (``flask asyncendpoints worker``) unless
``--worker inprocess``; the memory store can only be drained in process.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

if not __package__:  # run as a file: see benchmarks/__init__.py
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from collections.abc import Sequence
from typing import Any

from benchmarks import _common as common
from benchmarks.bench_app import NOOP, ae, create_app, memory_store, small_body
from flask_asyncendpoints.jobs import JobStatus
from flask_asyncendpoints.stores import Store


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(__doc__, runs=5)
    parser.add_argument("--store", choices=["memory", "redis", "both"], default="both", help="default both")
    parser.add_argument("--jobs", type=common.positive_int, default=20_000, help="jobs per run (default 20000)")
    parser.add_argument(
        "--batch-size", type=common.positive_int, help="ASYNCENDPOINTS_BATCH_SIZE (default: its default)"
    )
    parser.add_argument(
        "--worker",
        choices=["process", "inprocess"],
        default="process",
        help="Redis: run the worker in its own process (default) or in this one",
    )
    parser.add_argument(
        "--worker-log-level", default="WARNING", help="log level of the worker process (INFO logs 2 lines per job)"
    )
    args = parser.parse_args(argv)
    stores = ["memory", "redis"] if args.store == "both" else [args.store]
    config: dict[str, Any] = {} if args.batch_size is None else {"BATCH_SIZE": args.batch_size}
    report = common.Report("drain", {"jobs": args.jobs, "runs": args.runs, "batch_size": args.batch_size or "default"})

    if "memory" in stores:
        report.note("memory: worker threads in this process (the memory store is per process)")
        report.add("drain.memory", "jobs/s", [_drain_memory(args.jobs, config) for _ in range(args.runs)])
    if "redis" in stores:
        with common.redis_target(args.redis_url) as target:
            report.note(target.describe())
            if args.worker == "process":
                report.note(
                    f"redis: worker in its own process (flask asyncendpoints worker, log {args.worker_log_level})"
                )
            else:
                report.note("redis: worker threads in this process")
            runs = [
                _drain_redis(target, args.jobs, config, args.worker, args.worker_log_level) for _ in range(args.runs)
            ]
            report.add("drain.redis", "jobs/s", runs)
    report.emit(args.json)
    return 0


def _timeout(jobs: int) -> float:
    return 60.0 + jobs / 100


def _drain_memory(jobs: int, config: dict[str, Any]) -> float:
    app = create_app(memory_store(), **config)
    ids = [ae.submit(NOOP, small_body(n), app=app).id for n in range(jobs)]
    store = ae.get_store(app)
    ae.start_worker(app)
    try:
        common.wait_for_finished(store, jobs, timeout=_timeout(jobs))
    finally:
        ae.shutdown(app, timeout=10)
    return _rate(store, ids)


def _drain_redis(target: common.RedisTarget, jobs: int, config: dict[str, Any], mode: str, log_level: str) -> float:
    prefix = target.new_prefix()
    config = {**config, "STORE": target.url, "KEY_PREFIX": prefix}
    app = create_app(**config)
    store = ae.get_store(app)
    try:
        ids = [str(uuid.uuid4()) for _ in range(jobs)]
        common.prefill_redis(store, ids, NOOP, small_body)
        if mode == "inprocess":
            ae.start_worker(app)
            try:
                common.wait_for_finished(store, jobs, timeout=_timeout(jobs))
            finally:
                ae.shutdown(app, timeout=10)
        else:
            settings = ae.get_worker(app).settings
            with common.WorkerProcess(config, concurrency=settings.max_concurrency, log_level=log_level) as worker:
                common.wait_for_finished(store, jobs, timeout=_timeout(jobs), alive=worker.check)
        return _rate_redis(store, prefix, ids)
    finally:
        store.close()
        target.clean(prefix)


def _rate(store: Store, ids: Sequence[str]) -> float:
    """Jobs per second from the job records: N / (latest completedAt - earliest startedAt)."""
    first = last = None
    for job_id in ids:
        job = store.get(job_id)
        if job is None or job.status is not JobStatus.COMPLETED or job.started_at is None or job.completed_at is None:
            raise RuntimeError(f"job {job_id} did not complete: {job}")
        first = job.started_at if first is None else min(first, job.started_at)
        last = job.completed_at if last is None else max(last, job.completed_at)
    assert first is not None and last is not None
    return len(ids) / max((last - first).total_seconds(), 1e-6)


def _rate_redis(store: Store, prefix: str, ids: Sequence[str]) -> float:
    """As :func:`_rate`, reading only ``sa``/``da`` of each job hash (see ``lua/common.lua``), pipelined."""
    client: Any = store._client  # type: ignore[attr-defined]
    first, last = float("inf"), float("-inf")
    for start in range(0, len(ids), 2000):
        pipe = client.pipeline(transaction=False)
        for job_id in ids[start : start + 2000]:
            pipe.hmget(f"{prefix}:job:{job_id}", "s", "sa", "da")
        for job_id, (status, started, done) in zip(ids[start : start + 2000], pipe.execute(), strict=True):
            if status != b"Completed" or started is None or done is None:
                raise RuntimeError(f"job {job_id} did not complete (status {status!r})")
            first = min(first, float(started))
            last = max(last, float(done))
    return len(ids) / max(last - first, 1e-6)


if __name__ == "__main__":
    sys.exit(main())
