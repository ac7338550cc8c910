"""sql: the SQL store's drain, submit, pick-up latency and claim cost, on PostgreSQL, MySQL/MariaDB or SQLite.

``--url`` names the database (``postgresql://…``, ``mysql://…``, ``sqlite:///path.db``; default a
SQLite file in a temporary directory). Every run writes tables of its own (a fresh ``bench…`` prefix)
and drops them at the end: never point it at tables that matter.

Parts (``--part``, default all but ``scale``):

``drain``    Pre-creates ``--jobs`` no-op jobs, then one worker with 2 threads drains them (in a process
             of its own unless ``--worker inprocess``). Jobs/s is N over the time from the earliest
             ``startedAt`` to the latest ``completedAt``.
``submit``   Jobs/s through ``ae.submit`` from one thread, no worker running.
``latency``  An idle worker in another process; one job at a time, ``--gap`` after the last; p50 and
             p99 of submit -> handler start. PostgreSQL wakes the worker with ``NOTIFY``; elsewhere it
             finds the job at its next poll (``--poll-interval``).
``scale``    Claim (batch 5) + complete throughput from one thread with ``--sizes`` jobs queued
             (default 10³ and 10⁶; the 10⁶ pre-fill takes tens of minutes), and the ``EXPLAIN`` of the claim.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

if not __package__:  # run as a file: see benchmarks/__init__.py
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from benchmarks import _common as common
from benchmarks.bench_app import NOOP, STAMP, ae, create_app, small_body
from flask_asyncendpoints.jobs import JobPayload
from flask_asyncendpoints.stores import NewJob
from flask_asyncendpoints.stores.sql import SQLStore

PARTS = ("drain", "submit", "latency", "scale")
#: Jobs per create_many call when pre-filling.
FILL_CHUNK = 2000


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(__doc__, runs=3, redis=False)
    parser.add_argument("--url", help="the database (default: a SQLite file in a temporary directory)")
    parser.add_argument("--part", action="append", choices=PARTS, help="parts to run (default all but scale)")
    parser.add_argument("--jobs", type=common.positive_int, default=20_000, help="drain: jobs per run (default 20000)")
    parser.add_argument("--submits", type=common.positive_int, default=5000, help="submit: jobs per run (default 5000)")
    parser.add_argument("--batch-size", type=common.positive_int, default=5, help="ASYNCENDPOINTS_BATCH_SIZE (5)")
    parser.add_argument("--worker", choices=["process", "inprocess"], default="process", help="drain: where (process)")
    parser.add_argument("--samples", type=common.positive_int, default=300, help="latency: jobs (default 300)")
    parser.add_argument("--gap", type=common.positive_float, default=0.01, help="latency: idle seconds between jobs")
    parser.add_argument("--poll-interval", type=common.positive_float, default=1.0, help="the worker's (1.0)")
    parser.add_argument("--sizes", type=common.int_list, default=[1000, 1_000_000], help="scale: queued (1e3,1e6)")
    parser.add_argument("--measure", type=common.positive_int, default=2000, help="scale: jobs claimed per size")
    args = parser.parse_args(argv)
    parts = args.part or ["drain", "submit", "latency"]
    with _database(args.url) as url:
        family = SQLStore.from_url(url, key_prefix="probe").family
        report = common.Report("sql", {"family": family, "runs": args.runs, "batch_size": args.batch_size})
        report.note(f"database: {url.split('@')[-1]}; tables under a fresh prefix per run, dropped after")
        config = {"BATCH_SIZE": args.batch_size, "POLL_INTERVAL": args.poll_interval}
        if "drain" in parts:
            report.note(f"drain: {args.jobs} jobs, worker {args.worker}, 2 threads")
            runs = [_drain(url, args.jobs, config, args.worker) for _ in range(args.runs)]
            report.add(f"sql.{family}.drain", "jobs/s", runs)
        if "submit" in parts:
            report.add(f"sql.{family}.submit", "jobs/s", [_submit(url, args.submits) for _ in range(args.runs)])
        if "latency" in parts:
            p50s, p99s = [], []
            for _ in range(args.runs):
                p50, p99 = _latency(url, args.samples, args.gap, config)
                p50s.append(p50)
                p99s.append(p99)
            report.add(f"sql.{family}.pickup.p50", "ms", p50s)
            report.add(f"sql.{family}.pickup.p99", "ms", p99s)
        if "scale" in parts:
            rates = {size: _scale(url, size, args.measure, report) for size in args.sizes}
            for size, rate in rates.items():
                report.add(f"sql.{family}.claim_complete.queued_{size}", "jobs/s", [rate])
            if len(rates) > 1:
                smallest, largest = min(rates), max(rates)
                report.add(f"sql.{family}.claim_complete.slowdown", "x", [rates[smallest] / rates[largest]])
    report.emit(args.json)
    return 0


@contextmanager
def _database(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="ae-bench-sql-") as directory:
        yield f"sqlite:///{Path(directory) / 'jobs.db'}"


@contextmanager
def _app(url: str, **config: Any) -> Iterator[tuple[Flask, SQLStore, dict[str, Any]]]:
    """An app on fresh tables; the tables are dropped afterwards."""
    settings = {"STORE": url, "KEY_PREFIX": f"bench{uuid.uuid4().hex[:8]}", **config}
    app = create_app(**settings)
    store = ae.get_store(app)
    assert isinstance(store, SQLStore)
    store.init_db()
    try:
        yield app, store, settings
    finally:
        ae.shutdown(app, timeout=10)
        store.tables.metadata.drop_all(store.engine)
        store.close()


def _fill(store: SQLStore, total: int, name: str = NOOP) -> list[str]:
    ids = []
    for start in range(0, total, FILL_CHUNK):
        chunk = [
            NewJob(str(uuid.uuid4()), name, JobPayload(body=small_body(n)), 3)
            for n in range(start, min(total, start + FILL_CHUNK))
        ]
        store.create_many(chunk)
        ids += [job.id for job in chunk]
    return ids


def _drain(url: str, jobs: int, config: dict[str, Any], mode: str) -> float:
    with _app(url, **config) as (app, store, settings):
        _fill(store, jobs)
        timeout = 60.0 + jobs / 50
        if mode == "inprocess":
            ae.start_worker(app)
            common.wait_for_finished(store, jobs, timeout=timeout)
        else:
            with common.WorkerProcess(settings, concurrency=2) as worker:
                common.wait_for_finished(store, jobs, timeout=timeout, alive=worker.check)
        c = store.tables.jobs.c
        with store.engine.connect() as conn:
            first, last = conn.execute(select(func.min(c.started_at), func.max(c.completed_at))).one()
        return jobs / max(float(last) - float(first), 1e-6)


def _submit(url: str, jobs: int) -> float:
    with _app(url) as (app, _store, _settings):
        for n in range(20):  # the first ones create the queue's row and warm the pool
            ae.submit(NOOP, small_body(n), app=app)
        started = time.perf_counter()
        for n in range(jobs):
            ae.submit(NOOP, small_body(n), app=app)
        return jobs / (time.perf_counter() - started)


def _latency(url: str, samples: int, gap: float, config: dict[str, Any]) -> tuple[float, float]:
    with _app(url, **config) as (app, store, settings), common.WorkerProcess(settings, concurrency=2) as worker:
        delays = []
        for n in range(samples + 5):
            time.sleep(gap)  # allow-sleep: the worker must be idle, blocked in its wait, when the job arrives
            submitted = time.time()
            job = ae.submit(STAMP, small_body(n), app=app)
            finished = store.wait_for_finish(job.id, 30)
            worker.check()
            if finished is None or not isinstance(finished.result, dict):
                raise RuntimeError(f"job {job.id} did not complete: {finished}")
            if n >= 5:  # the first few warm up the worker's connections
                delays.append((finished.result["handlerStartedAt"] - submitted) * 1000)
        return common.percentile(delays, 50), common.percentile(delays, 99)


def _scale(url: str, size: int, measure: int, report: common.Report) -> float:
    with _app(url) as (_, store, _settings):
        _fill(store, size)
        done = 0
        elapsed = 0.0
        while done < measure:
            started = time.perf_counter()
            claimed = store.claim(5, 300)
            store.complete_many([(job, "null") for job in claimed], result_ttl=3600)
            elapsed += time.perf_counter() - started
            done += len(claimed)
            _fill(store, len(claimed))  # the queue stays at its size, outside the timing
        if size == max(report.params.get("explained", 0), size):
            report.params["explained"] = size
            for line in _explain(store).splitlines():
                report.note(f"EXPLAIN at {size} queued: {line}")
        return done / elapsed


def _explain(store: SQLStore) -> str:
    query = store._lifecycle.claim_query("default", 5)
    compiled = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if store.family == "sqlite" else "EXPLAIN "
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + compiled).fetchall()
    return "\n".join(" | ".join(str(value) for value in row) for row in rows)


if __name__ == "__main__":
    sys.exit(main())
