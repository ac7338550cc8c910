"""enqueue: jobs/s through the Python submit API (``ae.submit``), from one thread and from several,
and through the bulk API (``ae.submit_many``) on Redis.

Each run submits N no-op jobs with a small dict payload to a fresh store, no worker running, split
evenly over the threads; jobs/s is N over the wall time from the first submit to the last return.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: see benchmarks/__init__.py
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import threading
import time
from collections.abc import Sequence

from flask import Flask

from benchmarks import _common as common
from benchmarks.bench_app import NOOP, ae, create_app, memory_store, small_body

#: Submits before the clock starts (the first one loads the store's scripts).
WARMUP = 20


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(__doc__, runs=5)
    parser.add_argument("--store", choices=["memory", "redis", "both"], default="both", help="default both")
    parser.add_argument("--jobs", type=common.positive_int, default=20_000, help="jobs per run (default 20000)")
    parser.add_argument(
        "--threads",
        type=common.int_list,
        default=[1, 4],
        help="comma-separated thread counts to measure (default 1,4)",
    )
    parser.add_argument(
        "--many",
        type=common.positive_int,
        default=100,
        help="also measure ae.submit_many with this many jobs per call (default 100; 1 to skip)",
    )
    args = parser.parse_args(argv)
    stores = ["memory", "redis"] if args.store == "both" else [args.store]
    report = common.Report("enqueue", {"jobs": args.jobs, "runs": args.runs, "threads": args.threads})

    if "memory" in stores:
        for threads in args.threads:
            runs = [_run(create_app(memory_store()), args.jobs, threads) for _ in range(args.runs)]
            report.add(f"enqueue.memory.threads_{threads}", "jobs/s", runs)
    if "redis" in stores:
        with common.redis_target(args.redis_url) as target:
            report.note(target.describe())
            for threads in args.threads:
                runs = []
                for _ in range(args.runs):
                    prefix = target.new_prefix()
                    app = create_app(STORE=target.url, KEY_PREFIX=prefix)
                    try:
                        runs.append(_run(app, args.jobs, threads))
                    finally:
                        ae.get_store(app).close()
                        target.clean(prefix)
                report.add(f"enqueue.redis.threads_{threads}", "jobs/s", runs)
            if args.many > 1:
                runs = []
                for _ in range(args.runs):
                    prefix = target.new_prefix()
                    app = create_app(STORE=target.url, KEY_PREFIX=prefix)
                    try:
                        runs.append(_run_many(app, args.jobs, args.many))
                    finally:
                        ae.get_store(app).close()
                        target.clean(prefix)
                report.add(f"enqueue.redis.submit_many_{args.many}", "jobs/s", runs)
    report.emit(args.json)
    return 0


def _run(app: Flask, jobs: int, threads: int) -> float:
    for n in range(WARMUP):
        ae.submit(NOOP, small_body(-n), app=app)
    shares = [jobs // threads + (1 if i < jobs % threads else 0) for i in range(threads)]
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def submit(count: int) -> None:
        start.wait()
        try:
            for n in range(count):
                ae.submit(NOOP, small_body(n), app=app)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=submit, args=(share,), daemon=True) for share in shares]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError("a submitting thread failed") from errors[0]
    return jobs / elapsed


def _run_many(app: Flask, jobs: int, per_call: int) -> float:
    """Jobs/s through ``ae.submit_many``, ``per_call`` jobs a call, from one thread."""
    ae.submit_many(NOOP, [small_body(-n) for n in range(WARMUP)], app=app)
    bodies = [small_body(n) for n in range(jobs)]
    began = time.perf_counter()
    for first in range(0, jobs, per_call):
        ae.submit_many(NOOP, bodies[first : first + per_call], app=app)
    return jobs / (time.perf_counter() - began)


if __name__ == "__main__":
    sys.exit(main())
