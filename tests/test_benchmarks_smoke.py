"""Each benchmark script runs end to end with tiny sizes, so the scripts keep working.

These are not timed: they only check that every script starts what it needs, reports every figure
and stops what it started. Each Redis benchmark starts its own ``redis-server`` on a free loopback
port when one is on PATH; else it uses ``ASYNCENDPOINTS_TEST_REDIS_URL`` under a unique key prefix it
deletes afterwards.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from benchmarks import _common, compare, drain, enqueue, instructions, latency, scale
from benchmarks import http as http_benchmark
from benchmarks import monitoring as monitoring_benchmark
from benchmarks import sql as sql_benchmark

from .conftest import REDIS_URL_ENV, REQUIRE_REDIS_ENV

pytestmark = pytest.mark.slow

Main = Callable[[Sequence[str]], int]


@pytest.fixture(scope="module")
def redis_args() -> list[str]:
    """No option when the scripts can start their own redis-server, else ``--redis-url``."""
    if shutil.which("redis-server"):
        return []
    url = os.environ.get(REDIS_URL_ENV)
    if url:
        return ["--redis-url", url]
    if os.environ.get(REQUIRE_REDIS_ENV):
        pytest.fail(f"{REQUIRE_REDIS_ENV} is set but there is neither redis-server on PATH nor {REDIS_URL_ENV}")
    pytest.skip(f"needs redis-server on PATH or {REDIS_URL_ENV}")


def run(main: Main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main([*argv, "--runs", "1", "--json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def figures(report: dict[str, Any]) -> dict[str, float]:
    values = {f["name"]: f["value"] for f in report["figures"]}
    assert all(isinstance(v, float) and math.isfinite(v) for v in values.values()), values
    return values


def test_drain(redis_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    report = run(drain.main, ["--jobs", "50", *redis_args], capsys)
    values = figures(report)
    assert set(values) == {"drain.memory", "drain.redis"}
    assert min(values.values()) > 0
    assert any("own process" in note for note in report["notes"])


def test_drain_in_process_with_a_batch_size(redis_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    report = run(
        drain.main,
        ["--store", "redis", "--jobs", "30", "--batch-size", "10", "--worker", "inprocess", *redis_args],
        capsys,
    )
    assert figures(report)["drain.redis"] > 0
    assert report["params"]["batch_size"] == 10


def test_drain_with_other_threads_and_switch_interval(capsys: pytest.CaptureFixture[str]) -> None:
    interval = sys.getswitchinterval()
    report = run(
        drain.main, ["--store", "memory", "--jobs", "40", "--threads", "1", "--switch-interval", "0.05"], capsys
    )
    assert figures(report)["drain.memory"] > 0
    assert (report["params"]["threads"], report["params"]["switch_interval_s"]) == (1, 0.05)
    assert sys.getswitchinterval() == interval  # the process's own again


def test_drain_by_several_worker_processes(redis_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    report = run(drain.main, ["--store", "redis", "--jobs", "60", "--processes", "2", *redis_args], capsys)
    assert figures(report)["drain.redis"] > 0
    assert report["params"]["processes"] == 2
    assert any("worker --processes 2" in note for note in report["notes"])


def test_instructions_runs_what_it_counts() -> None:
    # The processes callgrind counts, run here without it: each checks its answers or its jobs.
    assert instructions.main(["--child", "http-bare", "3"]) == 0
    assert instructions.main(["--child", "http-submit", "3"]) == 0
    assert instructions.main(["--child", "drain", "5"]) == 0


def test_instructions_submit_runs_what_it_counts(redis_args: list[str]) -> None:
    # The submitting process, without callgrind: it checks that every job it submitted is queued.
    with _common.redis_target(redis_args[1] if redis_args else None) as target:
        prefix = target.new_prefix()
        try:
            argv = ["--child", "submit-redis", "3", "--redis-url", target.url, "--key-prefix", prefix]
            assert instructions.main(argv) == 0
        finally:
            target.clean(prefix)


def test_instructions_of_the_drain(capsys: pytest.CaptureFixture[str]) -> None:
    # Enough jobs to stand out of the few million instructions two identical runs differ by.
    report = run(instructions.main, ["--what", "drain", "--count", "200"], capsys)
    assert figures(report)["drain.memory"] > 0


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
def test_instructions_of_the_redis_server(capsys: pytest.CaptureFixture[str]) -> None:
    values = figures(run(instructions.main, ["--what", "server", "--count", "100"], capsys))
    # A create script costs the server several times what one plain command does, and a job's
    # claim and completion cost it more than its creation.
    assert values["server.create"] > 2 * values["server.lpush"] > 0
    assert values["server.drain"] > values["server.lpush"]


def test_enqueue(redis_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    values = figures(run(enqueue.main, ["--jobs", "50", "--threads", "1,2", "--many", "20", *redis_args], capsys))
    assert set(values) == {f"enqueue.{store}.threads_{n}" for store in ("memory", "redis") for n in (1, 2)} | {
        "enqueue.redis.submit_many_20"
    }
    assert min(values.values()) > 0


def test_latency(redis_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    values = figures(run(latency.main, ["--samples", "10", "--gap", "0", *redis_args], capsys))
    for store in ("memory", "redis"):
        start, seen = values[f"latency.{store}.submit_to_start.p50"], values[f"latency.{store}.submit_to_seen.p50"]
        assert 0 < start <= seen
        assert values[f"latency.{store}.submit_to_seen.p99"] >= seen


def test_latency_polling_the_store(redis_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--store", "redis", "--samples", "5", "--gap", "0", "--poller", "store", "--worker", "inprocess"]
    assert figures(run(latency.main, [*argv, *redis_args], capsys))["latency.redis.submit_to_seen.p50"] > 0


@pytest.mark.parametrize("store", ["redis", "memory"])
def test_http(store: str, redis_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--duration", "1", "--warmup", "0", "--clients", "2", "--processes", "1", "--store", store, *redis_args]
    values = figures(run(http_benchmark.main, argv, capsys))
    assert values["http.bare.requests_per_s"] > 0
    assert values["http.submit.requests_per_s"] > 0
    assert values["http.submit.unexpected"] == values["http.bare.unexpected"] == 0
    assert values["http.submit_vs_bare"] > 0
    if store == "redis":
        # The ceiling route answered like the bare one, having been to Redis.
        assert values["http.round_trip.requests_per_s"] > 0
        assert values["http.round_trip.unexpected"] == 0
        assert values["http.round_trip_vs_bare"] > 0
        assert values["http.submit_vs_round_trip"] > 0
    else:
        assert "http.round_trip.requests_per_s" not in values


def test_scale(redis_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--sizes", "20,200", "--measure", "20", "--memory-jobs", "50", *redis_args]
    values = figures(run(scale.main, argv, capsys))
    assert values["scale.redis.claim_complete.queued_200"] > 0
    assert values["scale.redis.claim_complete.slowdown_200_vs_20"] > 0
    assert values["scale.redis.job_hash_memory_usage"] > 0
    assert values["scale.memory_store.bytes_per_finished_job"] > 0


@pytest.mark.parametrize("store", ["redis", "memory", "sql"])
def test_monitoring(store: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--store", store, "--sizes", "60,300", "--samples", "3", "--depth", "3", "--chunk", "50"]
    if store == "redis":
        argv += request.getfixturevalue("redis_args")
    report = run(monitoring_benchmark.main, argv, capsys)
    values = figures(report)
    label = {"redis": "redis", "memory": "memory", "sql": "sqlite"}[store]
    reads = ["page_first", "page_deep", "page_name", "page_completed", "queue_stats", "counts_by_name", "throughput"]
    expected = {f"monitoring.{label}.fill.{size}" for size in (60, 300)}
    expected |= {
        f"monitoring.{label}.{read}.{stat}.{size}" for read in reads for stat in ("p50", "p99") for size in (60, 300)
    }
    expected |= {f"monitoring.{label}.{read}.slowdown_300_vs_60" for read in monitoring_benchmark.PAGES}
    assert set(values) == expected
    assert min(values.values()) > 0
    # 300 jobs are 6 pages of 50: three cursors followed from the first page lead to the fifth.
    assert any("300: 30 finished first; page_deep is page 5 " in note for note in report["notes"])


def test_sql_on_a_sqlite_file(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--jobs", "40", "--submits", "20", "--samples", "3", "--gap", "0.01", "--sizes", "30,60", "--measure", "10"]
    argv += [f"--part={part}" for part in sql_benchmark.PARTS]
    report = run(sql_benchmark.main, argv, capsys)
    values = figures(report)
    assert {name.split(".", 2)[2] for name in values} == {
        "drain",
        "submit",
        "pickup.p50",
        "pickup.p99",
        "claim_complete.queued_30",
        "claim_complete.queued_60",
        "claim_complete.slowdown",
    }
    assert min(values.values()) > 0
    assert any("_jobs_ready" in note for note in report["notes"]), "the claim's EXPLAIN names the ready index"


def test_plain_output_is_one_line_per_figure(capsys: pytest.CaptureFixture[str]) -> None:
    assert enqueue.main(["--store", "memory", "--jobs", "20", "--threads", "1", "--runs", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert len(lines) == 1
    name, rest = lines[0].split(": ")
    value, unit = rest.split(" ")
    assert name == "enqueue.memory.threads_1"
    assert float(value) > 0
    assert unit == "jobs/s"


def test_a_started_redis_server_is_stopped() -> None:
    if not shutil.which("redis-server"):
        if os.environ.get(REQUIRE_REDIS_ENV):
            pytest.fail(f"{REQUIRE_REDIS_ENV} is set but redis-server is not on PATH")
        pytest.skip("redis-server is not on PATH")
    server = _common.RedisServer()
    server.start()
    proc = server.proc
    assert proc is not None
    assert proc.poll() is None
    server.stop()
    assert proc.poll() is not None


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert _common.percentile(values, 50) == 50
    assert _common.percentile(values, 99) == 99
    assert _common.percentile([3.0], 99) == 3
    assert math.isnan(_common.percentile([], 50))


def test_compare(redis_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # The peers are optional (the bench extra); without them compare measures this library and the ceiling.
    report = run(compare.main, ["--jobs", "40", "--samples", "3", "--gap", "0", "--peers", "", *redis_args], capsys)
    values = figures(report)
    assert values["compare.ours.enqueue"] > 0 and values["compare.ours.drain"] > 0
    assert values["compare.ceiling.evalsha"] > 0 and values["compare.ceiling.ping"] > 0
    # Where an enqueue's time went: both processes spent some CPU on it.
    assert values["compare.ours.enqueue_client_cpu"] > 0 and values["compare.ours.enqueue_server_cpu"] > 0
    # A submit is at least one round trip, so it cannot beat a bare one on the same server.
    assert values["ratio.enqueue.ours_vs_ceiling_ping"] < 1.5
    assert values["compare.ours.enqueue_calls_per_job"] >= 1
    assert values["compare.ours.submit_to_start.p50"] > 0
