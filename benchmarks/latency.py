"""latency: how soon an idle worker starts a job, and how soon a long-polling client sees its result.

One job at a time, with a pause before each so the worker is idle (blocked in its wake-up wait):
the time ``t0`` is taken just before ``ae.submit``; the handler returns the epoch time it started
at; a poller asks ``GET /jobs/<id>?wait=5`` through the Flask test client right after the submit
returns (or calls ``store.wait_for_finish`` with ``--poller store``) and notes when the answer
arrives. Reported: submit→handler-start and submit→result-seen, p50 and p99 (each the median over
runs), and how long the submit call itself takes.

The worker runs in this process for the memory store; for Redis in a process of its own
(``flask asyncendpoints worker``) unless ``--worker inprocess``. Both processes read the same clock.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: see benchmarks/__init__.py
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from benchmarks import _common as common
from benchmarks.bench_app import STAMP, ae, create_app, memory_store, small_body

#: Jobs run before the measured ones (process start-up, script loading, first connections).
WARMUP = 20
#: The long-poll wait each poll asks for (seconds).
POLL_WAIT = 5


@dataclass
class Samples:
    submit_call: list[float] = field(default_factory=list)
    to_start: list[float] = field(default_factory=list)
    to_seen: list[float] = field(default_factory=list)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(__doc__, runs=3)
    parser.add_argument("--store", choices=["memory", "redis", "both"], default="both", help="default both")
    parser.add_argument("--samples", type=common.positive_int, default=500, help="jobs per run (default 500)")
    parser.add_argument(
        "--gap", type=float, default=0.01, help="seconds between a result and the next submit (default 0.01)"
    )
    parser.add_argument(
        "--poller",
        choices=["http", "store"],
        default="http",
        help="see results through GET /jobs/<id>?wait=5 (default) or store.wait_for_finish",
    )
    parser.add_argument(
        "--worker", choices=["process", "inprocess"], default="process", help="Redis: where the worker runs"
    )
    args = parser.parse_args(argv)
    stores = ["memory", "redis"] if args.store == "both" else [args.store]
    report = common.Report(
        "latency", {"samples": args.samples, "runs": args.runs, "gap_s": args.gap, "poller": args.poller}
    )
    poll = "GET /jobs/<id>?wait=5 (Flask test client)" if args.poller == "http" else "store.wait_for_finish"
    report.note(f"poller: {poll}, in the submitting process")

    if "memory" in stores:
        report.note("memory: worker threads in this process")
        runs = []
        for _ in range(args.runs):
            app = create_app(memory_store())
            ae.start_worker(app)
            try:
                runs.append(_measure(app, args.samples, args.gap, args.poller, _nothing))
            finally:
                ae.shutdown(app, timeout=10)
        _add(report, "memory", runs)
    if "redis" in stores:
        with common.redis_target(args.redis_url) as target:
            report.note(target.describe())
            where = "its own process (flask asyncendpoints worker)" if args.worker == "process" else "this process"
            report.note(f"redis: worker in {where}")
            runs = []
            for _ in range(args.runs):
                prefix = target.new_prefix()
                config = {"STORE": target.url, "KEY_PREFIX": prefix}
                app = create_app(**config)
                with ExitStack() as stack:
                    stack.callback(target.clean, prefix)
                    stack.callback(ae.get_store(app).close)
                    alive = _nothing
                    if args.worker == "process":
                        worker = stack.enter_context(common.WorkerProcess(config, concurrency=2))
                        alive = worker.check
                    else:
                        ae.start_worker(app)
                        stack.callback(ae.shutdown, app, timeout=10)
                    runs.append(_measure(app, args.samples, args.gap, args.poller, alive))
            _add(report, "redis", runs)
    report.emit(args.json)
    return 0


def _nothing() -> None:
    pass


def _add(report: common.Report, store: str, runs: list[Samples]) -> None:
    def ms(values: list[float], q: float) -> float:
        return common.percentile(values, q) * 1000

    for name, attr in (("submit_to_start", "to_start"), ("submit_to_seen", "to_seen"), ("submit_call", "submit_call")):
        for q in (50, 99):
            report.add(f"latency.{store}.{name}.p{q}", "ms", [ms(getattr(run, attr), q) for run in runs])


def _measure(app: Flask, samples: int, gap: float, poller: str, alive: Callable[[], None]) -> Samples:
    client = app.test_client()
    store = ae.get_store(app)

    def seen(job_id: str) -> dict[str, Any]:
        if poller == "http":
            response = client.get(f"/jobs/{job_id}?wait={POLL_WAIT}")
            record: dict[str, Any] = response.get_json()
            return record
        job = store.wait_for_finish(job_id, POLL_WAIT)
        return job.to_dict() if job is not None else {}

    result = Samples()
    for n in range(WARMUP + samples):
        time.sleep(gap)
        t0 = time.time()
        job = ae.submit(STAMP, small_body(n), app=app)
        t1 = time.time()
        record = seen(job.id)
        t2 = time.time()
        if n == 0:  # a worker process may still be starting
            deadline = time.monotonic() + 60
            while record.get("status") != "Completed" and time.monotonic() < deadline:
                alive()
                record = seen(job.id)
        if record.get("status") != "Completed":
            alive()
            raise RuntimeError(f"job {job.id} was not completed within {POLL_WAIT} s: {record.get('status')}")
        if n < WARMUP:
            continue
        result.submit_call.append(t1 - t0)
        result.to_start.append(record["result"]["handlerStartedAt"] - t0)
        result.to_seen.append(t2 - t0)
    return result


if __name__ == "__main__":
    sys.exit(main())
