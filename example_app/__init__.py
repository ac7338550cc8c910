"""The example app: the seed's ProcessData endpoint and a body-less report endpoint.

Run it with ``flask --app example_app run``; every ``ASYNCENDPOINTS_*`` key can be set from the
environment as ``FLASK_ASYNCENDPOINTS_…`` (e.g. ``FLASK_ASYNCENDPOINTS_STORE=redis://127.0.0.1:6379/0``).
``EXAMPLE_DELAY`` sets how long each job takes, in seconds (default 2). The dashboard is at
``/asyncendpoints/`` (from this machine only).
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from typing import Any

from flask import Flask
from marshmallow import Schema, fields

from flask_asyncendpoints import AsyncEndpoints, JobCanceled, JobContext, problem

ae = AsyncEndpoints()


#: A character that is not white space, in Python's sense and in JSON Schema's (ECMAScript's) at once,
#: so the OpenAPI document states exactly the rule the validator enforces.
NOT_BLANK = (
    "[^\\t\\n\\v\\f\\r \\u001c-\\u001f\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]"
)


class ProcessDataRequest(Schema):
    # The seed's DataRequest: ``processingPriority`` defaults to 1. The rules the validator enforces
    # (400, as in the seed) are stated in the metadata too, so the OpenAPI document says them.
    data = fields.String(required=True, metadata={"pattern": NOT_BLANK, "description": "Not blank."})
    processingPriority = fields.Integer(load_default=1, metadata={"minimum": 1, "maximum": 5})


class ProcessDataResult(Schema):
    processedData = fields.String()
    processedAt = fields.DateTime(format="iso")
    characterCount = fields.Integer()


def delay() -> float:
    """Seconds each example job takes (``EXAMPLE_DELAY``, default 2)."""
    try:
        return max(0.0, float(os.environ.get("EXAMPLE_DELAY", "2")))
    except ValueError:
        return 2.0


def work_for(seconds: float, ctx: JobContext, steps: int = 10) -> None:
    """Wait ``seconds`` in steps, reporting progress and stopping early if the job is canceled."""
    for step in range(steps):
        if ctx.cancelled.wait(seconds / steps):
            raise JobCanceled("canceled by the client")
        ctx.report_progress((step + 1) / steps, f"step {step + 1} of {steps}")


@ae.handler("ProcessData", request_schema=ProcessDataRequest, response_schema=ProcessDataResult)
def process_data(ctx: JobContext) -> dict[str, Any]:
    work_for(delay(), ctx)
    data: str = ctx.request["data"]
    return {
        "processedData": f"Processed: {data.upper()}",
        "processedAt": datetime.now(timezone.utc),
        "characterCount": len(data),
    }


def validate_process_data(body: dict[str, Any]) -> Any:
    """The seed's business rules: ``data`` must not be blank, ``processingPriority`` is 1 to 5."""
    if re.search(NOT_BLANK, body["data"]) is None:
        return problem(400, "'data' must not be blank.", title="Invalid request")
    if not 1 <= body["processingPriority"] <= 5:
        return problem(400, "'processingPriority' must be from 1 to 5.", title="Invalid request")
    return None


@ae.handler("GenerateReport")
def generate_report(ctx: JobContext) -> dict[str, Any]:
    work_for(delay(), ctx)
    return {"report": "daily", "generatedAt": datetime.now(timezone.utc).isoformat(), "rows": 42}


def process_data_priority(body: dict[str, Any]) -> int:
    """The job's priority: the request's ``processingPriority`` (1 to 5, checked by the validator);
    higher runs first among the waiting ``ProcessData`` jobs."""
    priority: int = body["processingPriority"]
    return priority


ae.route("/api/process-data", "ProcessData", validator=validate_process_data, priority=process_data_priority)
ae.route("/api/generate-report", "GenerateReport")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the example app; ``config`` overrides what the environment sets."""
    app = Flask(__name__)
    # The dashboard, for this machine only (FLASK_ASYNCENDPOINTS_DASHBOARD_URL=null turns it off).
    app.config["ASYNCENDPOINTS_DASHBOARD_URL"] = "/asyncendpoints"
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    ae.init_app(app)
    return app


app = create_app()
