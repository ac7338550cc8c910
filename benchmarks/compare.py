"""compare: the same workloads through flask-asyncendpoints and its peers, interleaved in one run.

One redis-server on loopback; the job does one RPUSH (the time it started, to a list) and returns
that time; results are kept; 2 worker threads; leases and recovery at their defaults. Each run
measures every system in turn (the order alternates between runs), and each figure is the median
over runs, so a drift of the machine's speed hits all systems alike.

- enqueue: N single submits from one thread with no worker running (``ae.submit`` / calling the
  huey task), jobs/s.
- drain: those N jobs, then one worker starts: ours ``flask asyncendpoints worker`` (1 process × 2
  threads, and 2 processes × 2 threads), huey's thread consumer (``-w 2 -k thread``), Dramatiq's
  default worker (one process per core × 8 threads). Jobs/s is N over the time from the first to
  the last RPUSH, so start-up does not count.
- latency: the same worker, idle; one job at a time ``--gap`` after the previous result.
  submit→handler-start (from the time the handler returns) and submit→result-seen (ours:
  ``store.wait_for_finish``, the long-poll's wait, or ``GET /jobs/<id>?wait=5`` with ``--poller
  http``; huey: ``result.get(blocking=True)``), p50 and p99.
- commands per job: ``INFO commandstats`` deltas (Lua's ``redis.call`` included) over the enqueue
  and over the drain, divided by N.
- ceiling: the enqueue loop with a bare ``EVALSHA`` of a one-call script, and with a bare ``PING``,
  on one connection: the physical limit of one thread's round trips.

Ratios (ours ÷ peer for rates, peer ÷ ours for latencies: above 1 means ours is better) follow the
figures. The peers come with ``pip install -e ".[bench]"``; a peer that is not installed is left out
with a note.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: see benchmarks/__init__.py
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import importlib.util
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from benchmarks import _common as common
from benchmarks.bench_app import RPUSH, ae, create_app

#: Latency samples run before the measured ones (script loading, first connections).
WARMUP = 20
#: Seconds a latency sample may take before the run is given up.
SAMPLE_TIMEOUT = 5.0
#: The script of the ceiling's EVALSHA: one redis.call, as small as a script gets.
ONE_CALL_SCRIPT = "return redis.call('INCR', KEYS[1])"


@dataclass
class Measured:
    """One system's figures in one run."""

    enqueue: float = float("nan")
    drain: float = float("nan")
    enqueue_calls: float = float("nan")
    worker_calls: float = float("nan")
    to_start: list[float] = field(default_factory=list)
    to_seen: list[float] = field(default_factory=list)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(__doc__, runs=3)
    parser.add_argument("--jobs", type=common.positive_int, default=10_000, help="jobs per drain (default 10000)")
    parser.add_argument("--samples", type=common.positive_int, default=300, help="latency samples (default 300)")
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between a result and the next submit")
    parser.add_argument("--poller", choices=["store", "http"], default="store", help="how ours sees a result")
    parser.add_argument("--peers", default="huey,dramatiq", help="comma-separated peers to run (default huey,dramatiq)")
    args = parser.parse_args(argv)
    peers = [p for p in (part.strip() for part in args.peers.split(",")) if p]
    report = common.Report(
        "compare",
        {"jobs": args.jobs, "samples": args.samples, "runs": args.runs, "gap_s": args.gap, "poller": args.poller},
    )
    for peer in list(peers):
        module = {"huey": "huey", "dramatiq": "dramatiq"}.get(peer)
        if module is None or importlib.util.find_spec(module) is None:
            report.note(f"{peer}: not installed (pip install -e '.[bench]'); left out")
            peers.remove(peer)

    runs: dict[str, list[Measured]] = {name: [] for name in ["ours", "ours_2x2", *peers]}
    ceiling: dict[str, list[float]] = {"evalsha": [], "ping": []}
    with common.redis_target(args.redis_url) as target:
        report.note(target.describe())
        report.note("ours: flask asyncendpoints worker, 2 threads per process; huey: thread consumer -w 2")
        for run in range(args.runs):
            order = ["ours", "ours_2x2", *peers]
            if run % 2:
                order.reverse()
            for name in order:
                runs[name].append(SYSTEMS[name](target, args))
            ceiling["evalsha"].append(_ceiling(target, args.jobs, "evalsha"))
            ceiling["ping"].append(_ceiling(target, args.jobs, "ping"))
    _report(report, runs, ceiling)
    report.emit(args.json)
    return 0


# -- this library ----------------------------------------------------------------------------------------


def _ours(target: common.RedisTarget, args: Any, *, processes: int = 1) -> Measured:
    prefix = target.new_prefix()
    config = {"STORE": target.url, "KEY_PREFIX": prefix}
    app = create_app(**config)
    store = ae.get_store(app)
    measured = Measured()
    try:
        before = _calls(target)
        start = time.perf_counter()
        for n in range(args.jobs):
            ae.submit(RPUSH, {"n": n}, app=app)
        measured.enqueue = args.jobs / (time.perf_counter() - start)
        measured.enqueue_calls = (_calls(target) - before) / args.jobs
        workers = [common.WorkerProcess(config, concurrency=2) for _ in range(processes)]
        try:
            measured.drain, measured.worker_calls = _drain(target, prefix, args.jobs, workers[0].check)
            if processes == 1:
                client = app.test_client()

                def submit(n: int) -> str:
                    return ae.submit(RPUSH, {"n": n}, app=app).id

                def seen(job_id: str) -> float:
                    if args.poller == "http":
                        record = client.get(f"/jobs/{job_id}?wait={SAMPLE_TIMEOUT:g}").get_json()
                        status, result = record["status"], record["result"]
                    else:
                        job = store.wait_for_finish(job_id, SAMPLE_TIMEOUT)
                        status, result = (job.status.value, job.result) if job is not None else (None, None)
                    if status != "Completed":
                        workers[0].check()
                        raise RuntimeError(f"job {job_id} not completed within {SAMPLE_TIMEOUT} s: {status}")
                    return float(result)

                measured.to_start, measured.to_seen = _latency(args, submit, seen)
        finally:
            for worker in workers:
                worker.stop()
    finally:
        store.close()
        target.clean(prefix)
    return measured


# -- the peers -------------------------------------------------------------------------------------------


@contextmanager
def _peer_process(command: list[str], target: common.RedisTarget, prefix: str) -> Iterator[Callable[[], None]]:
    """A peer's worker in a process of its own; yields a check that raises if it died."""
    env = common.python_env(BENCH_REDIS_URL=target.url, BENCH_PREFIX=prefix)
    with tempfile.TemporaryDirectory(prefix="ae-bench-peer-") as folder:
        log = Path(folder) / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command, cwd=common.REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

        def check() -> None:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[2]} exited ({proc.returncode}):\n{common.tail(log)}")

        try:
            yield check
        finally:
            common.stop_process(proc)


def _import_peer(module: str, target: common.RedisTarget, prefix: str) -> Any:
    """The peer's app module, configured for this run (it reads the environment when imported)."""
    import importlib
    import os

    os.environ["BENCH_REDIS_URL"], os.environ["BENCH_PREFIX"] = target.url, prefix
    name = f"benchmarks.peers.{module}"
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def _huey(target: common.RedisTarget, args: Any) -> Measured:
    prefix = target.new_prefix()
    peer = _import_peer("huey_app", target, prefix)
    measured = Measured()
    try:
        before = _calls(target)
        start = time.perf_counter()
        for n in range(args.jobs):
            peer.rpush(n)
        measured.enqueue = args.jobs / (time.perf_counter() - start)
        measured.enqueue_calls = (_calls(target) - before) / args.jobs
        command = [sys.executable, "-m", "huey.bin.huey_consumer", "benchmarks.peers.huey_app.huey"]
        with _peer_process([*command, "-w", "2", "-k", "thread"], target, prefix) as check:
            measured.drain, measured.worker_calls = _drain(target, prefix, args.jobs, check)
            results: dict[str, Any] = {}

            def submit(n: int) -> str:
                result = peer.rpush(n)
                results[result.id] = result
                return str(result.id)

            def seen(task_id: str) -> float:
                return float(results.pop(task_id).get(blocking=True, timeout=SAMPLE_TIMEOUT))

            measured.to_start, measured.to_seen = _latency(args, submit, seen)
    finally:
        peer.huey.storage.conn.close()
        target.clean_all_of(("huey.", f"{prefix}:"))
    return measured


def _dramatiq(target: common.RedisTarget, args: Any) -> Measured:
    prefix = target.new_prefix()
    peer = _import_peer("dramatiq_app", target, prefix)
    measured = Measured()
    try:
        before = _calls(target)
        start = time.perf_counter()
        for n in range(args.jobs):
            peer.rpush.send(n)
        measured.enqueue = args.jobs / (time.perf_counter() - start)
        measured.enqueue_calls = (_calls(target) - before) / args.jobs
        with _peer_process(
            [sys.executable, "-m", "dramatiq", "benchmarks.peers.dramatiq_app"], target, prefix
        ) as check:
            measured.drain, measured.worker_calls = _drain(target, prefix, args.jobs, check)
    finally:
        peer.dramatiq.get_broker().close()
        target.clean_all_of((f"{prefix}-dramatiq", f"{prefix}:"))
    return measured


SYSTEMS: dict[str, Callable[[common.RedisTarget, Any], Measured]] = {
    "ours": _ours,
    "ours_2x2": lambda target, args: _ours(target, args, processes=2),
    "huey": _huey,
    "dramatiq": _dramatiq,
}


# -- what every system shares ----------------------------------------------------------------------------


def _calls(target: common.RedisTarget) -> int:
    """Commands the server has executed so far (Lua's redis.call included), less this INFO call."""
    stats = target.client.info("commandstats")
    return sum(int(value["calls"]) for value in stats.values()) - 1


def _drain(target: common.RedisTarget, prefix: str, jobs: int, check: Callable[[], None]) -> tuple[float, float]:
    """Wait for ``jobs`` RPUSHes to ``<prefix>:done``; jobs/s over first to last, and commands per job."""
    done = f"{prefix}:done"
    before = _calls(target)
    deadline = time.monotonic() + 60 + jobs / 100
    while (count := int(target.client.llen(done))) < jobs:
        check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count} of {jobs} jobs ran in time")
        time.sleep(0.02)
    # The last results are written just after the last RPUSH: count until the worker is idle.
    time.sleep(0.2)
    calls = (_calls(target) - before) / jobs
    stamps = [float(value) for value in target.client.lrange(done, 0, -1)]
    target.client.delete(done)
    return jobs / max(max(stamps) - min(stamps), 1e-6), calls


def _latency(args: Any, submit: Callable[[int], str], seen: Callable[[str], float]) -> tuple[list[float], list[float]]:
    """Submit one job at a time ``--gap`` after the previous result; submit→start and submit→seen, in ms."""
    to_start: list[float] = []
    to_seen: list[float] = []
    for n in range(WARMUP + args.samples):
        time.sleep(args.gap)
        t0 = time.time()
        job_id = submit(n)
        started = seen(job_id)
        t2 = time.time()
        if n >= WARMUP:
            to_start.append((started - t0) * 1000)
            to_seen.append((t2 - t0) * 1000)
    return to_start, to_seen


def _ceiling(target: common.RedisTarget, jobs: int, kind: str) -> float:
    """Round trips per second of one thread on one connection: a bare EVALSHA of a one-call script, or PING."""
    import redis

    client = redis.Redis.from_url(target.url)
    key = f"{target.new_prefix()}:ceiling"
    sha = client.script_load(ONE_CALL_SCRIPT)
    connection = client.connection_pool.get_connection()
    command: tuple[Any, ...] = ("EVALSHA", sha, 1, key) if kind == "evalsha" else ("PING",)
    try:
        start = time.perf_counter()
        for _ in range(jobs):
            connection.send_command(*command)  # type: ignore[no-untyped-call]
            connection.read_response()
        return jobs / (time.perf_counter() - start)
    finally:
        client.connection_pool.release(connection)
        client.delete(key)
        client.close()


def _report(report: common.Report, runs: dict[str, list[Measured]], ceiling: dict[str, list[float]]) -> None:
    def pct(values: list[float], q: float) -> float:
        return common.percentile(values, q)

    for name, measured in runs.items():
        report.add(f"compare.{name}.enqueue", "jobs/s", [m.enqueue for m in measured])
        report.add(f"compare.{name}.drain", "jobs/s", [m.drain for m in measured])
        report.add(f"compare.{name}.enqueue_calls_per_job", "calls", [m.enqueue_calls for m in measured])
        report.add(f"compare.{name}.worker_calls_per_job", "calls", [m.worker_calls for m in measured])
        if measured and measured[0].to_start:
            for q in (50, 99):
                report.add(f"compare.{name}.submit_to_start.p{q}", "ms", [pct(m.to_start, q) for m in measured])
                report.add(f"compare.{name}.submit_to_seen.p{q}", "ms", [pct(m.to_seen, q) for m in measured])
    report.add("compare.ceiling.evalsha", "jobs/s", ceiling["evalsha"])
    report.add("compare.ceiling.ping", "jobs/s", ceiling["ping"])

    ours = {f.name: f.value for f in report.figures}

    def ratio(name: str, numerator: str, denominator: str) -> None:
        top, bottom = ours.get(numerator), ours.get(denominator)
        if top is not None and bottom is not None and bottom > 0:
            report.add(f"ratio.{name}", "x", [top / bottom])

    for peer in runs:
        if peer.startswith("ours"):
            continue
        ratio(f"enqueue.ours_vs_{peer}", "compare.ours.enqueue", f"compare.{peer}.enqueue")
        ratio(f"drain.ours_vs_{peer}", "compare.ours.drain", f"compare.{peer}.drain")
        ratio(f"drain.ours_2x2_vs_{peer}", "compare.ours_2x2.drain", f"compare.{peer}.drain")
        for q in (50, 99):
            for what in ("submit_to_start", "submit_to_seen"):
                # Latencies: the peer's over ours, so above 1 means ours is faster, as for rates.
                ratio(f"{what}.p{q}.{peer}_over_ours", f"compare.{peer}.{what}.p{q}", f"compare.ours.{what}.p{q}")
    ratio("enqueue.ours_vs_ceiling_evalsha", "compare.ours.enqueue", "compare.ceiling.evalsha")
    ratio("enqueue.ours_vs_ceiling_ping", "compare.ours.enqueue", "compare.ceiling.ping")
    ratio("drain.ours_2x2_vs_ours", "compare.ours_2x2.drain", "compare.ours.drain")


if __name__ == "__main__":
    sys.exit(main())
