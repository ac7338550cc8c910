"""The job record's own constructors: what the stores build jobs with."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timezone

from flask_asyncendpoints.jobs import Job, JobPayload, JobStatus, new_job_id, parse_job_id

CREATED = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
DUE = datetime(2026, 11, 23, 13, 0, tzinfo=timezone.utc)


def test_new_sets_every_field_as_the_dataclass_would() -> None:
    payload = JobPayload(body={"n": 1})
    job = Job.new("id", "Work", max_retries=3, payload=payload, created_at=CREATED, queue="q", priority=5)
    expected = Job(
        id="id",
        name="Work",
        status=JobStatus.QUEUED,
        retry_count=0,
        max_retries=3,
        created_at=CREATED,
        last_updated_at=CREATED,
        payload=payload,
        queue="q",
        priority=5,
    )
    assert job == expected
    assert list(vars(job)) == [f.name for f in dataclasses.fields(Job)]
    assert vars(job) == vars(expected)


def test_new_with_a_due_time_is_scheduled_until_then() -> None:
    job = Job.new("id", "Work", max_retries=0, payload=JobPayload(), created_at=CREATED, due_at=DUE)
    assert (job.status, job.retry_delay_until, job.queue, job.priority) == (JobStatus.SCHEDULED, DUE, "default", 0)
    assert job.replace(priority=1).priority == 1


def test_new_job_ids_are_random_uuids_in_their_canonical_text() -> None:
    ids = [new_job_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parse_job_id(job_id) == job_id == str(parsed)
    # Every random bit is used: each hex digit outside the version and variant takes many values.
    for position in set(range(36)) - {8, 13, 14, 18, 19, 23}:
        assert len({job_id[position] for job_id in ids}) > 8
