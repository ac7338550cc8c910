"""What every benchmark shares: its own Redis server, option parsing, statistics and output.

Output: a few ``# …`` context lines (machine, load, parameters), then one ``name: value unit`` line per
figure, each the median over ``--runs``; with ``--json`` one JSON object instead.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Seconds a started server or process gets to become ready, and to stop before it is killed.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0

#: The script of the ceilings' ``EVALSHA`` (``compare.py``'s loop, ``http.py``'s round-trip route):
#: one redis.call, as small as a script gets.
ONE_CALL_SCRIPT = "return redis.call('INCR', KEYS[1])"


# -- statistics ------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median (``nan`` for no values)."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile by the nearest-rank method (``p99`` of 100 samples is the 99th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# -- output ----------------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One reported figure: the median of ``runs``."""

    name: str
    unit: str
    runs: list[float]

    @property
    def value(self) -> float:
        return median(self.runs)


def format_value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "nan"
    if unit in ("ms", "x"):
        return f"{value:.3f}"
    if unit in ("calls", "us"):
        return f"{value:.1f}"
    if unit in ("jobs/s", "req/s", "bytes", "count"):
        return f"{value:.0f}"
    return f"{value:g}"


def machine() -> dict[str, Any]:
    """What the figures were measured on, including how busy the machine was when the run started."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load,
    }


@dataclass
class Report:
    """Collects the figures of one benchmark and prints them."""

    benchmark: str
    params: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def add(self, name: str, unit: str, runs: Iterable[float]) -> Figure:
        figure = Figure(name, unit, [float(value) for value in runs])
        self.figures.append(figure)
        return figure

    def get(self, name: str) -> Figure:
        for figure in self.figures:
            if figure.name == name:
                return figure
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "machine": self.machine,
            "params": self.params,
            "notes": self.notes,
            "figures": [
                {
                    "name": f.name,
                    "value": _json_number(f.value),
                    "unit": f.unit,
                    "runs": [_json_number(r) for r in f.runs],
                }
                for f in self.figures
            ],
        }

    def emit(self, as_json: bool, stream: IO[str] | None = None) -> None:
        out = stream if stream is not None else sys.stdout
        if as_json:
            out.write(json.dumps(self.as_dict(), indent=2) + "\n")
            return
        m = self.machine
        out.write(f"# {self.benchmark}: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}\n")
        out.write(f"# load average at start: {' '.join(str(x) for x in m['load_average'])}\n")
        out.write("# params: " + " ".join(f"{k}={v}" for k, v in self.params.items()) + "\n")
        for text in self.notes:
            out.write(f"# {text}\n")
        for f in self.figures:
            runs = " ".join(format_value(r, f.unit) for r in f.runs)
            out.write(f"{f.name}: {format_value(f.value, f.unit)} {f.unit}\n")
            if len(f.runs) > 1:
                out.write(f"#   runs: {runs}\n")
        out.flush()


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


def base_parser(description: str | None, *, runs: int, redis: bool = True) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--runs``, ``--json`` and, for Redis, ``--redis-url``.

    :param description: the script's docstring, shown by ``--help`` as it is written.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=positive_int, default=runs, help=f"runs; figures are medians (default {runs})")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of plain lines")
    if redis:
        parser.add_argument(
            "--redis-url",
            help="use this Redis (under a unique key prefix, deleted afterwards) instead of starting a "
            "redis-server on a free loopback port",
        )
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {value}")
    return value


def int_list(text: str) -> list[int]:
    """``"1000,1e5,1e6"`` -> ``[1000, 100000, 1000000]``."""
    try:
        values = [int(float(part)) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, not {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers ≥ 1, not {text!r}")
    return values


# -- processes -------------------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """Stop exactly this child: SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(ready: Callable[[], bool], timeout: float, what: str, alive: Callable[[], bool] = lambda: True) -> None:
    """Call ``ready`` until it answers true; raise if ``alive`` turns false or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not alive():
            raise RuntimeError(f"{what}: the process exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready within {timeout:g} s")
        time.sleep(0.01)


def python_env(**extra: str) -> dict[str, str]:
    """This environment, with the repository root importable (for ``benchmarks.*`` in child processes)."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env.update(extra)
    return env


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- Redis -----------------------------------------------------------------------------------------------


class RedisServer:
    """A ``redis-server`` of this benchmark's own on a free loopback port, without persistence.

    :param extra_args: more ``redis-server`` options (e.g. to turn persistence on).
    """

    def __init__(self, extra_args: Sequence[str] = ()) -> None:
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not on PATH: install Redis, or pass --redis-url")
        import redis

        self._dir = tempfile.TemporaryDirectory(prefix="ae-bench-redis-")
        log = Path(self._dir.name) / "redis.log"
        for _ in range(3):  # another process may take the free port before redis-server binds it
            self.port = free_port()
            command = [
                executable,
                "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", self._dir.name, "--logfile", str(log),
                *self.extra_args,
            ]  # fmt: skip
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
            try:
                wait_until(functools.partial(pings, client), START_TIMEOUT, "redis-server", alive=self._alive)
                return self.url
            except RuntimeError:
                stop_process(self.proc)
            finally:
                client.close()
        raise RuntimeError(f"redis-server did not start; its log:\n{tail(log)}")

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pings(client: Any) -> bool:
    """Whether a Redis client's ``PING`` is answered (any error: not yet)."""
    try:
        return bool(client.ping())
    except Exception:
        return False


class RedisTarget:
    """The Redis a benchmark writes to: its own server, or one given by ``--redis-url``.

    Every run uses a fresh key prefix; :meth:`clean` deletes that prefix's keys (or, on a server of the
    benchmark's own, everything, which is faster).
    """

    def __init__(self, url: str, *, owned: bool) -> None:
        import redis

        self.url = url
        self.owned = owned
        self.client: redis.Redis = redis.Redis.from_url(url)
        info = self.client.info("server")
        self.version = str(info.get("redis_version", "?"))

    def describe(self) -> str:
        where = "its own redis-server" if self.owned else "the given Redis"
        return f"Redis {self.version}: {where} at {_redact(self.url)}"

    @staticmethod
    def new_prefix() -> str:
        # Starts with letters so FLASK_ASYNCENDPOINTS_KEY_PREFIX stays a string through from_prefixed_env.
        return f"bench-{uuid.uuid4().hex[:12]}"

    def clean(self, prefix: str) -> None:
        if self.owned:
            self.client.flushall()
            return
        from flask_asyncendpoints.stores.redis.keys import scan_patterns

        batch: list[bytes] = []
        for pattern in scan_patterns(prefix):
            for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self.client.unlink(*batch)
                    batch.clear()
        if batch:
            self.client.unlink(*batch)

    def clean_all_of(self, prefixes: Sequence[str]) -> None:
        """Delete the keys starting with any of ``prefixes`` (on a server of the benchmark's own, everything)."""
        if self.owned:
            self.client.flushall()
            return
        for prefix in prefixes:
            keys = list(self.client.scan_iter(match=f"{prefix}*", count=1000))
            for start in range(0, len(keys), 1000):
                self.client.unlink(*keys[start : start + 1000])

    def close(self) -> None:
        self.client.close()


def _redact(url: str) -> str:
    from flask_asyncendpoints.stores.redis import redact_url

    return redact_url(url)


@contextmanager
def redis_target(url: str | None) -> Iterator[RedisTarget]:
    """A :class:`RedisTarget`: ``url`` if given, else a ``redis-server`` started here and stopped after."""
    if url is not None:
        target = RedisTarget(url, owned=False)
        try:
            yield target
        finally:
            target.close()
        return
    with RedisServer() as server:
        target = RedisTarget(server.url, owned=True)
        try:
            yield target
        finally:
            target.close()


def prefill_redis(
    store: Any,
    ids: Sequence[str],
    name: str,
    body_of: Callable[[int], Any],
    *,
    chunk: int = 2000,
    atomic: bool = False,
) -> None:
    """Create ``Queued`` jobs fast: the store's own ``create_many``, ``chunk`` jobs per call (one
    pipeline of ``create`` scripts each).

    :param store: a :class:`~flask_asyncendpoints.stores.redis.RedisStore`.
    :param body_of: the request body of the job with this index.
    :param atomic: create them all with one ``create_many`` (one round trip), so workers already
        waiting see the jobs arrive together (and may have run some by the time this returns).
    """
    from flask_asyncendpoints.jobs import JobPayload, JobStatus
    from flask_asyncendpoints.stores import NewJob

    def pending() -> int:
        counts = store.counts()
        # Atomic: waiting workers may have started or finished some of the jobs already.
        return sum(counts.values()) if atomic else counts[JobStatus.QUEUED]

    before = pending()
    size = max(1, len(ids)) if atomic else chunk
    for start in range(0, len(ids), size):
        batch = [
            NewJob(ids[i], name, JobPayload(body=body_of(i)), 3) for i in range(start, min(start + size, len(ids)))
        ]
        store.create_many(batch)
    created = pending() - before
    if created != len(ids):
        raise RuntimeError(f"prefill_redis created {created} jobs, not {len(ids)}")


# -- worker processes ------------------------------------------------------------------------------------


class WorkerProcess:
    """``flask asyncendpoints worker`` on :mod:`benchmarks.bench_app`, in a process of its own.

    :param config: ``ASYNCENDPOINTS_*`` keys without the prefix, passed as ``FLASK_ASYNCENDPOINTS_*``.
    """

    def __init__(
        self, config: dict[str, Any], *, concurrency: int, log_level: str = "WARNING", processes: int = 1
    ) -> None:
        env = python_env(**{f"FLASK_ASYNCENDPOINTS_{key}": _env_value(value) for key, value in config.items()})
        self.command = [
            sys.executable, "-m", "flask", "--app", "benchmarks.bench_app:create_app",
            "asyncendpoints", "worker", "--concurrency", str(concurrency), "--log-level", log_level,
        ]  # fmt: skip
        if processes > 1:
            self.command += ["--processes", str(processes)]
        self.processes = processes
        self._dir = tempfile.TemporaryDirectory(prefix="ae-bench-worker-")
        self.log = Path(self._dir.name) / "worker.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"the worker process exited ({self.proc.returncode}); its output:\n{tail(self.log)}")

    def wait_running(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until every worker process has printed that it runs (``worker … running …``)."""

        def running() -> bool:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
            return sum(1 for line in lines if line.startswith("worker ") and " running " in line) >= self.processes

        wait_until(running, timeout, f"{self.processes} worker process(es)", alive=self.alive)

    def stop(self) -> None:
        stop_process(self.proc)
        self._dir.cleanup()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _env_value(value: Any) -> str:
    # from_prefixed_env parses JSON, so numbers and booleans arrive typed and strings stay strings.
    return value if isinstance(value, str) else json.dumps(value)


def wait_for_finished(store: Any, total: int, *, timeout: float, alive: Callable[[], None] = lambda: None) -> None:
    """Wait until ``total`` jobs of ``store`` are finished, looking at its status counts every 20 ms.

    Counting costs one small store call per look, nothing per job, so the worker is not slowed down.

    :param alive: raises if whatever runs the jobs has died.
    """
    from flask_asyncendpoints.jobs import FINAL_STATUSES

    deadline = time.monotonic() + timeout
    while True:
        counts = store.counts()
        done = sum(counts[status] for status in FINAL_STATUSES)
        if done >= total:
            return
        alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {total} jobs finished within {timeout:g} s")
        time.sleep(0.02)
