"""Each job's attempt history and its execution log."""

from __future__ import annotations

import pytest

from ...jobs import AttemptOutcome, AttemptRecord, JobError, JobStatus, LogRecord, from_timestamp
from ...stores import DEFAULT_HISTORY_LIMIT, Store
from ...stores.base import LEASE_EXPIRED_CODE
from .support import LEASE, T0, TTL, _at, _stored, an_error, claim_one, new_id, submit


class HistoryContract:
    @pytest.fixture
    def history_limit(self) -> int:
        """The ``history_limit`` of the ``store`` fixture's store."""
        return DEFAULT_HISTORY_LIMIT

    def test_a_completed_attempt_is_recorded(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0 + 1, worker_id="host-1:42")
        store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 3.5)

        assert store.attempts(job_id) == [
            AttemptRecord(
                number=1,
                started_at=_at(T0 + 1),
                finished_at=_at(T0 + 3.5),
                worker_id="host-1:42",
                outcome=AttemptOutcome.COMPLETED,
                error_code=None,
                error_message=None,
            )
        ]
        assert store.attempts(job_id)[0].duration == 2.5

    def test_every_way_an_attempt_ends_is_recorded_in_order(self, store: Store) -> None:
        job_id = submit(store, max_retries=2)
        first = claim_one(store, T0, worker_id="a")
        store.fail(job_id, first.token, an_error(), retry_delay=0.0, result_ttl=TTL, now=T0 + 1)
        second = claim_one(store, T0 + 1, worker_id="b")
        store.release(job_id, second.token, now=T0 + 2)
        claim_one(store, T0 + 2, worker_id="c")
        store.recover(result_ttl=TTL, now=T0 + 2 + LEASE + 1)  # retry 2 of 2
        last = claim_one(store, T0 + 40, worker_id="d")
        error = JobError(code="BOOM", message="out of retries")
        store.fail(job_id, last.token, error, retry_delay=1.0, result_ttl=TTL, now=T0 + 41)

        records = store.attempts(job_id)

        assert [(r.number, r.worker_id, r.outcome) for r in records] == [
            (1, "a", AttemptOutcome.RETRYING),
            (2, "b", AttemptOutcome.RELEASED),
            (2, "c", AttemptOutcome.LEASE_EXPIRED),
            (3, "d", AttemptOutcome.FAILED),
        ]
        assert [(r.error_code, r.error_message) for r in records] == [
            ("VALUEERROR", "bad value"),
            (None, None),
            (LEASE_EXPIRED_CODE, records[2].error_message),
            ("BOOM", "out of retries"),
        ]
        assert records[2].error_message
        assert [r.started_at for r in records] == [from_timestamp(t) for t in (T0, T0 + 1, T0 + 2, T0 + 40)]
        assert [r.finished_at for r in records] == [
            from_timestamp(t) for t in (T0 + 1, T0 + 2, T0 + 2 + LEASE + 1, T0 + 41)
        ]

    def test_a_lease_lost_for_good_is_recorded(self, store: Store) -> None:
        job_id = submit(store, max_retries=0)
        claim_one(store, T0, worker_id="gone")
        store.recover(result_ttl=TTL, now=T0 + LEASE + 1)

        (record,) = store.attempts(job_id)
        assert (record.outcome, record.error_code, record.worker_id) == (
            AttemptOutcome.LEASE_EXPIRED,
            LEASE_EXPIRED_CODE,
            "gone",
        )
        assert _stored(store, job_id).status is JobStatus.FAILED

    def test_a_job_that_never_ran_has_no_history(self, store: Store) -> None:
        job_id = submit(store)
        store.cancel(job_id, result_ttl=TTL, now=T0)

        assert store.attempts(job_id) == []
        assert store.attempts(new_id()) == []
        assert store.attempts(submit(store)) == []

    def test_only_the_last_attempts_are_kept(self, store: Store, history_limit: int) -> None:
        runs = history_limit + 3
        job_id = submit(store, max_retries=runs)
        for number in range(1, runs + 1):
            claimed = claim_one(store, T0 + number)
            store.fail(
                job_id, claimed.token, JobError("E", f"run {number}"), retry_delay=0.0, result_ttl=TTL, now=T0 + number
            )
        claimed = claim_one(store, T0 + 100)
        store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 100)

        records = store.attempts(job_id)

        assert len(records) == history_limit
        assert [r.number for r in records] == list(range(runs + 2 - history_limit, runs + 2))
        assert records[-1].outcome is AttemptOutcome.COMPLETED
        assert records[0].error_message == f"run {runs + 2 - history_limit}"

    def test_the_history_goes_with_the_job(self, store: Store) -> None:
        purged, deleted = submit(store), submit(store)
        for job_id in (purged, deleted):
            claimed = claim_one(store, T0)
            store.complete(job_id, claimed.token, "1", result_ttl=10.0, now=T0)
            assert len(store.attempts(job_id)) == 1

        assert store.delete(deleted, now=T0 + 1)
        assert store.purge(now=T0 + 10) == 1

        assert store.attempts(purged) == store.attempts(deleted) == []


class LogsContract:
    @staticmethod
    def _line(message: str, *, attempt: int = 1, at: float = T0, level: str = "INFO") -> LogRecord:
        return LogRecord(attempt=attempt, at=_at(at), level=level, logger="app.jobs", message=message)

    def test_lines_are_kept_in_order_while_the_lease_is_held(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        lines = [self._line("starting"), self._line("héllo wörld", at=T0 + 1, level="WARNING")]

        assert store.append_logs(job_id, claimed.token, lines[:1], max_lines=100, max_bytes=10_000)
        assert store.append_logs(job_id, claimed.token, lines[1:], max_lines=100, max_bytes=10_000)
        store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 2)

        assert store.logs(job_id) == lines

    def test_a_token_without_the_lease_stores_nothing(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)

        assert store.append_logs(job_id, "not-the-token", [self._line("x")], max_lines=10, max_bytes=1000) is False
        store.complete(job_id, claimed.token, "1", result_ttl=TTL, now=T0 + 1)
        assert store.append_logs(job_id, claimed.token, [self._line("late")], max_lines=10, max_bytes=1000) is False
        assert store.append_logs(new_id(), "t", [self._line("x")], max_lines=10, max_bytes=1000) is False
        assert store.logs(job_id) == []
        assert store.logs(new_id()) == []

    def test_the_log_spans_attempts(self, store: Store) -> None:
        job_id = submit(store)
        first = claim_one(store, T0)
        store.append_logs(job_id, first.token, [self._line("one", attempt=1)], max_lines=10, max_bytes=1000)
        store.fail(job_id, first.token, an_error(), retry_delay=0.0, result_ttl=TTL, now=T0)
        second = claim_one(store, T0)
        store.append_logs(job_id, second.token, [self._line("two", attempt=2)], max_lines=10, max_bytes=1000)

        assert [(line.attempt, line.message) for line in store.logs(job_id)] == [(1, "one"), (2, "two")]

    def test_the_oldest_lines_go_past_max_lines(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        for batch in (["1", "2"], ["3", "4", "5"]):
            lines = [self._line(text) for text in batch]
            assert store.append_logs(job_id, claimed.token, lines, max_lines=3, max_bytes=1000)

        assert [line.message for line in store.logs(job_id)] == ["3", "4", "5"]

    def test_the_oldest_lines_go_past_max_bytes_counted_in_utf8(self, store: Store) -> None:
        job_id = submit(store)
        claimed = claim_one(store, T0)
        lines = [self._line(text) for text in ("aaaa", "éé", "bbbb", "€")]  # 4, 4, 4 and 3 bytes

        assert store.append_logs(job_id, claimed.token, lines, max_lines=100, max_bytes=11)

        assert [line.message for line in store.logs(job_id)] == ["éé", "bbbb", "€"]
        assert store.append_logs(job_id, claimed.token, [self._line("x" * 12)], max_lines=100, max_bytes=11)
        assert store.logs(job_id) == [], "a line longer than max_bytes on its own is not kept"

    def test_the_log_goes_with_the_job(self, store: Store) -> None:
        purged, deleted = submit(store), submit(store)
        for job_id in (purged, deleted):
            claimed = claim_one(store, T0)
            store.append_logs(job_id, claimed.token, [self._line("x")], max_lines=10, max_bytes=100)
            store.complete(job_id, claimed.token, "1", result_ttl=10.0, now=T0)

        assert store.delete(deleted, now=T0 + 1)
        assert store.purge(now=T0 + 10) == 1

        assert store.logs(purged) == store.logs(deleted) == []
