"""instructions: CPU instructions per HTTP submit and per memory-store job, counted by callgrind.

On a shared VM the seconds a benchmark measures drift from run to run (other guests, steal time,
the CPU's clock), often by more than the change being measured. The instructions a Python process
executes for the same work do not, to a fraction of a percent, whatever else the machine does. So
an A/B of a change to the submit view or to the worker's per-job path is read here, and the timed
benchmarks say what it is worth in requests or jobs per second.

- ``http.bare``, ``http.submit``: one ``POST`` through the WSGI app of ``benchmarks/http_app.py``
  (memory store, no worker), in process and without a server: instructions per request. The bare
  route parses the same body and answers a job-sized body. ``http.submit_vs_bare``: bare ÷ submit,
  the ratio ``benchmarks/http.py`` would show if the server and the load generator cost nothing.
- ``drain.memory``: the no-op job of ``drain.py`` on the memory store, run by a worker of
  ``--threads`` pool threads (1 by default: under valgrind threads take turns, so one thread is
  what is measured best): instructions per job, the worker's start and stop spread over the jobs.
- ``submit.redis``: one ``ae.submit`` of the small no-op job into the Redis store, no worker:
  instructions of this process per submit (Python, redis-py, hiredis), not the server's and not
  the waiting for its reply. ``--redis-url`` as for every benchmark, else a ``redis-server`` of its
  own.
- ``submit.huey``: the same for one enqueue of huey's task (``benchmarks/peers/huey_app.py``,
  one ``LPUSH``), when huey is installed (the ``bench`` extra); ``submit.redis_vs_huey`` divides
  the two.
- ``server.create``, ``server.lpush``: the instructions of ``redis-server`` itself (run under
  callgrind, on a free loopback port) per ``ae.submit`` (its create script, with the command's
  reading and its reply) and per ``LPUSH`` of that job's payload JSON, the one command a queue
  that keeps only a message makes per enqueue; ``server.create_vs_lpush`` divides the two.
  ``server.drain``: per job of a drain, what the server does for its ``create_many`` prefill and
  for a worker of ``--threads`` pool threads in this process that claims, runs and completes it
  (the worker's waits while idle at the start and the end are spread over the jobs). Only
  what the server does inside ``readQueryFromClient`` (reading, parsing, running a command) and
  ``writeToClient`` (its reply) is counted: its timer (``serverCron``, ten times a second) runs
  for as long as the slow, emulated server lives, which differs between two runs by more than
  a hundred commands cost.

Each figure is the difference between two runs of the same process, one with ``--count`` more
requests (or jobs) than the other, divided by ``--count``: imports, set-up and warm-up cancel out.
Both runs use ``PYTHONHASHSEED=0``; two runs of the same code still differ by a few million
instructions in all (start-up), so ``--count`` is 1000 or more for a figure to quote. Needs
``valgrind`` on PATH (Debian's package); each run takes about 50 times as long as without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: see benchmarks/__init__.py
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import argparse
import contextlib
import importlib.util
import io
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import _common as common
from flask_asyncendpoints.jobs import JobStatus

#: Requests (or submits) every HTTP and submit run makes before those counted (the first ones fill caches,
#: build templates and load the scripts).
WARMUP = 200

#: The functions of redis-server whose instructions are a command's cost (named in its dynamic
#: symbol table, so callgrind finds them in a stripped binary).
_SERVER_WORK = ("readQueryFromClient", "writeToClient")

#: What callgrind prints of the instructions it counted.
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(__doc__, runs=1)
    parser.add_argument(
        "--what",
        choices=["http", "drain", "submit", "server", "all"],
        default="all",
        help="default all: each in turn",
    )
    parser.add_argument(
        "--count", type=common.positive_int, default=1000, help="requests or jobs counted per figure (default 1000)"
    )
    parser.add_argument("--threads", type=common.positive_int, default=1, help="the drain's pool threads (default 1)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--key-prefix", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args.child[0], int(args.child[1]), args)
        return 0
    if shutil.which("valgrind") is None:
        parser.error("needs valgrind on PATH (apt-get install valgrind)")
    report = common.Report("instructions", {"count": args.count, "runs": args.runs, "threads": args.threads})
    report.note("callgrind's instruction count of this Python, difference of two runs ÷ count")
    if args.what in ("http", "all"):
        bare = report.add("http.bare", "instructions", [_per_unit("http-bare", args) for _ in range(args.runs)])
        submit = report.add("http.submit", "instructions", [_per_unit("http-submit", args) for _ in range(args.runs)])
        report.add("http.submit_vs_bare", "x", [b / s for b, s in zip(bare.runs, submit.runs, strict=True)])
    if args.what in ("drain", "all"):
        report.add("drain.memory", "instructions", [_per_unit("drain", args) for _ in range(args.runs)])
    if args.what in ("submit", "all"):
        with common.redis_target(args.redis_url) as target:
            report.note(target.describe())
            args.target = target
            ours = report.add(
                "submit.redis", "instructions", [_per_unit("submit-redis", args) for _ in range(args.runs)]
            )
            if importlib.util.find_spec("huey") is None:
                report.note("huey is not installed (pip install -e '.[bench]'): no submit.huey")
            else:
                huey = report.add(
                    "submit.huey", "instructions", [_per_unit("submit-huey", args) for _ in range(args.runs)]
                )
                report.add("submit.redis_vs_huey", "x", [o / h for o, h in zip(ours.runs, huey.runs, strict=True)])
    if args.what in ("server", "all"):
        report.note("server.*: callgrind's instruction count of redis-server, difference of two runs ÷ count")
        runs = range(args.runs)
        create = report.add("server.create", "instructions", [_server_per_unit("create", args) for _ in runs])
        lpush = report.add("server.lpush", "instructions", [_server_per_unit("lpush", args) for _ in runs])
        report.add("server.create_vs_lpush", "x", [c / p for c, p in zip(create.runs, lpush.runs, strict=True)])
        report.add("server.drain", "instructions", [_server_per_unit("drain", args) for _ in runs])
    report.emit(args.json)
    return 0


def _server_per_unit(kind: str, args: argparse.Namespace) -> float:
    """Instructions of ``redis-server`` per unit of ``kind``: two servers, ``count`` units apart."""
    count: int = args.count
    return (_server_count(kind, count, args.threads) - _server_count(kind, 0, args.threads)) / count


def _server_count(kind: str, n: int, threads: int) -> int:
    """The instructions callgrind counts in a ``redis-server`` of its own that serves ``WARMUP + n``
    submits (``create``), ``LPUSH`` es of their payload JSON (``lpush``) or jobs created and
    drained (``drain``), then shuts down."""
    import redis

    from benchmarks.bench_app import NOOP, ae, create_app, small_body
    from flask_asyncendpoints.jobs import JobPayload
    from flask_asyncendpoints.stores.jsontext import encode_payload

    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("redis-server is not on PATH")
    port = common.free_port()
    with tempfile.TemporaryDirectory(prefix="ae-bench-redis-") as folder:
        command = [
            "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            *(f"--toggle-collect={function}" for function in _SERVER_WORK),
            executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", folder,
        ]  # fmt: skip
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
            alive = lambda: proc.poll() is None  # noqa: E731
            common.wait_until(lambda: common.pings(client), 120, "redis-server under callgrind", alive)
            url = f"redis://127.0.0.1:{port}/0"
            if kind == "create":
                app = create_app(STORE=url, KEY_PREFIX="bench")
                for number in range(WARMUP + n):
                    ae.submit(NOOP, small_body(number), app=app)
                ae.get_store(app).close()
            elif kind == "drain":
                _drain_redis(url, WARMUP + n, threads)
            else:
                for number in range(WARMUP + n):
                    client.lpush("bench:queue", encode_payload(JobPayload(body=small_body(number))))
            with contextlib.suppress(redis.exceptions.ConnectionError):
                client.shutdown(nosave=True)
            _, stderr = proc.communicate(timeout=120)
        finally:
            common.stop_process(proc)
    found = _COLLECTED.search(stderr.decode(errors="replace"))
    if found is None:
        raise RuntimeError(f"redis-server under callgrind reported no count: {stderr[-2000:]!r}")
    return int(found.group(1))


def _drain_redis(url: str, n: int, threads: int) -> None:
    """Create ``n`` no-op jobs in the Redis at ``url``, then run them with a worker of ``threads``
    pool threads in this process, waiting on its idle event (not polling the server)."""
    from benchmarks.bench_app import NOOP, ae, create_app, small_body
    from flask_asyncendpoints.jobs import new_job_id

    app = create_app(STORE=url, KEY_PREFIX="bench", MAX_CONCURRENCY=threads)
    store = ae.get_store(app)
    try:
        common.prefill_redis(store, [new_job_id() for _ in range(n)], NOOP, small_body)
        _run_until_idle(app, n)
    finally:
        store.close()


def _per_unit(kind: str, args: argparse.Namespace) -> float:
    """Instructions per request (or job) of ``kind``: two counted runs, ``count`` apart.

    The drain's shorter run submits the same jobs and drains none of them.
    """
    count: int = args.count
    few = _count("submit-only", count, args) if kind == "drain" else _count(kind, 0, args)
    more = _count(kind, count, args)
    return (more - few) / count


def _count(kind: str, n: int, args: argparse.Namespace) -> int:
    """The instructions callgrind counts in one child process doing ``n`` units of ``kind``."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__).resolve()),
        "--threads",
        str(args.threads),
        "--child",
        kind,
        str(n),
    ]
    prefix = None
    if kind in ("submit-redis", "submit-huey"):
        # Each run into keys of its own, so it finds only its own jobs queued.
        prefix = args.target.new_prefix()
        command += ["--redis-url", args.target.url, "--key-prefix", prefix]
    env = common.python_env(PYTHONHASHSEED="0")
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600, check=False)
    finally:
        if prefix is not None:
            args.target.clean(prefix)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed ({done.returncode}): {done.stderr[-2000:]}")
    return int(found.group(1))


def _child(kind: str, n: int, args: argparse.Namespace) -> None:
    """One counted run: ``n`` requests after the warm-up, or ``n`` jobs submitted (and drained)."""
    if kind in ("drain", "submit-only"):
        _drain(n, args.threads, run=kind == "drain")
    elif kind == "submit-redis":
        _submit_redis(n, args.redis_url, args.key_prefix)
    elif kind == "submit-huey":
        _submit_huey(n, args.redis_url, args.key_prefix)
    else:
        _requests(kind.removeprefix("http-"), n)


def _requests(route: str, n: int) -> None:
    from benchmarks.http_app import BARE_PATH, REQUEST_BODY, SUBMIT_PATH, create_app

    app = create_app()
    body = json.dumps(REQUEST_BODY).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": BARE_PATH if route == "bare" else SUBMIT_PATH,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "benchmarks-loadgen",
        "HTTP_ACCEPT": "*/*",
    }
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], object]:
        statuses.append(status)
        return _no_write

    for _ in range(WARMUP + n):
        answer = app.wsgi_app({**environ, "wsgi.input": io.BytesIO(body)}, start_response)
        b"".join(answer)
        answer.close()  # type: ignore[attr-defined]
    if any(not status.startswith("202") for status in statuses):
        raise RuntimeError(f"unexpected answers: {sorted(set(statuses))}")


def _no_write(data: bytes) -> object:
    raise RuntimeError("the app wrote with the WSGI write callable")


def _drain(n: int, threads: int, *, run: bool) -> None:
    """Submit ``n`` no-op jobs; with ``run``, start a worker, wait until it has run them all, stop it."""
    from benchmarks.bench_app import NOOP, ae, create_app, memory_store, small_body

    app = create_app(memory_store(), MAX_CONCURRENCY=threads)
    for number in range(n):
        ae.submit(NOOP, small_body(number), app=app)
    if run:
        _run_until_idle(app, n)


def _run_until_idle(app: Any, n: int) -> None:
    """Start ``app``'s worker, wait until it is idle, stop it, and check that ``n`` jobs completed."""
    from benchmarks.bench_app import ae

    ae.start_worker(app)
    # Blocks on an event, not a poll: the waiting costs no instructions per job, here or in Redis.
    if not ae.get_worker(app).wait_until_idle(timeout=3600):
        raise RuntimeError("the drain did not finish")
    ae.shutdown(app, timeout=10)
    finished = ae.get_store(app).counts()[JobStatus.COMPLETED]
    if finished != n:
        raise RuntimeError(f"{finished} of {n} jobs completed")


def _submit_redis(n: int, url: str, prefix: str) -> None:
    """``n`` submits into the Redis store at ``url`` under ``prefix``, after as many as the HTTP runs warm up with."""
    from benchmarks.bench_app import NOOP, ae, create_app, small_body

    app = create_app(STORE=url, KEY_PREFIX=prefix)
    try:
        for number in range(WARMUP + n):
            ae.submit(NOOP, small_body(number), app=app)
        counted = ae.get_store(app).counts()[JobStatus.QUEUED]
    finally:
        ae.get_store(app).close()
    if counted != WARMUP + n:
        raise RuntimeError(f"{counted} of {WARMUP + n} jobs are queued")


def _submit_huey(n: int, url: str, prefix: str) -> None:
    """``n`` enqueues of huey's task into the Redis at ``url`` (its keys named after ``prefix``), after
    the warm-up, then its queue and results are deleted."""
    import os

    os.environ["BENCH_REDIS_URL"], os.environ["BENCH_PREFIX"] = url, prefix
    from benchmarks.peers.huey_app import huey, rpush

    try:
        for number in range(WARMUP + n):
            rpush(number)
        counted = huey.pending_count()
    finally:
        huey.storage.flush_queue()
        huey.storage.flush_results()
    if counted != WARMUP + n:
        raise RuntimeError(f"{counted} of {WARMUP + n} huey tasks are queued")


if __name__ == "__main__":
    sys.exit(main())
