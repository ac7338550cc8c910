"""The worker registers itself in the store, heartbeats, and leaves at shutdown, on every kind of store."""

from __future__ import annotations

import os
import socket

import pytest
from flask import Flask

from flask_asyncendpoints import AsyncEndpoints
from flask_asyncendpoints.stores import Store

from .conftest import T0


@pytest.fixture
def app_config() -> dict[str, object]:
    return {"ASYNCENDPOINTS_WORKER_HEARTBEAT": 10.0, "ASYNCENDPOINTS_MAX_CONCURRENCY": 3}


@pytest.fixture
def app_store(store: Store) -> Store:
    return store


def test_a_started_worker_is_listed_until_it_stops(ae: AsyncEndpoints, app: Flask, app_store: Store) -> None:
    ae.handler("Low", queue="low")(lambda ctx: None)
    worker = ae.start_worker(app)
    [info] = app_store.workers()
    assert info.id == worker.worker_id
    assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
    assert info.queues == ("default", "low")
    assert info.concurrency == 3
    ae.shutdown(app, timeout=5)
    assert app_store.workers() == []


def test_a_worker_that_stops_beating_expires_after_three_heartbeats(
    ae: AsyncEndpoints, app: Flask, app_store: Store
) -> None:
    worker = ae.get_worker(app)
    worker.beat(now=T0)
    assert [w.id for w in app_store.workers(now=T0 + 29)] == [worker.worker_id]
    worker.beat(now=T0 + 29)
    [info] = app_store.workers(now=T0 + 58)
    assert info.heartbeat_at.timestamp() == pytest.approx(T0 + 29)
    assert app_store.workers(now=T0 + 60) == []


def test_a_worker_stopped_at_once_leaves_the_registry_too(ae: AsyncEndpoints, app: Flask, app_store: Store) -> None:
    # A second Ctrl+C cuts the shutdown short with release_now(): the worker must not stay listed,
    # and a heartbeat still under way must not list it again.
    worker = ae.get_worker(app)
    worker.beat()
    assert [w.id for w in app_store.workers()] == [worker.worker_id]
    assert worker.release_now() == 0
    assert app_store.workers() == []
    worker.beat()
    assert app_store.workers() == []
