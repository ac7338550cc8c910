"""drain: how fast one worker (2 threads unless ``--threads``) empties a queue of no-op jobs.

Each run pre-enqueues N no-op jobs with a small dict payload, then starts one worker (2 threads,
MAX_CONCURRENCY=2, unless ``--threads``; leases and recovery on, BATCH_SIZE as configured) and
waits until every job is finished. Jobs/s is N over the time from the earliest ``startedAt`` to
the latest ``completedAt`` in the job records, so neither the worker's start-up nor the waiting
costs anything per job.

With Redis the worker runs in a process of its own (``flask asyncendpoints worker``) unless
``--worker inprocess``; the memory store can only be drained in process. ``--processes N`` runs
that command with ``--processes N``: N worker processes of 2 threads each (``--threads``) under a supervisor. A
worker in its own process is started first; once every worker process runs, the N jobs are created
with one create_many call (one round trip), so all processes start on a full queue together.

``--threads N`` sets the worker's threads (``MAX_CONCURRENCY``, 2 by default; per process with
``--processes``). ``--switch-interval S`` sets this process's ``sys.setswitchinterval`` for the
runs (the memory drain, and ``--worker inprocess``): how often the interpreter makes a thread that
holds the GIL hand it to another, which costs two threads contending for the same locks dearly.

The memory drain runs ``gc.collect()`` between the prefill and the worker's start. The prefill
leaves tens of thousands of new objects (each job's record) in the collector's young generations,
so without it the first full collection, which walks every object of the process, falls inside
the measured drain, at a moment that depends on where the prefill left the collector's counters:
a cost of the prefill, not of the drain. The collections the drain itself causes (its records
replaced at each transition) are still inside the figure.
"""

from __future__ import annotations

import gc
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
from benchmarks.bench_app import BENCH_CONFIG, NOOP, ae, create_app, memory_store, small_body
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
    parser.add_argument(
        "--processes",
        type=common.positive_int,
        default=1,
        help="Redis, worker in its own process: worker processes of --threads threads each (default 1)",
    )
    parser.add_argument(
        "--threads", type=common.positive_int, help="worker threads, MAX_CONCURRENCY (default: the benchmarks' 2)"
    )
    parser.add_argument(
        "--switch-interval",
        type=common.positive_float,
        help="sys.setswitchinterval of this process during the runs, in seconds (default: the interpreter's)",
    )
    args = parser.parse_args(argv)
    if args.processes > 1 and (args.worker != "process" or args.store == "memory"):
        parser.error("--processes is for the Redis drain with the worker in its own process")
    stores = ["memory", "redis"] if args.store == "both" else [args.store]
    config: dict[str, Any] = {} if args.batch_size is None else {"BATCH_SIZE": args.batch_size}
    if args.threads is not None:
        config["MAX_CONCURRENCY"] = args.threads
    params = {"jobs": args.jobs, "runs": args.runs, "batch_size": args.batch_size or "default"}
    report = common.Report(
        "drain",
        {
            **params,
            "processes": args.processes,
            "threads": args.threads or BENCH_CONFIG["MAX_CONCURRENCY"],
            "switch_interval_s": args.switch_interval or sys.getswitchinterval(),
        },
    )
    previous = sys.getswitchinterval()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    try:
        _measure(args, stores, config, report)
    finally:
        sys.setswitchinterval(previous)
    report.emit(args.json)
    return 0


def _measure(args: Any, stores: list[str], config: dict[str, Any], report: common.Report) -> None:
    """The runs on each store of ``stores``, added to ``report``."""
    if "memory" in stores:
        report.note("memory: worker threads in this process (the memory store is per process)")
        report.add("drain.memory", "jobs/s", [_drain_memory(args.jobs, config) for _ in range(args.runs)])
    if "redis" in stores:
        with common.redis_target(args.redis_url) as target:
            report.note(target.describe())
            if args.worker == "process":
                processes = "" if args.processes == 1 else f" --processes {args.processes}"
                report.note(
                    f"redis: worker in its own process (flask asyncendpoints worker{processes}, "
                    f"log {args.worker_log_level}), started before the jobs are created"
                )
            else:
                report.note("redis: worker threads in this process")
            runs = [
                _drain_redis(target, args.jobs, config, args.worker, args.worker_log_level, args.processes)
                for _ in range(args.runs)
            ]
            report.add("drain.redis", "jobs/s", runs)


def _timeout(jobs: int) -> float:
    return 60.0 + jobs / 100


def _drain_memory(jobs: int, config: dict[str, Any]) -> float:
    app = create_app(memory_store(), **config)
    ids = [ae.submit(NOOP, small_body(n), app=app).id for n in range(jobs)]
    store = ae.get_store(app)
    # The prefill's debt to the garbage collector is paid before the clock starts (see the module's doc).
    gc.collect()
    ae.start_worker(app)
    try:
        common.wait_for_finished(store, jobs, timeout=_timeout(jobs))
    finally:
        ae.shutdown(app, timeout=10)
    return _rate(store, ids)


def _drain_redis(
    target: common.RedisTarget, jobs: int, config: dict[str, Any], mode: str, log_level: str, processes: int
) -> float:
    prefix = target.new_prefix()
    config = {**config, "STORE": target.url, "KEY_PREFIX": prefix}
    app = create_app(**config)
    store = ae.get_store(app)
    try:
        ids = [str(uuid.uuid4()) for _ in range(jobs)]
        if mode == "inprocess":
            common.prefill_redis(store, ids, NOOP, small_body)
            ae.start_worker(app)
            try:
                common.wait_for_finished(store, jobs, timeout=_timeout(jobs))
            finally:
                ae.shutdown(app, timeout=10)
        else:
            threads = ae.get_worker(app).settings.max_concurrency
            with common.WorkerProcess(config, concurrency=threads, log_level=log_level, processes=processes) as worker:
                # Every process waits for work before the first job exists: none starts ahead of the others.
                worker.wait_running()
                common.prefill_redis(store, ids, NOOP, small_body, atomic=True)
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
    """As :func:`_rate`, reading only ``s``, ``sa``, ``da`` of each state hash (``lua/common.lua``), pipelined."""
    from flask_asyncendpoints.stores.redis.keys import Layout

    client: Any = store._client  # type: ignore[attr-defined]
    keys = Layout(prefix).default
    first, last = float("inf"), float("-inf")
    for start in range(0, len(ids), 2000):
        pipe = client.pipeline(transaction=False)
        for job_id in ids[start : start + 2000]:
            pipe.hmget(keys.state(job_id), "s", "sa", "da")
        for job_id, (status, started, done) in zip(ids[start : start + 2000], pipe.execute(), strict=True):
            if status != b"Completed" or started is None or done is None:
                raise RuntimeError(f"job {job_id} did not complete (status {status!r})")
            first = min(first, float(started))
            last = max(last, float(done))
    return len(ids) / max(last - first, 1e-6)


if __name__ == "__main__":
    sys.exit(main())
