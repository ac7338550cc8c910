"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright.

The app is served on a free loopback port by werkzeug in a thread, once on the memory store and
once on a real Redis. The jobs are made by driving the worker with ``run_once()`` (no sleeping): a
background of completed and failed jobs over the last hour (on the memory store's fake clock; on
Redis, whose clock is the server's, all in the current minute), then the mixed run of
:mod:`tests.monitoring_run`. The test checks that
what a person sees matches the store, that a requeue and a cancel clicked in the page take effect,
and that a POST without the CSRF token and a request from elsewhere are refused. Each page is saved
as a screenshot under ``tests/screenshots/`` (git-ignored).

Without Chromium (``/usr/bin/chromium``, ``apt-get install chromium``) or the ``playwright``
package the test is skipped, except where ``ASYNCENDPOINTS_REQUIRE_REDIS`` is set (CI): there it
fails.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from flask_asyncendpoints import AsyncEndpoints, JobStatus
from flask_asyncendpoints.stores import MemoryStore, Store

from .conftest import REQUIRE_REDIS_ENV, FakeClock, make_store
from .monitoring_run import MixedRun, handler_logger, mixed_run, register_handlers

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
URL = "/asyncendpoints"

#: Jobs of the background: completed and failed ones, a few each minute over the last 50 minutes.
BACKGROUND_MINUTES = 50


def require(available: bool, what: str) -> None:
    if available:
        return
    if os.environ.get(REQUIRE_REDIS_ENV):
        pytest.fail(f"{what} is required ({REQUIRE_REDIS_ENV} is set): the dashboard's browser test must run")
    pytest.skip(f"{what} is not available")


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require(shutil.which(CHROMIUM) is not None, f"Chromium ({CHROMIUM}; apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright (pip install playwright)")
        raise
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data dir
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1360, "height": 900},
            device_scale_factor=1,
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


class Server:
    """The app on a free loopback port, served by werkzeug in a thread."""

    def __init__(self, app: Flask) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="dashboard-server", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(10)
        self.server.server_close()


@pytest.fixture(params=["memory", "redis"])
def served(
    request: pytest.FixtureRequest, ae: AsyncEndpoints, key_prefix: str
) -> Iterator[tuple[Flask, Store, MixedRun, Server]]:
    # The fake clock starts 50 minutes ago and is moved to now while the background runs, so the
    # chart has an hour of history and the ages on the pages read as a person would see them.
    clock = FakeClock(start=time.time() - BACKGROUND_MINUTES * 60)
    store = (
        MemoryStore(clock=clock) if request.param == "memory" else make_store(request.param, request, clock, key_prefix)
    )
    app = Flask("browser")
    app.config.update(
        ASYNCENDPOINTS_WORKER=False,
        ASYNCENDPOINTS_DASHBOARD_URL=URL,
        ASYNCENDPOINTS_EXECUTION_LOGS=True,
        ASYNCENDPOINTS_BATCH_SIZE=50,
        # The Flaky job's retry far off: on Redis's real clock it must not come due during the run.
        ASYNCENDPOINTS_RETRY_DELAY_BASE=300.0,
    )
    ae.init_app(app, store=store)
    register_handlers(ae)
    nightly = ae.schedule("nightly-cleanup", cron="30 2 * * *", job_name="Echo", payload={"n": "nightly"})
    last = nightly.latest(clock.now)
    assert last is not None and store.claim_occurrence(nightly.name, last)
    previous_level = handler_logger.level
    handler_logger.setLevel(logging.INFO)  # the handlers' INFO lines go to the execution logs
    worker = ae.get_worker(app)
    with app.app_context():
        for minute in range(BACKGROUND_MINUTES):
            for n in range(minute % 7 + 1):
                ae.submit("Echo", {"minute": minute, "n": n})
            if minute % 9 == 4:
                ae.submit("Boom", {"minute": minute})
            while worker.run_once():
                pass
            clock.advance(60)
    run = mixed_run(ae, app, worker, store)
    with Server(app) as server:
        yield app, store, run, server
    handler_logger.setLevel(previous_level)
    ae.shutdown(app, timeout=5)


def shot(page: Any, name: str, store: Store) -> None:
    """Save the page as ``<name>.png`` (``<name>-redis.png`` for the run on Redis)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    suffix = "" if isinstance(store, MemoryStore) else "-redis"
    page.screenshot(path=str(SCREENSHOTS / f"{name}{suffix}.png"), full_page=True)


def number(page: Any, selector: str) -> int:
    return int(page.locator(selector).inner_text().strip())


def test_the_dashboard_in_a_browser(browser_context: Any, served: tuple[Flask, Store, MixedRun, Server]) -> None:
    app, store, run, server = served
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    # The overview: the numbers on the cards, in the queue table, per job name and under the charts.
    page.goto(server.base + URL + "/")
    counts = store.counts()
    assert {s: number(page, f"#count-{s.value}") for s in JobStatus} == dict(counts)
    assert counts[JobStatus.FAILED] > 1 and counts[JobStatus.COMPLETED] > 100  # the background is there
    queue_row = page.locator('#queues tr[data-queue="default"]')
    [stats] = store.queue_stats()
    for status in JobStatus:
        assert int(queue_row.locator(f'[data-status="{status.value}"]').inner_text()) == stats.counts[status]
    for name, name_counts in store.counts_by_name().items():
        row = page.locator(f'#by-name tr[data-name="{name}"]')
        for status in JobStatus:
            assert int(row.locator(f'[data-status="{status.value}"]').inner_text()) == name_counts[status]
    throughput = store.throughput()
    hour = page.locator("#chart-hour")
    assert int(hour.locator(".completed-total").inner_text()) == sum(p.completed for p in throughput.minutes)
    assert int(hour.locator(".failed-total").inner_text()) == sum(p.failed for p in throughput.minutes)
    assert hour.locator("svg g.bar").count() == len(throughput.minutes) == 60
    day = page.locator("#chart-day")
    assert int(day.locator(".completed-total").inner_text()) == sum(p.completed for p in throughput.hours)
    assert page.locator("#running tbody tr").count() == 1
    # The stylesheet loaded (the layout depends on it) and nothing failed in the page.
    assert page.locator("header.top").evaluate("e => getComputedStyle(e).display") == "flex"
    shot(page, "overview", store)

    # The Failed list, then a requeue clicked in the job's row.
    page.click("nav >> text=Failed")
    page.wait_for_url(re.compile(r"/jobs/Failed"))
    failed_ids = [job.id for job in store.list_jobs(JobStatus.FAILED).jobs]
    assert page.locator("#jobs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.jobId)") == failed_ids
    assert number(page, "#list-total") == counts[JobStatus.FAILED]
    shot(page, "failed", store)

    page.click(f'#jobs tr[data-job-id="{run.failed}"] td:first-child a')
    page.wait_for_url(re.compile(rf"/job/{run.failed}$"))
    assert page.locator("#job-status").inner_text() == "Failed"
    assert page.locator("#attempts tbody tr").count() == len(store.attempts(run.failed)) == 1
    assert "about to fail" in page.locator("table.log").inner_text()
    assert "<script>" in page.locator("#job-body").inner_text()  # shown as text
    shot(page, "job-failed", store)
    page.click('button[data-action="requeue"]')
    page.wait_for_url(re.compile(r"done=requeued"))
    assert "put back in its queue" in page.locator(".notice").inner_text()
    assert store.get(run.failed).status is JobStatus.QUEUED  # type: ignore[union-attr]
    assert page.locator("#job-status").inner_text() == "Queued"

    # The running job: its progress, then a cancel clicked on its page.
    page.goto(f"{server.base}{URL}/job/{run.running}")
    assert "4 of 10 rows" in page.locator("#job-progress").inner_text()
    shot(page, "job-running", store)
    page.click('button[data-action="cancel"]')
    page.wait_for_url(re.compile(r"done=cancel-requested"))
    running = store.get(run.running)
    assert running is not None and running.cancel_requested
    # A queued job canceled from the Queued list.
    page.goto(f"{server.base}{URL}/jobs/Queued")
    page.click(f'#jobs tr[data-job-id="{run.queued[0]}"] button[data-action="cancel"]')
    page.wait_for_url(re.compile(r"/jobs/Queued\?done=canceled"))
    assert store.get(run.queued[0]).status is JobStatus.CANCELED  # type: ignore[union-attr]
    assert run.queued[0] not in page.locator("#jobs").inner_text()

    # A completed job, the workers and the schedules.
    page.goto(f"{server.base}{URL}/job/{run.completed[0]}")
    assert page.locator("#job-result").inner_text().strip().startswith("{")
    shot(page, "job-completed", store)
    page.goto(f"{server.base}{URL}/workers")
    assert page.locator("#workers tbody tr").count() == len(store.workers()) == 1
    shot(page, "workers", store)
    page.goto(f"{server.base}{URL}/schedules")
    assert "30 2 * * *" in page.locator('#schedules tr[data-schedule="nightly-cleanup"]').inner_text()
    shot(page, "schedules", store)

    # A POST without the CSRF token, with the browser's cookies: refused, nothing changed.
    job_id = run.queued[1]
    response = page.request.post(f"{server.base}{URL}/job/{job_id}/cancel", form={"back": "list"})
    assert response.status == 403
    assert "security token" in response.text()
    assert store.get(job_id).status is JobStatus.QUEUED  # type: ignore[union-attr]
    # Nor with a forged one.
    response = page.request.post(f"{server.base}{URL}/job/{job_id}/cancel", form={"csrf_token": "forged"})
    assert response.status == 403
    assert store.get(job_id).status is JobStatus.QUEUED  # type: ignore[union-attr]

    # A request through a proxy (as the server sees it: loopback, with X-Forwarded-For) is refused.
    proxied = browser_context.new_page()
    proxied.set_extra_http_headers({"X-Forwarded-For": "203.0.113.7"})
    answer = proxied.goto(server.base + URL + "/")
    assert answer is not None and answer.status == 403
    assert "ProxyFix" in proxied.locator("main").inner_text()
    shot(proxied, "forbidden", store)
    proxied.close()
    # And one from another address (faked: the server listens on loopback only).
    remote = app.test_client().get(URL + "/", environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert remote.status_code == 403

    assert errors == []
    page.close()
