"""The dashboard through Flask's test client: access, CSRF, pages that match the store, actions.

The pages and the actions are checked on every kind of store (they read and act through the
monitoring API only); the access rules and the CSRF checks, which come before any store call, on
the memory store.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from flask import Flask, redirect
from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_asyncendpoints import AsyncEndpoints, JobStatus, StoreError
from flask_asyncendpoints.dashboard import csrf, is_local_request
from flask_asyncendpoints.stores import MemoryStore, Store
from flask_asyncendpoints.worker import Worker

from .monitoring_run import BOOM_BODY, MixedRun, mixed_run, register_handlers

URL = "/asyncendpoints"


@pytest.fixture
def app_config() -> dict[str, object]:
    # The Flaky job's retry far off: on a store with a real clock it must not come due during the run.
    return {
        "ASYNCENDPOINTS_DASHBOARD_URL": URL,
        "ASYNCENDPOINTS_EXECUTION_LOGS": True,
        "ASYNCENDPOINTS_RETRY_DELAY_BASE": 300.0,
    }


@pytest.fixture
def run(ae: AsyncEndpoints, app: Flask, worker: Worker, app_store: Store) -> MixedRun:
    register_handlers(ae)
    return mixed_run(ae, app, worker, app_store)


def page(client: FlaskClient, path: str, status: int = 200, **kwargs: object) -> str:
    response = client.get(URL + path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def number(html: str, element_id: str) -> int:
    match = re.search(rf'id="{re.escape(element_id)}"[^>]*>\s*(\d+)\s*<', html)
    assert match is not None, f"no number in #{element_id}"
    return int(match.group(1))


def token_of(html: str) -> str:
    match = re.search(rf'name="{csrf.FIELD_NAME}" value="([^"]+)"', html)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)


def change_settings(app: Flask, **changes: object) -> None:
    state = app.extensions["asyncendpoints"]
    state.settings = dataclasses.replace(state.settings, **changes)


def job_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-job-id="([0-9a-f-]{36})"', html)


def post(client: FlaskClient, job_id: str, action: str, **extra: str) -> tuple[int, str]:
    token = token_of(page(client, f"/job/{job_id}")) if action != "delete-without-page" else ""
    response = client.post(f"{URL}/job/{job_id}/{action}", data={"csrf_token": token, **extra})
    return response.status_code, response.headers.get("Location", "") or response.get_data(as_text=True)


# -- off by default, and who may open it -------------------------------------------------------------


def test_the_dashboard_is_off_by_default(ae: AsyncEndpoints) -> None:
    app = Flask("plain")
    app.config.update(ASYNCENDPOINTS_WORKER=False)
    ae.init_app(app, store=MemoryStore())
    assert app.test_client().get(URL + "/").status_code == 404
    assert not any(rule.rule.startswith(URL) for rule in app.url_map.iter_rules())


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "127.0.0.2", "::ffff:127.0.0.1"])
def test_local_requests_are_let_in(client: FlaskClient, run: MixedRun, address: str) -> None:
    page(client, "/", environ_base={"REMOTE_ADDR": address})


@pytest.mark.parametrize("address", ["203.0.113.7", "10.0.0.3", "::ffff:192.0.2.1", "2001:db8::1", ""])
def test_other_requests_get_a_403_page_that_says_how_to_open_it(client: FlaskClient, address: str) -> None:
    html = page(client, "/", 403, environ_base={"REMOTE_ADDR": address})
    assert "only requests from the machine" in html
    assert "@ae.dashboard_access" in html
    for path in ("/jobs/Failed", "/workers", f"/job/{'0' * 8}-0000-4000-8000-{'0' * 12}"):
        assert client.get(URL + path, environ_base={"REMOTE_ADDR": address}).status_code == 403


def test_a_refused_request_sees_no_job_data(client: FlaskClient, run: MixedRun) -> None:
    html = page(client, f"/job/{run.failed}", 403, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert run.failed not in html and "Boom" not in html
    assert csrf.COOKIE_NAME not in client.get(URL + "/", environ_base={"REMOTE_ADDR": "203.0.113.7"}).headers.get(
        "Set-Cookie", ""
    )


def test_a_post_from_elsewhere_is_refused_before_anything_else(
    client: FlaskClient, run: MixedRun, memory_store: MemoryStore
) -> None:
    token = token_of(page(client, f"/job/{run.failed}"))  # a valid cookie and token, from a local page
    response = client.post(
        f"{URL}/job/{run.failed}/requeue", data={"csrf_token": token}, environ_base={"REMOTE_ADDR": "203.0.113.7"}
    )
    assert response.status_code == 403
    assert memory_store.get(run.failed).status is JobStatus.FAILED  # type: ignore[union-attr]


def test_a_forwarded_request_through_a_local_proxy_is_not_local(client: FlaskClient) -> None:
    # A proxy on this machine connects from 127.0.0.1; the header says the client is elsewhere.
    html = page(client, "/", 403, headers={"X-Forwarded-For": "203.0.113.7"})
    assert "ProxyFix" in html
    for header in ("Forwarded", "X-Real-IP"):
        assert client.get(URL + "/", headers={header: "for=203.0.113.7"}).status_code == 403


def test_behind_proxyfix_the_client_address_decides(app: Flask, run: MixedRun) -> None:
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    client = app.test_client()
    assert client.get(URL + "/", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 403
    assert client.get(URL + "/", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
    # A remote client cannot claim to be local: ProxyFix trusts only the proxy's own entry (the last one).
    spoofed = client.get(
        URL + "/", headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.7"}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    )
    assert spoofed.status_code == 403


def test_the_stylesheet_is_served_to_anyone(client: FlaskClient) -> None:
    # The 403 page uses it; it holds nothing about jobs.
    response = client.get(URL + "/static/dashboard.css", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert response.status_code == 200
    assert response.mimetype == "text/css"
    response.close()


def test_the_apps_access_function_replaces_the_local_rule(ae: AsyncEndpoints, client: FlaskClient) -> None:
    allowed: dict[str, object] = {}

    @ae.dashboard_access
    def decide() -> object:
        from flask import request

        return allowed.get(request.headers.get("X-User", ""), False)

    allowed["admin"] = True
    allowed["visitor"] = redirect("/login")
    remote = {"REMOTE_ADDR": "203.0.113.7"}
    assert client.get(URL + "/", headers={"X-User": "admin"}, environ_base=remote).status_code == 200
    refused = client.get(URL + "/", headers={"X-User": "nobody"})  # local, but the app's rule says no
    assert refused.status_code == 403
    assert "access function refused" in refused.get_data(as_text=True)
    login = client.get(URL + "/", headers={"X-User": "visitor"}, environ_base=remote)
    assert (login.status_code, login.headers["Location"]) == (302, "/login")


def test_is_local_request_keeps_the_default_rule_inside_an_apps_own(ae: AsyncEndpoints, client: FlaskClient) -> None:
    @ae.dashboard_access
    def local_or_token() -> bool:
        from flask import request

        return is_local_request() or request.headers.get("X-Token") == "letmein"

    remote = {"REMOTE_ADDR": "203.0.113.7"}
    assert client.get(URL + "/").status_code == 200
    assert client.get(URL + "/", environ_base=remote).status_code == 403
    assert client.get(URL + "/", headers={"X-Token": "letmein"}, environ_base=remote).status_code == 200


# -- CSRF ------------------------------------------------------------------------------------------------


def test_a_post_without_the_token_is_refused_and_changes_nothing(
    client: FlaskClient, run: MixedRun, memory_store: MemoryStore
) -> None:
    page(client, f"/job/{run.failed}")  # the browser has the cookie, but the form field is missing
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "forged"}):
        response = client.post(f"{URL}/job/{run.failed}/requeue", data=data)
        assert response.status_code == 403
        assert "security token" in response.get_data(as_text=True)
    assert memory_store.get(run.failed).status is JobStatus.FAILED  # type: ignore[union-attr]


def test_a_token_without_its_cookie_is_refused(app: Flask, run: MixedRun, memory_store: MemoryStore) -> None:
    token = token_of(page(app.test_client(), f"/job/{run.failed}"))
    other_browser = app.test_client()
    response = other_browser.post(f"{URL}/job/{run.failed}/requeue", data={"csrf_token": token})
    assert response.status_code == 403
    assert memory_store.get(run.failed).status is JobStatus.FAILED  # type: ignore[union-attr]


def test_the_cookie_is_strict_http_only_and_scoped_to_the_dashboard(
    app: Flask, client: FlaskClient, run: MixedRun
) -> None:
    cookie = client.get(f"{URL}/job/{run.failed}").headers["Set-Cookie"]
    assert cookie.startswith(csrf.COOKIE_NAME + "=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and f"Path={URL}" in cookie
    # Sent once: later pages reuse the browser's token.
    assert "Set-Cookie" not in client.get(f"{URL}/job/{run.completed[0]}").headers
    # A page without forms sets none.
    assert "Set-Cookie" not in app.test_client().get(URL + "/workers").headers


def test_with_a_secret_key_the_cookie_is_signed(app: Flask, run: MixedRun, memory_store: MemoryStore) -> None:
    app.secret_key = "a test secret"
    client = app.test_client()
    token = token_of(page(client, f"/job/{run.failed}"))
    cookie = client.get_cookie(csrf.COOKIE_NAME, path=URL)
    assert cookie is not None and cookie.value != token and cookie.value.count(".") == 1  # the token, signed
    # A cookie that is just the token (as without a key) is not accepted: it is not signed.
    client.set_cookie(csrf.COOKIE_NAME, token, path=URL)
    assert client.post(f"{URL}/job/{run.failed}/requeue", data={"csrf_token": token}).status_code == 403
    assert memory_store.get(run.failed).status is JobStatus.FAILED  # type: ignore[union-attr]


# -- pages match the store -------------------------------------------------------------------------------


class TestPagesOnEveryStore:
    """Each page shows what the store answers, whichever store it is."""

    @pytest.fixture
    def app_store(self, store: Store) -> Store:
        return store

    def test_the_overview_shows_the_stores_counts(self, client: FlaskClient, run: MixedRun, app_store: Store) -> None:
        html = page(client, "/")
        counts = app_store.counts()
        assert {s: number(html, f"count-{s.value}") for s in JobStatus} == dict(counts)
        assert {s: number(html, f"nav-count-{s.value}") for s in JobStatus} == dict(counts)
        assert dict(counts) == {
            JobStatus.QUEUED: 2,
            JobStatus.SCHEDULED: 1,
            JobStatus.IN_PROGRESS: 1,
            JobStatus.COMPLETED: 3,
            JobStatus.FAILED: 1,
            JobStatus.CANCELED: 1,
        }
        by_name = dict(app_store.counts_by_name())
        for name, name_counts in by_name.items():
            row = re.search(rf'<tr data-name="{name}">(.*?)</tr>', html, re.S)
            assert row is not None, name
            shown = dict(re.findall(r'data-status="(\w+)"[^>]*>(\d+)<', row.group(1)))
            assert shown == {s.value: str(name_counts[s]) for s in JobStatus}
        [queue] = app_store.queue_stats()
        row = re.search(r'<tr data-queue="default">(.*?)</tr>', html, re.S)
        assert row is not None
        assert dict(re.findall(r'data-status="(\w+)"[^>]*>(\d+)<', row.group(1))) == {
            s.value: str(queue.counts[s]) for s in JobStatus
        }

    def test_the_throughput_chart_states_the_stores_numbers(
        self, client: FlaskClient, run: MixedRun, app_store: Store
    ) -> None:
        html = page(client, "/")
        throughput = app_store.throughput()
        for chart_id, points in (("chart-hour", throughput.minutes), ("chart-day", throughput.hours)):
            figure = re.search(rf'<figure class="chart" id="{chart_id}">(.*?)</figure>', html, re.S)
            assert figure is not None
            completed = re.search(r'class="completed-total">(\d+)<', figure.group(1))
            failed = re.search(r'class="failed-total">(\d+)<', figure.group(1))
            assert completed and failed
            assert int(completed.group(1)) == sum(p.completed for p in points) == 3
            assert int(failed.group(1)) == sum(p.failed for p in points) == 1
            # One bar per bucket, each with its numbers in a tooltip.
            assert figure.group(1).count('<g class="bar">') == len(points)
            assert "3 completed, 1 failed" in figure.group(1)

    def test_each_status_list_shows_the_stores_page(self, client: FlaskClient, run: MixedRun, app_store: Store) -> None:
        for status in JobStatus:
            html = page(client, f"/jobs/{status.value}")
            assert job_rows(html) == [job.id for job in app_store.list_jobs(status).jobs]
            assert number(html, "list-total") == app_store.counts()[status]
        assert job_rows(page(client, "/jobs/Failed")) == [run.failed]
        assert job_rows(page(client, "/jobs/inprogress")) == [run.running]  # any spelling of the status

    def test_lists_page_through_every_job_once(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, worker: Worker
    ) -> None:
        ae.handler("Echo")(lambda ctx: ctx.request)
        with app.app_context():
            ids = [ae.submit("Echo", {"n": n}).id for n in range(7)]
        while worker.run_once():
            pass
        seen: list[str] = []
        path = "/jobs/Completed?limit=3"
        pages = 0
        while True:
            html = page(client, path)
            seen += job_rows(html)
            pages += 1
            nxt = re.search(r'href="([^"]+)" rel="next"', html)
            if nxt is None:
                break
            path = nxt.group(1).replace("&amp;", "&").removeprefix(URL)
        assert sorted(seen) == sorted(ids) and len(seen) == 7
        assert pages == 3
        assert 'rel="first"' in html

    def test_the_name_and_queue_filters(self, ae: AsyncEndpoints, client: FlaskClient, run: MixedRun) -> None:
        html = page(client, "/jobs/Completed?name=Echo")
        assert sorted(job_rows(html)) == sorted(run.completed)
        assert number(html, "list-total") == 3
        assert job_rows(page(client, "/jobs/Completed?name=Boom")) == []
        assert "No completed jobs matching the filter" in page(client, "/jobs/Completed?name=Boom")
        assert sorted(job_rows(page(client, "/jobs/Queued?queue=default"))) == sorted(run.queued)
        assert job_rows(page(client, "/jobs/Queued?queue=elsewhere")) == []

    @pytest.mark.parametrize(
        ("path", "status", "text"),
        [
            ("/jobs/Lost", 404, "There is no job status"),
            ("/jobs/Failed?cursor=not-a-cursor", 400, "Start again from the first page"),
            ("/jobs/Failed?limit=0", 400, "limit must be a whole number"),
            ("/jobs/Failed?limit=lots", 400, "limit must be a whole number"),
            ("/job/not-a-uuid", 404, "There is no job with the id"),
            ("/job/3f1c9a2e-0000-4000-8000-000000000000", 404, "There is no job with the id"),
        ],
    )
    def test_bad_links_get_a_page_saying_what_to_do(
        self, client: FlaskClient, run: MixedRun, path: str, status: int, text: str
    ) -> None:
        assert text in page(client, path, status)

    def test_a_job_page_shows_the_record_attempts_and_logs(
        self, client: FlaskClient, run: MixedRun, app_store: Store
    ) -> None:
        html = page(client, f"/job/{run.failed}")
        assert '<dd id="job-status">Failed</dd>' in html
        assert "VALUEERROR" in html
        # The handler's text and the stored body are shown as text, never as markup.
        assert "the input was &lt;b&gt;bad&lt;/b&gt;" in html
        assert "&lt;script&gt;alert(" in html and "<script>" not in html
        assert BOOM_BODY["note"] not in html
        [attempt] = app_store.attempts(run.failed)
        attempts = re.search(r'<table id="attempts">(.*?)</table>', html, re.S)
        assert attempts is not None and "outcome-failed" in attempts.group(1)
        assert attempt.worker_id in attempts.group(1)
        [line] = app_store.logs(run.failed)
        assert line.message == "about to fail"
        log = re.search(r'<table class="log" data-attempt="1">(.*?)</table>', html, re.S)
        assert log is not None and "about to fail" in log.group(1) and "WARNING" in log.group(1)

    def test_a_job_page_leaves_out_redacted_headers(
        self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, run: MixedRun, app_store: Store
    ) -> None:
        html = page(client, f"/job/{run.retrying}")
        assert "trace-42" in html and "X-Trace" in html
        assert (
            "s3cret-token" not in html and "Authorization" not in html.split('id="job-headers"')[1].split("</table>")[0]
        )
        # A header stored before it was added to the redaction list is not shown either.
        job = app_store.get(run.retrying)
        assert job is not None and ("X-Trace", "trace-42") in job.payload.headers
        change_settings(app, redact_headers=frozenset({"authorization", "x-trace"}))
        assert "trace-42" not in page(client, f"/job/{run.retrying}")

    def test_tracebacks_only_when_exposed(self, app: Flask, client: FlaskClient, run: MixedRun) -> None:
        assert "Traceback" not in page(client, f"/job/{run.failed}")
        change_settings(app, expose_tracebacks=True)
        assert "Traceback (most recent call last)" in page(client, f"/job/{run.failed}")

    def test_hidden_exception_messages_stay_hidden(self, app: Flask, client: FlaskClient, run: MixedRun) -> None:
        change_settings(app, expose_exception_messages=False)
        html = page(client, f"/job/{run.failed}")
        assert "the input was" not in html
        assert "The handler raised ValueError." in html
        assert "(message hidden)" in html

    def test_the_running_job_and_the_workers(self, client: FlaskClient, run: MixedRun, worker: Worker) -> None:
        html = page(client, f"/job/{run.running}")
        assert "4 of 10 rows" in html and 'value="0.4"' in html
        workers = page(client, "/workers")
        row = re.search(rf'<tr data-worker-id="{re.escape(worker.worker_id)}">(.*?)</tr>', workers, re.S)
        assert row is not None
        assert re.findall(r'<td class="num">(\d+)</td>', row.group(1))[-1] == "1"  # running one job
        assert run.running[:8] in workers

    def test_the_schedules_page(self, ae: AsyncEndpoints, app: Flask, client: FlaskClient, app_store: Store) -> None:
        ae.handler("Report")(lambda ctx: None)
        ae.schedule("nightly-report", cron="0 3 * * *", job_name="Report")
        app_store.claim_occurrence("nightly-report", 1_767_236_400.0)  # 2026-01-01 03:00 UTC
        html = page(client, "/schedules")
        row = re.search(r'<tr data-schedule="nightly-report">(.*?)</tr>', html, re.S)
        assert row is not None
        assert "0 3 * * *" in row.group(1) and "Report" in row.group(1)
        assert "2026-01-01 03:00:00 UTC" in row.group(1)

    def test_every_page_carries_the_security_headers(self, client: FlaskClient, run: MixedRun) -> None:
        for path in ("/", "/jobs/Failed", f"/job/{run.failed}", "/workers", "/schedules", "/jobs/Nope"):
            headers = client.get(URL + path).headers
            assert headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
            assert headers["Cache-Control"] == "no-store"

    def test_the_pages_read_without_scripts(self, client: FlaskClient, run: MixedRun) -> None:
        for path in ("/", "/jobs/Failed", f"/job/{run.failed}", "/workers", "/schedules"):
            assert "<script" not in page(client, path)


# -- actions ---------------------------------------------------------------------------------------------


class TestActionsOnEveryStore:
    """Each action changes the job in the store, whichever store it is."""

    @pytest.fixture
    def app_store(self, store: Store) -> Store:
        return store

    def test_requeue_a_failed_job(self, client: FlaskClient, run: MixedRun, app_store: Store) -> None:
        status, location = post(client, run.failed, "requeue")
        assert (status, location) == (303, f"{URL}/job/{run.failed}?done=requeued")
        assert app_store.get(run.failed).status is JobStatus.QUEUED  # type: ignore[union-attr]
        assert "put back in its queue" in page(client, location.removeprefix(URL))

    def test_cancel_a_queued_and_a_running_job(self, client: FlaskClient, run: MixedRun, app_store: Store) -> None:
        assert post(client, run.queued[0], "cancel")[0] == 303
        assert app_store.get(run.queued[0]).status is JobStatus.CANCELED  # type: ignore[union-attr]
        status, location = post(client, run.running, "cancel")
        assert (status, location) == (303, f"{URL}/job/{run.running}?done=cancel-requested")
        running = app_store.get(run.running)
        assert running is not None and running.cancel_requested and running.status is JobStatus.IN_PROGRESS

    def test_a_list_action_returns_to_the_list(self, client: FlaskClient, run: MixedRun, app_store: Store) -> None:
        token = token_of(page(client, "/jobs/Failed"))
        response = client.post(f"{URL}/job/{run.failed}/requeue", data={"csrf_token": token, "back": "list"})
        assert (response.status_code, response.headers["Location"]) == (303, f"{URL}/jobs/Failed?done=requeued")
        assert app_store.get(run.failed).status is JobStatus.QUEUED  # type: ignore[union-attr]

    def test_delete_a_finished_job(self, client: FlaskClient, run: MixedRun, app_store: Store) -> None:
        status, location = post(client, run.completed[0], "delete")
        assert (status, location) == (303, f"{URL}/jobs/Completed?done=deleted")
        assert app_store.get(run.completed[0]) is None
        assert app_store.attempts(run.completed[0]) == []

    @pytest.mark.parametrize(
        ("which", "action", "text"),
        [
            ("completed", "requeue", "Only a Failed job can be requeued"),
            ("completed", "cancel", "Only a queued, scheduled or running job can be canceled"),
            ("running", "delete", "Only a finished"),
            ("queued", "delete", "Only a finished"),
        ],
    )
    def test_an_action_that_does_not_fit_the_job_is_a_409_page(
        self, client: FlaskClient, run: MixedRun, app_store: Store, which: str, action: str, text: str
    ) -> None:
        job_id = {"completed": run.completed[0], "running": run.running, "queued": run.queued[0]}[which]
        before = app_store.get(job_id)
        status, body = post(client, job_id, action)
        assert status == 409 and text in body
        assert app_store.get(job_id) == before

    def test_an_unknown_action_or_job(self, client: FlaskClient, run: MixedRun) -> None:
        token = token_of(page(client, f"/job/{run.failed}"))
        assert client.post(f"{URL}/job/{run.failed}/explode", data={"csrf_token": token}).status_code == 404
        unknown = "3f1c9a2e-0000-4000-8000-000000000000"
        assert client.post(f"{URL}/job/{unknown}/requeue", data={"csrf_token": token}).status_code == 404
        assert client.get(f"{URL}/job/{run.failed}/requeue").status_code == 405

    def test_the_authorize_hook_applies_to_each_action(
        self, ae: AsyncEndpoints, client: FlaskClient, run: MixedRun, app_store: Store
    ) -> None:
        asked: list[str] = []

        @ae.authorize
        def only_reads_and_requeues(job: object, action: str) -> bool:
            asked.append(action)
            return action in ("read", "requeue")

        assert post(client, run.failed, "requeue")[0] == 303
        assert post(client, run.completed[0], "delete")[0] == 404
        assert app_store.get(run.completed[0]) is not None
        assert {"read", "requeue", "delete"} <= set(asked)


# -- the store --------------------------------------------------------------------------------------------


class DownStore(MemoryStore):
    """A store whose every read and write fails as an unreachable server's would."""

    def __getattribute__(self, name: str) -> object:
        if name in _STORE_METHODS:
            raise StoreError(f"Could not reach the store while calling {name}().")
        return super().__getattribute__(name)


_STORE_METHODS = {name for name in dir(Store) if not name.startswith("_") and callable(getattr(Store, name))}


def test_an_unreachable_store_is_a_503_page(ae: AsyncEndpoints) -> None:
    app = Flask("down")
    app.config.update(ASYNCENDPOINTS_WORKER=False, ASYNCENDPOINTS_DASHBOARD_URL=URL)
    ae.init_app(app, store=DownStore())
    client = app.test_client()
    for path in ("/", "/jobs/Failed", "/job/3f1c9a2e-0000-4000-8000-000000000000", "/workers", "/schedules"):
        response = client.get(URL + path)
        assert response.status_code == 503
        assert "Job store unavailable" in response.get_data(as_text=True)
        assert response.headers["Retry-After"] == "5"
    response = client.post(f"{URL}/job/3f1c9a2e-0000-4000-8000-000000000000/cancel")
    assert response.status_code == 403  # the token check comes first, and needs no store


class PartialStore(MemoryStore):
    """A custom store that has not implemented the monitoring reads yet."""

    def throughput(self, *, now: float | None = None) -> object:  # type: ignore[override]
        raise NotImplementedError("PartialStore does not implement Store.throughput() yet")


def test_a_store_without_the_monitoring_api_is_a_501_page(ae: AsyncEndpoints) -> None:
    app = Flask("partial")
    app.config.update(ASYNCENDPOINTS_WORKER=False, ASYNCENDPOINTS_DASHBOARD_URL=URL)
    ae.init_app(app, store=PartialStore())
    response = app.test_client().get(URL + "/")
    assert response.status_code == 501
    assert "does not implement Store.throughput()" in response.get_data(as_text=True)


def test_the_dashboard_works_on_every_store(ae: AsyncEndpoints, store: Store) -> None:
    # Only the Store interface is used: the same pages on every kind of store, an app of its own.
    register_handlers(ae)
    app = Flask("every")
    app.config.update(ASYNCENDPOINTS_WORKER=False, ASYNCENDPOINTS_DASHBOARD_URL=URL)
    ae.init_app(app, store=store)
    with app.app_context():
        job_id = ae.submit("Boom", BOOM_BODY).id
    ae.get_worker(app).run_once()
    client = app.test_client()
    assert number(page(client, "/"), "count-Failed") == 1
    assert job_rows(page(client, "/jobs/Failed")) == [job_id]
    assert "VALUEERROR" in page(client, f"/job/{job_id}")
    status, _ = post(client, job_id, "requeue")
    assert status == 303
    assert store.get(job_id).status is JobStatus.QUEUED  # type: ignore[union-attr]
