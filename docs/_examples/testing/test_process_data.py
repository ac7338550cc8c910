from datetime import datetime, timezone

from example_app import create_app
from flask_asyncendpoints.testing.helpers import config_for_tests


def test_the_job_completes(client, run_jobs):
    response = client.post("/api/process-data", json={"data": "Hello"})
    assert response.status_code == 202
    assert response.get_json()["status"] == "Queued"

    assert run_jobs() == 1

    job = client.get(response.headers["Location"]).get_json()
    assert job["status"] == "Completed"
    assert job["result"]["processedData"] == "Processed: HELLO"


def test_a_blank_request_is_refused(client, run_jobs):
    response = client.post("/api/process-data", json={"data": " "})
    assert response.status_code == 400
    assert run_jobs() == 0


def test_times_come_from_the_frozen_clock(client, run_jobs, asyncendpoints_clock):
    asyncendpoints_clock.set(datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc))
    response = client.post("/api/generate-report")
    asyncendpoints_clock.advance(90)
    run_jobs()

    job = client.get(response.headers["Location"]).get_json()
    assert job["createdAt"] == "2026-03-01T12:00:00.000000+00:00"
    assert job["completedAt"] == "2026-03-01T12:01:30.000000+00:00"


def test_immediate_mode_answers_with_the_finished_job(monkeypatch):
    monkeypatch.setenv("EXAMPLE_DELAY", "0")
    app = create_app(config_for_tests(immediate=True))

    response = app.test_client().post("/api/process-data", json={"data": "hi"})

    assert response.status_code == 202
    assert response.get_json()["status"] == "Completed"
