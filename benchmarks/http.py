"""http: requests/s and p99 of submitting over HTTP, beside a bare Flask route in the same app.

Starts gunicorn (2 sync workers) on ``benchmarks/http_app.py`` with the Redis store (``--store memory``:
each gunicorn worker's own memory store, which leaves out the Redis round trip) and no worker
threads, then, per run, a load generator (``--processes`` processes of ``--clients`` threads in all,
a new connection per request, as sync workers close each one) POSTs the same JSON body first to the
bare route, then to the example endpoint, each for ``--duration`` seconds after ``--warmup``.
Reported: requests/s and p99 latency of each route and submit/bare requests/s (the overhead ratio).

With Redis a third route runs between the two: the bare route plus one ``EVALSHA`` of a one-call
script to the same Redis (``round_trip``). ``http.round_trip_vs_bare`` is the ceiling: no submit,
which must reach Redis before it answers, can do better. ``http.submit_vs_round_trip`` is how close
the submit comes to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: see benchmarks/__init__.py
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import _common as common
from benchmarks import _loadgen
from benchmarks.http_app import BARE_PATH, REQUEST_BODY, ROUND_TRIP_PATH, SUBMIT_PATH

#: The routes loaded in each run, in order: with the memory store, and with Redis.
MEMORY_ROUTES = (("bare", BARE_PATH), ("submit", SUBMIT_PATH))
REDIS_ROUTES = (("bare", BARE_PATH), ("round_trip", ROUND_TRIP_PATH), ("submit", SUBMIT_PATH))


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(__doc__, runs=3)
    parser.add_argument("--duration", type=common.positive_float, default=10.0, help="seconds per route (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before counting (default 1)")
    parser.add_argument("--clients", type=common.positive_int, default=4, help="concurrent connections (default 4)")
    parser.add_argument("--processes", type=common.positive_int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--workers", type=common.positive_int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument(
        "--store",
        choices=["redis", "memory"],
        default="redis",
        help="the job store (default redis; memory measures the library's own cost without the round trip)",
    )
    args = parser.parse_args(argv)
    report = common.Report(
        "http",
        {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "clients": args.clients,
            "processes": args.processes,
            "workers": args.workers,
            "runs": args.runs,
            "store": args.store,
        },
    )
    routes = MEMORY_ROUTES if args.store == "memory" else REDIS_ROUTES
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in routes}
    report.note(f"load: {args.clients} clients in {args.processes} processes, a new connection per request")
    if args.store == "memory":
        report.note(f"gunicorn: {args.workers} sync workers, a memory store each, ASYNCENDPOINTS_WORKER off")
        with Gunicorn("memory://", "ae", workers=args.workers) as server:
            _run_routes(server, args, routes, results)
    else:
        with common.redis_target(args.redis_url) as target:
            report.note(target.describe())
            report.note(f"gunicorn: {args.workers} sync workers, Redis store, ASYNCENDPOINTS_WORKER off")
            prefix = target.new_prefix()
            try:
                with Gunicorn(target.url, prefix, workers=args.workers) as server:
                    _run_routes(server, args, routes, results)
            finally:
                target.clean(prefix)
    for name, _ in routes:
        runs = results[name]
        report.add(f"http.{name}.requests_per_s", "req/s", [r["expected"] / args.duration for r in runs])
        report.add(f"http.{name}.p50", "ms", [common.percentile(r["latencies"], 50) * 1000 for r in runs])
        report.add(f"http.{name}.p99", "ms", [common.percentile(r["latencies"], 99) * 1000 for r in runs])
        report.add(f"http.{name}.unexpected", "count", [sum(r["other"].values()) for r in runs])
        others: dict[str, int] = {}
        for run in runs:
            for status, count in run["other"].items():
                others[status] = others.get(status, 0) + count
        if others:
            report.note(f"{name}: answers other than 202: {others}")
    report.add("http.submit_vs_bare", "x", _ratios(results["submit"], results["bare"]))
    if "round_trip" in results:
        report.add("http.round_trip_vs_bare", "x", _ratios(results["round_trip"], results["bare"]))
        report.add("http.submit_vs_round_trip", "x", _ratios(results["submit"], results["round_trip"]))
    report.emit(args.json)
    return 0


def _ratios(over: list[dict[str, Any]], under: list[dict[str, Any]]) -> list[float]:
    """Each run's requests of one route over another's (the same run's)."""
    return [o["expected"] / u["expected"] if u["expected"] else float("nan") for o, u in zip(over, under, strict=True)]


def _run_routes(
    server: Gunicorn, args: Any, routes: Sequence[tuple[str, str]], results: dict[str, list[dict[str, Any]]]
) -> None:
    for _ in range(args.runs):
        for name, path in routes:
            results[name].append(_load(server.port, path, args))


def _load(port: int, path: str, args: Any) -> dict[str, Any]:
    """Run the load generator processes against ``path``; their tallies merged."""
    start_at = time.time() + 0.5  # every process starts sending at once, after its own start-up
    shares = [
        args.clients // args.processes + (1 if i < args.clients % args.processes else 0) for i in range(args.processes)
    ]
    procs = []
    for threads in (share for share in shares if share):
        command = [
            sys.executable, "-m", "benchmarks._loadgen", "--port", str(port), "--path", path,
            "--body", json.dumps(REQUEST_BODY), "--threads", str(threads), "--start-at", repr(start_at),
            "--warmup", str(args.warmup), "--duration", str(args.duration),
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(command, cwd=common.REPO_ROOT, env=common.python_env(), stdout=subprocess.PIPE, text=True)
        )
    merged: dict[str, Any] = {"expected": 0, "other": {}, "latencies": []}
    timeout = 60 + args.warmup + args.duration
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"the load generator failed ({proc.returncode})")
            tally = json.loads(out)
            merged["expected"] += tally["expected"]
            merged["latencies"].extend(tally["latencies"])
            for status, count in tally["other"].items():
                merged["other"][status] = merged["other"].get(status, 0) + count
    finally:
        for proc in procs:
            common.stop_process(proc, timeout=1)
    return merged


class Gunicorn:
    """gunicorn serving :mod:`benchmarks.http_app` on a free loopback port, stopped on exit."""

    def __init__(self, store_url: str, prefix: str, *, workers: int) -> None:
        self.port = common.free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="ae-bench-gunicorn-")
        self.log = Path(self._dir.name) / "gunicorn.log"
        command = [
            sys.executable, "-m", "gunicorn", "--workers", str(workers), "--worker-class", "sync",
            "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning", "--backlog", "2048",
            "benchmarks.http_app:create_app()",
        ]  # fmt: skip
        env = common.python_env(BENCH_STORE=store_url, BENCH_KEY_PREFIX=prefix)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=common.REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def __enter__(self) -> Gunicorn:
        try:
            request = _loadgen.build_request("127.0.0.1", self.port, BARE_PATH, json.dumps(REQUEST_BODY).encode())
            common.wait_until(
                lambda: self._answers(request), common.START_TIMEOUT, "gunicorn", alive=lambda: self.proc.poll() is None
            )
        except BaseException as exc:
            self.stop()
            raise RuntimeError(f"gunicorn did not start; its log:\n{common.tail(self.log)}") from exc
        return self

    def _answers(self, request: bytes) -> bool:
        try:
            return _loadgen.one_request("127.0.0.1", self.port, request) == "202"
        except OSError:
            return False

    def stop(self) -> None:
        common.stop_process(self.proc)
        self._dir.cleanup()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
