"""monitoring: what the store's monitoring reads cost with 10^3 and 10^6 jobs stored.

For each of ``--sizes`` (default 10^3 and 10^6) a fresh store is filled with that many ``Queued``
jobs through ``create_many`` (``--chunk`` jobs per call), every ``--rare-every``-th (10th) of them of
a second job name, after ``--finished`` jobs (default a tenth of the size, at most 10^5) were
created, claimed and finished (one in ten ``Failed``, the rest ``Completed``). Then each read below
is called ``--samples`` times in a row (after one call that is not timed), and its median and p99
are reported in ms; ``--runs`` repeats the rounds on the same store (figures: medians over runs):

``page_first``       the first page (``--limit`` 50) of the ``Queued`` list, the biggest status;
``page_deep``        the page after following the cursors ``--depth`` (200) pages in (fewer when the
                     list is shorter: the last page);
``page_name``        the first ``Queued`` page with the rarer job name as the filter;
``page_completed``   the first page of the ``Completed`` list (when there are finished jobs);
``queue_stats``, ``counts_by_name``, ``throughput``: one call each.

The page figures' slowdown is the largest size's median over the smallest's (1.0: flat). The fill's
duration is reported too (``fill``, in seconds).

``--store redis`` (default) starts a ``redis-server`` of its own (or ``--redis-url``, under a fresh
key prefix); ``--store memory`` is the memory store without bounds; ``--store sql`` with ``--url``
(``postgresql://…``, ``mysql://…``, ``sqlite:///path.db``; default a SQLite file in a temporary
directory) writes tables of its own (a fresh ``bench…`` prefix) and drops them at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: see benchmarks/__init__.py
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import gc
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from benchmarks import _common as common
from benchmarks.bench_app import NOOP, STAMP, memory_store, small_body
from flask_asyncendpoints.config import DEFAULTS
from flask_asyncendpoints.jobs import JobError, JobPayload, JobStatus
from flask_asyncendpoints.stores import NewJob, Store

#: The job name of most jobs, and the rarer one the name filter looks for.
COMMON_NAME, RARE_NAME = NOOP, STAMP
LEASE = 300.0
RESULT_TTL = float(DEFAULTS["RESULT_TTL"])
#: The reads whose slowdown between sizes is reported.
PAGES = ("page_first", "page_deep", "page_name", "page_completed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(__doc__, runs=3)
    parser.add_argument("--store", choices=["redis", "memory", "sql"], help="the store (default redis; sql with --url)")
    parser.add_argument("--url", help="--store sql: the database (default: a SQLite file in a temporary directory)")
    parser.add_argument(
        "--sizes", type=common.int_list, default=[1000, 1_000_000], help="Queued jobs stored (default 1e3,1e6)"
    )
    parser.add_argument(
        "--finished", type=int, help="jobs finished before the fill (default: a tenth of the size, at most 1e5)"
    )
    parser.add_argument("--rare-every", type=common.positive_int, default=10, help="one job in N has the rare name")
    parser.add_argument("--samples", type=common.positive_int, default=500, help="timed calls per read (default 500)")
    parser.add_argument("--limit", type=common.positive_int, default=50, help="jobs per page (default 50)")
    parser.add_argument("--depth", type=common.positive_int, default=200, help="pages followed for page_deep (200)")
    parser.add_argument("--chunk", type=common.positive_int, default=2000, help="jobs per create_many (2000)")
    args = parser.parse_args(argv)
    kind = args.store or ("sql" if args.url else "redis")
    if args.url and kind != "sql":
        parser.error("--url is for --store sql")
    if args.finished is not None and args.finished < 0:
        parser.error("--finished must be 0 or more")
    report = common.Report(
        "monitoring",
        {
            "store": kind,
            "sizes": args.sizes,
            "finished": "size/10 (≤ 1e5)" if args.finished is None else args.finished,
            "rare_every": args.rare_every,
            "samples": args.samples,
            "limit": args.limit,
            "depth": args.depth,
            "runs": args.runs,
        },
    )
    with _stores(kind, args, report) as (label, new_store):
        for size in args.sizes:
            finished = min(size // 10, 100_000) if args.finished is None else args.finished
            with new_store() as store:
                began = time.perf_counter()
                _fill(store, size, finished, args.rare_every, args.chunk)
                report.add(f"monitoring.{label}.fill.{size}", "s", [time.perf_counter() - began])
                reads, depth = _reads(store, args.limit, args.depth, finished > 0)
                report.note(f"{size}: {finished} finished first; page_deep is page {depth + 1} of the Queued list")
                rounds = [_time_all(reads, args.samples) for _ in range(args.runs)]
            for read in reads:
                for stat in ("p50", "p99"):
                    report.add(f"monitoring.{label}.{read}.{stat}.{size}", "ms", [r[read][stat] for r in rounds])
            del reads  # they hold the store: let a memory store go before the next is filled
    smallest, largest = min(args.sizes), max(args.sizes)
    if largest != smallest:
        for read in PAGES:
            try:
                low = report.get(f"monitoring.{label}.{read}.p50.{smallest}").value
                high = report.get(f"monitoring.{label}.{read}.p50.{largest}").value
            except KeyError:
                continue
            # How many times slower the page is with the largest size than with the smallest (1.0: flat).
            report.add(f"monitoring.{label}.{read}.slowdown_{largest}_vs_{smallest}", "x", [high / low])
    report.emit(args.json)
    return 0


#: Makes a fresh, empty store, and cleans up after it.
StoreFactory = Callable[[], AbstractContextManager[Store]]


@contextmanager
def _stores(kind: str, args: Any, report: common.Report) -> Iterator[tuple[str, StoreFactory]]:
    """The label of the store in the figures' names, and a context manager of a fresh, empty store."""
    if kind == "memory":
        report.note("memory store without bounds, in this process")

        @contextmanager
        def fresh_memory() -> Iterator[Store]:
            yield memory_store()
            gc.collect()

        yield "memory", fresh_memory
    elif kind == "redis":
        from flask_asyncendpoints.stores.redis import RedisStore

        with common.redis_target(args.redis_url) as target:
            report.note(target.describe())

            @contextmanager
            def fresh_redis() -> Iterator[Store]:
                prefix = target.new_prefix()
                store = RedisStore.from_url(target.url, key_prefix=prefix)
                try:
                    yield store
                finally:
                    store.close()
                    target.clean(prefix)

            yield "redis", fresh_redis
    else:
        with _database(args.url) as url:
            from flask_asyncendpoints.stores.sql import SQLStore

            report.note(f"database: {url.split('@')[-1]}; tables under a fresh prefix per size, dropped after")

            @contextmanager
            def fresh_sql() -> Iterator[Store]:
                store = SQLStore.from_url(url, key_prefix=f"bench{uuid.uuid4().hex[:8]}")
                store.init_db()
                try:
                    yield store
                finally:
                    store.tables.metadata.drop_all(store.engine)
                    store.close()

            probe = SQLStore.from_url(url, key_prefix="probe")
            family = probe.family
            probe.close()
            yield family, fresh_sql


@contextmanager
def _database(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="ae-bench-monitoring-") as directory:
        yield f"sqlite:///{Path(directory) / 'jobs.db'}"


def _create(store: Store, first: int, total: int, rare_every: int, chunk: int) -> None:
    """Create jobs ``first`` .. ``first + total - 1``, ``chunk`` per ``create_many``."""

    def job(n: int) -> NewJob:
        name = RARE_NAME if n % rare_every == 0 else COMMON_NAME
        return NewJob(str(uuid.uuid4()), name, JobPayload(body=small_body(n)), 3)

    for start in range(first, first + total, chunk):
        store.create_many([job(n) for n in range(start, min(first + total, start + chunk))])


def _fill(store: Store, size: int, finished: int, rare_every: int, chunk: int) -> None:
    """``finished`` jobs finished (one in ten ``Failed``), then ``size`` jobs ``Queued``."""
    _create(store, 0, finished, rare_every, chunk)
    error = JobError("Benchmark", "failed on purpose")
    done = 0
    while done < finished:
        claimed = store.claim(min(100, finished - done), LEASE)
        if not claimed:
            raise RuntimeError(f"only {done} of {finished} jobs could be claimed")
        failing = {attempt.job.id for i, attempt in enumerate(claimed, done) if i % 10 == 9}
        store.complete_many(
            [(attempt, "null") for attempt in claimed if attempt.job.id not in failing], result_ttl=RESULT_TTL
        )
        for attempt in claimed:
            if attempt.job.id in failing:
                store.fail(attempt.job.id, attempt.token, error, retry_delay=None, result_ttl=RESULT_TTL)
        done += len(claimed)
    _create(store, finished, size, rare_every, chunk)
    counts = store.counts()
    if counts[JobStatus.QUEUED] != size or counts[JobStatus.COMPLETED] + counts[JobStatus.FAILED] != finished:
        raise RuntimeError(f"the fill left {dict(counts)}, not {size} Queued and {finished} finished")


def _reads(store: Store, limit: int, depth: int, finished: bool) -> tuple[dict[str, Callable[[], object]], int]:
    """The timed reads, checked once each, and how many pages in the deep page is."""
    first = store.list_jobs(JobStatus.QUEUED, limit=limit)
    if not first.jobs or any(job.status is not JobStatus.QUEUED for job in first.jobs):
        raise RuntimeError("the first page holds no Queued jobs")
    cursor, pages = first.cursor, 0
    while cursor is not None and pages < depth:
        page = store.list_jobs(JobStatus.QUEUED, cursor=cursor, limit=limit)
        if page.cursor is None:
            break
        cursor, pages = page.cursor, pages + 1
    named = store.list_jobs(JobStatus.QUEUED, name=RARE_NAME, limit=limit)
    if not named.jobs or any(job.name != RARE_NAME for job in named.jobs):
        raise RuntimeError(f"the name filter answered {[job.name for job in named.jobs][:5]}…")
    reads: dict[str, Callable[[], object]] = {
        "page_first": lambda: store.list_jobs(JobStatus.QUEUED, limit=limit),
        "page_deep": lambda: store.list_jobs(JobStatus.QUEUED, cursor=cursor, limit=limit),
        "page_name": lambda: store.list_jobs(JobStatus.QUEUED, name=RARE_NAME, limit=limit),
    }
    if finished:
        reads["page_completed"] = lambda: store.list_jobs(JobStatus.COMPLETED, limit=limit)
    reads["queue_stats"] = store.queue_stats
    reads["counts_by_name"] = store.counts_by_name
    reads["throughput"] = store.throughput
    return reads, pages + (1 if first.cursor is not None else 0)


def _time_all(reads: dict[str, Callable[[], object]], samples: int) -> dict[str, dict[str, float]]:
    """Each read's p50 and p99 in ms over ``samples`` calls in a row, after one call not timed."""
    out = {}
    for read, call in reads.items():
        call()
        times = []
        for _ in range(samples):
            began = time.perf_counter()
            call()
            times.append((time.perf_counter() - began) * 1000)
        out[read] = {"p50": common.median(times), "p99": common.percentile(times, 99)}
    return out


if __name__ == "__main__":
    sys.exit(main())
