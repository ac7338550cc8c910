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
import io
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import _common as common
from flask_asyncendpoints.jobs import JobStatus

#: Requests every HTTP run makes before those counted (the first ones fill caches and build templates).
HTTP_WARMUP = 200

#: What callgrind prints of the instructions it counted.
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(__doc__, runs=1, redis=False)
    parser.add_argument("--what", choices=["http", "drain", "both"], default="both", help="default both")
    parser.add_argument(
        "--count", type=common.positive_int, default=1000, help="requests or jobs counted per figure (default 1000)"
    )
    parser.add_argument("--threads", type=common.positive_int, default=1, help="the drain's pool threads (default 1)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args.child[0], int(args.child[1]), args.threads)
        return 0
    if shutil.which("valgrind") is None:
        parser.error("needs valgrind on PATH (apt-get install valgrind)")
    report = common.Report("instructions", {"count": args.count, "runs": args.runs, "threads": args.threads})
    report.note("callgrind's instruction count of this Python, difference of two runs ÷ count")
    if args.what in ("http", "both"):
        bare = report.add("http.bare", "instructions", [_per_unit("http-bare", args) for _ in range(args.runs)])
        submit = report.add("http.submit", "instructions", [_per_unit("http-submit", args) for _ in range(args.runs)])
        report.add("http.submit_vs_bare", "x", [b / s for b, s in zip(bare.runs, submit.runs, strict=True)])
    if args.what in ("drain", "both"):
        report.add("drain.memory", "instructions", [_per_unit("drain", args) for _ in range(args.runs)])
    report.emit(args.json)
    return 0


def _per_unit(kind: str, args: argparse.Namespace) -> float:
    """Instructions per request (or job) of ``kind``: two counted runs, ``count`` apart.

    The drain's shorter run submits the same jobs and drains none of them.
    """
    count: int = args.count
    threads: int = args.threads
    few = _count("submit-only", count, threads) if kind == "drain" else _count(kind, 0, threads)
    more = _count(kind, count, threads)
    return (more - few) / count


def _count(kind: str, n: int, threads: int) -> int:
    """The instructions callgrind counts in one child process doing ``n`` units of ``kind``."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__).resolve()),
        "--threads",
        str(threads),
        "--child",
        kind,
        str(n),
    ]
    env = common.python_env(PYTHONHASHSEED="0")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed ({done.returncode}): {done.stderr[-2000:]}")
    return int(found.group(1))


def _child(kind: str, n: int, threads: int) -> None:
    """One counted run: ``n`` requests after the warm-up, or ``n`` jobs submitted (and drained)."""
    if kind in ("drain", "submit-only"):
        _drain(n, threads, run=kind == "drain")
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

    for _ in range(HTTP_WARMUP + n):
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
    store = ae.get_store(app)
    for number in range(n):
        ae.submit(NOOP, small_body(number), app=app)
    if not run:
        return
    ae.start_worker(app)
    # Blocks on an event, not a poll: the waiting costs no instructions per job.
    if not ae.get_worker(app).wait_until_idle(timeout=3600):
        raise RuntimeError("the drain did not finish")
    ae.shutdown(app, timeout=10)
    finished = store.counts()[JobStatus.COMPLETED]
    if finished != n:
        raise RuntimeError(f"{finished} of {n} jobs completed")


if __name__ == "__main__":
    sys.exit(main())
