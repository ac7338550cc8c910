"""The worker registers itself in the store, heartbeats, and leaves at shutdown."""

from __future__ import annotations

import os
import socket

import pytest
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints
from flask_asyncendpoints.stores import MemoryStore

from .conftest import FakeClock


@pytest.fixture
def app_config() -> dict[str, object]:
    return {"ASYNCENDPOINTS_WORKER_HEARTBEAT": 10.0, "ASYNCENDPOINTS_MAX_CONCURRENCY": 3}


def test_a_started_worker_is_listed_until_it_stops(ae: AsyncEndpoints, app: Flask, memory_store: MemoryStore) -> None:
    ae.handler("Low", queue="low")(lambda ctx: None)
    worker = ae.start_worker(app)
    [info] = memory_store.workers()
    assert info.id == worker.worker_id
    assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
    assert info.queues == ("default", "low")
    assert info.concurrency == 3
    ae.shutdown(app, timeout=5)
    assert memory_store.workers() == []


def test_a_worker_that_stops_beating_expires_after_three_heartbeats(
    ae: AsyncEndpoints, app: Flask, memory_store: MemoryStore, clock: FakeClock
) -> None:
    worker = ae.get_worker(app)
    worker.beat(now=clock.now)
    assert [w.id for w in memory_store.workers(now=clock.now + 29)] == [worker.worker_id]
    worker.beat(now=clock.now + 29)
    [info] = memory_store.workers(now=clock.now + 58)
    assert info.heartbeat_at.timestamp() == pytest.approx(clock.now + 29)
    assert memory_store.workers(now=clock.now + 60) == []
