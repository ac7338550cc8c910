"""compare: the same workloads through flask-asyncendpoints and its peers, interleaved in one run.

One redis-server on loopback; the job does one RPUSH (the time it started, to a list) and returns
that time; results are kept; leases and recovery at their defaults. Each run measures every system
in turn (the order alternates between runs), and each figure is the median over runs, so a drift of
the machine's speed hits all systems alike. The peers (``--peers``, default all four): huey,
Dramatiq, Celery and RQ, set up in ``benchmarks/peers/`` (each module says what it configures).

- enqueue: N single submits from one thread with no worker running (``ae.submit``, calling the huey
  task, ``actor.send``, ``task.delay``, ``queue.enqueue``), jobs/s.
- drain: those N jobs, then one worker starts: ours ``flask asyncendpoints worker`` (1 process × 2
  threads, and 2 processes × 2 threads), huey's thread consumer (``-w 2 -k thread``), Dramatiq's
  default worker (one process per core × 8 threads), Celery's (``--pool threads --concurrency 2``:
  1 process × 2 threads), RQ's ``rq worker`` (system ``rq``: its default ``Worker``, one process
  that forks a work horse per job; RQ has no threads) and ``rq worker --worker-class
  rq.worker.SimpleWorker`` (system ``rq_simple``: no fork, RQ's fastest setup). Jobs/s is N over the
  time from the first to the last RPUSH, so start-up does not count.
- latency: the same worker, idle (Dramatiq: none, it keeps no results here); one job at a time
  ``--gap`` after the previous result. submit→handler-start (from the time the handler returns) and
  submit→result-seen (ours: ``store.wait_for_finish``, the long-poll's wait, or ``GET
  /jobs/<id>?wait=5`` with ``--poller http``; huey: ``result.get(blocking=True)``; Celery:
  ``AsyncResult.get``, on pub/sub; RQ: ``job.latest_result(timeout=…)``, a blocking ``XREAD``), p50
  and p99.
- commands per job: ``INFO commandstats`` deltas (Lua's ``redis.call`` included) over the enqueue
  and over the drain, divided by N; ``worker_calls_per_job_less_handler`` is the drain's less the
  one RPUSH every system's handler makes, so the queue's own calls.
- ceiling: the enqueue loop with a bare ``EVALSHA`` of a one-call script, and with a bare ``PING``,
  on one connection: the physical limit of one thread's round trips. ``enqueue.<peer>_vs_ceiling_evalsha``
  says how near each peer's enqueue comes to it, so what a ratio to that peer asks of ours:
  1.3× a peer at 0.6 of the ceiling is 0.78 of it.
- where an enqueue's time goes (every enqueue loop, the ceiling's too), in µs per job: this
  process's CPU time (``time.process_time``: Python, the client library, its system calls), the
  server's (``INFO cpu``, ``used_cpu_user`` + ``used_cpu_sys``: on a shared server, the others'
  work is in it too), and what is left of the wall time, when neither was on a CPU: the kernel's
  delivery of the request and the reply over loopback and the two wake-ups. A loop of one thread
  can be no faster than its three parts added up; each part is what a change would have to cut.
  The process's CPU time is every thread's: a client with threads of its own at work (Celery's)
  shows more CPU than the loop's and a rest below zero.

Ratios (ours ÷ peer for rates, peer ÷ ours for latencies: above 1 means ours is better) follow the
figures. The peers come with ``pip install -e ".[bench]"``; a peer that is not installed is left out
with a note. With ``--redis-url`` each system's keys are deleted after it ran; RQ's, which take no
prefix, by the queue's, the worker's and the jobs' names in them.
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


@dataclass
class Loop:
    """One enqueue loop (one call at a time from one thread): jobs/s, and the CPU time per job of
    this process and of the Redis server, in µs."""

    rate: float = float("nan")
    client_us: float = float("nan")
    server_us: float = float("nan")

    @property
    def other_us(self) -> float:
        """The wall time per job when neither process was on a CPU."""
        return 1e6 / self.rate - self.client_us - self.server_us


@dataclass
class Measured:
    """One system's figures in one run."""

    enqueue: Loop = field(default_factory=Loop)
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
    parser.add_argument(
        "--peers",
        default=",".join(DEFAULT_PEERS),
        help=f"comma-separated peers to run, of {', '.join(PEERS)} (default {','.join(DEFAULT_PEERS)}; rq runs "
        "both of RQ's workers)",
    )
    args = parser.parse_args(argv)
    names = [p for p in (part.strip() for part in args.peers.split(",")) if p]
    if unknown := [name for name in names if name not in PEERS]:
        parser.error(f"unknown peer(s) {', '.join(unknown)}: choose from {', '.join(PEERS)}")
    report = common.Report(
        "compare",
        {"jobs": args.jobs, "samples": args.samples, "runs": args.runs, "gap_s": args.gap, "poller": args.poller},
    )
    peers: list[str] = []
    for name in names:
        module, systems = PEERS[name]
        if importlib.util.find_spec(module) is None:
            report.note(f"{name}: not installed (pip install -e '.[bench]'); left out")
            continue
        peers += [system for system in systems if system not in peers]

    runs: dict[str, list[Measured]] = {name: [] for name in ["ours", "ours_2x2", *peers]}
    ceiling: dict[str, list[Loop]] = {"evalsha": [], "ping": []}
    with common.redis_target(args.redis_url) as target:
        report.note(target.describe())
        for name in ["ours", *peers]:
            report.note(f"{name}: {WORKERS[name]}")
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
        _enqueue(target, measured, args.jobs, lambda n: ae.submit(RPUSH, {"n": n}, app=app))
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
        target.client.delete(f"{prefix}:done")  # the latency jobs' RPUSHes: not a key of the library's
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
        _enqueue(target, measured, args.jobs, peer.rpush)
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
        storage = peer.huey.storage
        storage.conn.close()
        # huey's own keys are named after the instance (this run's prefix), not prefixed by it.
        keys = (storage.queue_key, storage.schedule_key, storage.result_key, storage.counter_key, storage.notify_prefix)
        target.clean_all_of((*keys, f"{prefix}:"))
    return measured


def _dramatiq(target: common.RedisTarget, args: Any) -> Measured:
    prefix = target.new_prefix()
    peer = _import_peer("dramatiq_app", target, prefix)
    measured = Measured()
    try:
        _enqueue(target, measured, args.jobs, peer.rpush.send)
        with _peer_process(
            [sys.executable, "-m", "dramatiq", "benchmarks.peers.dramatiq_app"], target, prefix
        ) as check:
            measured.drain, measured.worker_calls = _drain(target, prefix, args.jobs, check)
    finally:
        peer.dramatiq.get_broker().close()
        target.clean_all_of((f"{prefix}-dramatiq", f"{prefix}:"))
    return measured


def _celery(target: common.RedisTarget, args: Any) -> Measured:
    prefix = target.new_prefix()
    peer = _import_peer("celery_app", target, prefix)
    measured = Measured()
    try:
        _enqueue(target, measured, args.jobs, peer.rpush.delay)
        command = [
            sys.executable, "-m", "celery", "-A", "benchmarks.peers.celery_app", "worker",
            "--pool", "threads", "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-Q", peer.QUEUE, "--loglevel", "WARNING",
        ]  # fmt: skip
        with _peer_process(command, target, prefix) as check:
            measured.drain, measured.worker_calls = _drain(target, prefix, args.jobs, check)
            results: dict[str, Any] = {}

            def submit(n: int) -> str:
                result = peer.rpush.delay(n)
                results[result.id] = result
                return str(result.id)

            def seen(task_id: str) -> float:
                return float(results.pop(task_id).get(timeout=SAMPLE_TIMEOUT))

            measured.to_start, measured.to_seen = _latency(args, submit, seen)
    finally:
        peer.app.backend.result_consumer.stop()
        peer.app.pool.force_close_all()
        peer.app.close()
        target.clean_all_of((peer.KEY_PREFIX, f"{prefix}:"))
    return measured


def _rq(target: common.RedisTarget, args: Any, *, simple: bool = False) -> Measured:
    prefix = target.new_prefix()
    peer = _import_peer("rq_app", target, prefix)
    measured = Measured()
    job_ids: set[str] = set()
    try:
        _enqueue(target, measured, args.jobs, lambda n: peer.queue.enqueue(peer.rpush, n))
        job_ids.update(peer.queue.job_ids)  # LRANGE of the queue: the ids to clean up by
        command = [
            sys.executable, "-m", "rq.cli", "worker", peer.QUEUE, "--url", target.url, "--name", peer.WORKER,
            "--serializer", peer.SERIALIZER, "--logging_level", "WARNING",
        ]  # fmt: skip
        if simple:
            command += ["--worker-class", "rq.worker.SimpleWorker"]
        with _peer_process(command, target, prefix) as check:
            measured.drain, measured.worker_calls = _drain(target, prefix, args.jobs, check)
            jobs: dict[str, Any] = {}

            def submit(n: int) -> str:
                job = peer.queue.enqueue(peer.rpush, n)
                job_ids.add(job.id)
                jobs[job.id] = job
                return str(job.id)

            def seen(job_id: str) -> float:
                result = jobs.pop(job_id).latest_result(timeout=int(SAMPLE_TIMEOUT))
                if result is None or result.return_value is None:
                    check()
                    raise RuntimeError(f"RQ job {job_id} has no result within {SAMPLE_TIMEOUT} s: {result}")
                return float(result.return_value)

            measured.to_start, measured.to_seen = _latency(args, submit, seen)
    finally:
        peer.connection.close()
        _clean_rq(target, prefix, peer, job_ids)
    return measured


def _clean_rq(target: common.RedisTarget, prefix: str, peer: Any, job_ids: set[str]) -> None:
    """RQ's keys have no prefix of the run's own: delete those that name this run's queue, worker or jobs.

    One SCAN of RQ's namespace; a key goes if its name holds the run's prefix (the queue's and the
    worker's keys) or one of the run's job ids as a ``:``-separated part (``rq:job:<id>``,
    ``rq:results:<id>``, …); the queue and the worker leave RQ's shared sets. RQ's other shared keys
    (``rq:clean_groups``, a maintenance lock with a TTL) are left alone: another user's RQ may own them.
    """
    if target.owned:
        target.client.flushall()
        return
    from rq.job import Job
    from rq.queue import Queue
    from rq.worker import Worker

    namespace = Job.redis_job_namespace_prefix.removesuffix("job:")
    keys = [
        key
        for key in target.client.scan_iter(match=f"{namespace}*", count=1000)
        if prefix in (name := key.decode()) or not job_ids.isdisjoint(name.split(":"))
    ]
    for start in range(0, len(keys), 1000):
        target.client.unlink(*keys[start : start + 1000])
    target.client.srem(Queue.redis_queues_keys, peer.queue.key)
    target.client.srem(Worker.redis_workers_keys, Worker.redis_worker_namespace_prefix + peer.WORKER)
    target.clean_all_of((f"{prefix}:",))


SYSTEMS: dict[str, Callable[[common.RedisTarget, Any], Measured]] = {
    "ours": _ours,
    "ours_2x2": lambda target, args: _ours(target, args, processes=2),
    "huey": _huey,
    "dramatiq": _dramatiq,
    "celery": _celery,
    "rq": _rq,
    "rq_simple": lambda target, args: _rq(target, args, simple=True),
}
#: What ``--peers`` can name: the module that must be installed, and the systems it runs.
PEERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "huey": ("huey", ("huey",)),
    "dramatiq": ("dramatiq", ("dramatiq",)),
    "celery": ("celery", ("celery",)),
    "rq": ("rq", ("rq", "rq_simple")),
    "rq_simple": ("rq", ("rq_simple",)),
}
DEFAULT_PEERS = ("huey", "dramatiq", "celery", "rq")
#: Each system's worker, as the report's notes name it.
WORKERS = {
    "ours": "flask asyncendpoints worker, 1 process x 2 threads (ours_2x2: 2 such processes)",
    "huey": "huey_consumer -w 2 -k thread",
    "dramatiq": "dramatiq, its default: one process per core x 8 threads",
    "celery": "celery worker --pool threads --concurrency 2 (1 process x 2 threads)",
    "rq": "rq worker, its default Worker: 1 process, a forked work horse per job",
    "rq_simple": "rq worker --worker-class rq.worker.SimpleWorker: 1 process, no fork",
}


# -- what every system shares ----------------------------------------------------------------------------


def _calls(target: common.RedisTarget) -> int:
    """Commands the server has executed so far (Lua's redis.call included), less this INFO call."""
    stats = target.client.info("commandstats")
    return sum(int(value["calls"]) for value in stats.values()) - 1


def _server_cpu(target: common.RedisTarget) -> float:
    """Seconds of CPU the Redis server has used so far, user and system."""
    info = target.client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _loop(target: common.RedisTarget, jobs: int, send: Callable[[int], Any]) -> Loop:
    """``send(n)`` for each of ``jobs`` numbers, timed: jobs/s and where the time went."""
    server = _server_cpu(target)
    client = time.process_time()
    start = time.perf_counter()
    for n in range(jobs):
        send(n)
    wall = time.perf_counter() - start
    client_s = time.process_time() - client
    server_s = _server_cpu(target) - server
    return Loop(jobs / wall, client_s / jobs * 1e6, server_s / jobs * 1e6)


def _enqueue(target: common.RedisTarget, measured: Measured, jobs: int, send: Callable[[int], Any]) -> None:
    """Send ``jobs`` jobs one call at a time from this thread: jobs/s, where the time went, and
    Redis commands per job."""
    before = _calls(target)
    measured.enqueue = _loop(target, jobs, send)
    measured.enqueue_calls = (_calls(target) - before) / jobs


def _drain(target: common.RedisTarget, prefix: str, jobs: int, check: Callable[[], None]) -> tuple[float, float]:
    """Wait for ``jobs`` RPUSHes to ``<prefix>:done``; jobs/s over first to last, and commands per job."""
    done = f"{prefix}:done"
    before = _calls(target)
    deadline = time.monotonic() + 60 + jobs / 25  # RQ's forking worker runs well under 100 jobs/s
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


def _ceiling(target: common.RedisTarget, jobs: int, kind: str) -> Loop:
    """Round trips per second of one thread on one connection, and where their time went: a bare
    EVALSHA of a one-call script, or PING."""
    import redis

    client = redis.Redis.from_url(target.url)
    key = f"{target.new_prefix()}:ceiling"
    sha = client.script_load(common.ONE_CALL_SCRIPT)
    connection = client.connection_pool.get_connection()
    command: tuple[Any, ...] = ("EVALSHA", sha, 1, key) if kind == "evalsha" else ("PING",)

    def send(_: int) -> None:
        connection.send_command(*command)  # type: ignore[no-untyped-call]
        connection.read_response()

    try:
        return _loop(target, jobs, send)
    finally:
        client.connection_pool.release(connection)
        client.delete(key)
        client.close()


def _report(report: common.Report, runs: dict[str, list[Measured]], ceiling: dict[str, list[Loop]]) -> None:
    def pct(values: list[float], q: float) -> float:
        return common.percentile(values, q)

    def loop(name: str, loops: list[Loop]) -> None:
        report.add(name, "jobs/s", [one.rate for one in loops])
        report.add(f"{name}_client_cpu", "us", [one.client_us for one in loops])
        report.add(f"{name}_server_cpu", "us", [one.server_us for one in loops])
        report.add(f"{name}_other", "us", [one.other_us for one in loops])

    for name, measured in runs.items():
        loop(f"compare.{name}.enqueue", [m.enqueue for m in measured])
        report.add(f"compare.{name}.drain", "jobs/s", [m.drain for m in measured])
        report.add(f"compare.{name}.enqueue_calls_per_job", "calls", [m.enqueue_calls for m in measured])
        report.add(f"compare.{name}.worker_calls_per_job", "calls", [m.worker_calls for m in measured])
        # Every system's job does one RPUSH in its handler: what is left is the queue's own calls.
        report.add(f"compare.{name}.worker_calls_per_job_less_handler", "calls", [m.worker_calls - 1 for m in measured])
        if measured and measured[0].to_start:
            for q in (50, 99):
                report.add(f"compare.{name}.submit_to_start.p{q}", "ms", [pct(m.to_start, q) for m in measured])
                report.add(f"compare.{name}.submit_to_seen.p{q}", "ms", [pct(m.to_seen, q) for m in measured])
    loop("compare.ceiling.evalsha", ceiling["evalsha"])
    loop("compare.ceiling.ping", ceiling["ping"])

    ours = {f.name: f.value for f in report.figures}

    def ratio(name: str, numerator: str, denominator: str) -> None:
        top, bottom = ours.get(numerator), ours.get(denominator)
        if top is not None and bottom is not None and bottom > 0:
            report.add(f"ratio.{name}", "x", [top / bottom])

    for peer in runs:
        if peer.startswith("ours"):
            continue
        ratio(f"enqueue.ours_vs_{peer}", "compare.ours.enqueue", f"compare.{peer}.enqueue")
        # How near the peer's enqueue comes to the ceiling: ``n``× the peer needs ``n``× this of ours.
        ratio(f"enqueue.{peer}_vs_ceiling_evalsha", f"compare.{peer}.enqueue", "compare.ceiling.evalsha")
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
