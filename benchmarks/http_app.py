"""The app ``benchmarks/http.py`` serves with gunicorn: the example endpoint and a bare Flask twin.

``POST /api/process-data`` is the example app's endpoint (same request schema, response schema and
validator) and queues a job; ``POST /bare/process-data`` parses the same JSON body and answers ``202``
with a job-sized JSON body and the same headers, queueing nothing. No worker runs in these processes
(``ASYNCENDPOINTS_WORKER`` is off), so the difference between the two is the cost of submitting.

With a Redis store, ``POST /bare-redis/process-data`` is the bare route plus one round trip to the
same Redis: an ``EVALSHA`` of a one-call script on a connection each thread keeps (the ceiling loop
of ``compare.py``). A submit needs at least that one round trip before it may answer ``202``, so
this route's requests/s is the most a submit to that Redis could reach.

Configured by ``BENCH_STORE`` (a store URL, default ``memory://``) and ``BENCH_KEY_PREFIX``.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request

from benchmarks._common import ONE_CALL_SCRIPT
from example_app import ProcessDataRequest, ProcessDataResult, validate_process_data
from flask_asyncendpoints import AsyncEndpoints, JobContext
from flask_asyncendpoints.jobs import JobPayload
from flask_asyncendpoints.stores import MemoryStore

ae = AsyncEndpoints()

SUBMIT_PATH = "/api/process-data"
BARE_PATH = "/bare/process-data"
ROUND_TRIP_PATH = "/bare-redis/process-data"
#: What the load generator sends to both routes.
REQUEST_BODY = {"data": "hello world", "processingPriority": 3}


@ae.handler("ProcessData", request_schema=ProcessDataRequest, response_schema=ProcessDataResult)
def process_data(ctx: JobContext) -> dict[str, Any]:
    data: str = ctx.request["data"]
    return {"processedData": f"Processed: {data.upper()}", "characterCount": len(data)}


ae.route(SUBMIT_PATH, "ProcessData", validator=validate_process_data)


def job_sized_body() -> str:
    """The JSON a submit answers with, for a job like the ones the benchmark submits (same length)."""
    job, _ = MemoryStore().create(
        str(uuid.uuid4()), "ProcessData", JobPayload(body=REQUEST_BODY), max_retries=3, max_pending=None
    )
    return json.dumps(job.to_dict(), ensure_ascii=False, separators=(",", ":"))


def create_app() -> Flask:
    app = Flask(__name__)
    store: Any = os.environ.get("BENCH_STORE", "memory://")
    if store == "memory://":
        # No worker drains it: without its default bounds it would answer 503 after 10,000 submits.
        store = MemoryStore(max_pending=None, max_finished=None)
    app.config.update(
        ASYNCENDPOINTS_WORKER=False,
        ASYNCENDPOINTS_STORE=store,
        ASYNCENDPOINTS_KEY_PREFIX=os.environ.get("BENCH_KEY_PREFIX", "ae"),
    )
    ae.init_app(app)
    body = job_sized_body()
    location = f"/jobs/{uuid.uuid4()}"

    def answer() -> Response:
        return Response(
            body, status=202, mimetype="application/json", headers={"Location": location, "Retry-After": "1"}
        )

    @app.post(BARE_PATH)
    def bare() -> Response:
        request.get_json()
        return answer()

    if isinstance(store, str):
        round_trip = one_round_trip(store, os.environ.get("BENCH_KEY_PREFIX", "ae"))

        @app.post(ROUND_TRIP_PATH)
        def bare_redis() -> Response:
            request.get_json()
            round_trip()
            return answer()

    return app


def one_round_trip(url: str, prefix: str) -> Callable[[], None]:
    """A call that makes one round trip to the Redis at ``url``: an ``EVALSHA`` of
    :data:`~benchmarks._common.ONE_CALL_SCRIPT` on a key under ``prefix``, each thread on a connection of its own."""
    import redis

    client = redis.Redis.from_url(url)
    sha = client.script_load(ONE_CALL_SCRIPT)
    key = f"{{{prefix}}}:round-trip"  # under the prefix, so the benchmark's clean-up deletes it
    local = threading.local()

    def call() -> None:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = client.connection_pool.get_connection()
        connection.send_command("EVALSHA", sha, 1, key)
        connection.read_response()

    return call
