"""The constants and helpers the contract's tests share: its clock, leases, and short ways to submit and claim."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import Any

from ...jobs import DEFAULT_QUEUE, ClaimedJob, Job, JobError, JobPayload, JobStatus, from_timestamp
from ...stores import Store

#: The time every test starts from: 2026-01-01T00:00:00Z, a whole hour.
T0 = 1_767_225_600.0
#: The lease of every claim, and the result ttl of every finish, in seconds.
LEASE = 30.0
TTL = 3600.0
#: A due time later than any clock a test runs under (2036).
FAR = T0 + 10 * 365 * 86400.0


def new_id() -> str:
    """A fresh job id."""
    return str(uuid.uuid4())


def submit(
    store: Store,
    *,
    now: float = T0,
    max_retries: int = 3,
    name: str = "Work",
    body: object = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    due: float | None = None,
) -> str:
    """Create a job; its id."""
    job_id = new_id()
    store.create(
        job_id, name, JobPayload(body=body), max_retries=max_retries, queue=queue, priority=priority, due=due, now=now
    )
    return job_id


def claim_one(store: Store, now: float, **options: Any) -> ClaimedJob:
    """Claim exactly one job (failing the test otherwise)."""
    claimed = store.claim(1, LEASE, now=now, **options)
    assert len(claimed) == 1, f"expected one job to claim, got {len(claimed)}"
    return claimed[0]


def claim_ids(store: Store, now: float, limit: int = 100, **options: Any) -> list[str]:
    """Claim up to ``limit`` jobs; their ids in claim order."""
    return [claimed.job.id for claimed in store.claim(limit, LEASE, now=now, **options)]


def an_error() -> JobError:
    """A failure with a chained exception, as a handler's would be."""
    try:
        try:
            raise KeyError("missing")
        except KeyError as inner:
            raise ValueError("bad value") from inner
    except ValueError as exc:
        return JobError.from_exception(exc)


def assert_claimed_exactly_once(store: Store, total: int) -> None:
    """Eight threads race to claim ``total`` jobs; every job must reach exactly one of them."""
    ids = {submit(store) for _ in range(total)}
    seen: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def claimer() -> None:
        start.wait()
        while True:
            batch = store.claim(5, LEASE, now=T0 + 1)
            if not batch:
                return
            with lock:
                seen.extend(c.job.id for c in batch)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == len(ids)
    assert set(seen) == ids


def _at(seconds: float) -> datetime:
    stamp = from_timestamp(seconds)
    assert stamp is not None
    return stamp


def _stored(store: Store, job_id: str) -> Job:
    job = store.get(job_id)
    assert job is not None, f"job {job_id} is not stored"
    return job


def _page_ids(store: Store, status: JobStatus, limit: int, **options: Any) -> list[list[str]]:
    """Every page of ``list_jobs``, as the ids on each page."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = store.list_jobs(status, cursor=cursor, limit=limit, **options)
        pages.append([job.id for job in page.jobs])
        assert len(pages) < 10_000, "list_jobs never ends"
        if page.cursor is None:
            return pages
        assert page.jobs, "a page with a cursor after it has jobs"
        cursor = page.cursor


def _listed(store: Store, status: JobStatus, **options: Any) -> list[str]:
    return [job_id for page in _page_ids(store, status, limit=1000, **options) for job_id in page]
