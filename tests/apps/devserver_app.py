"""The app ``tests/test_devserver.py`` serves with a real ``flask run``: one handler that holds its job.

Configured from the environment (``FLASK_ASYNCENDPOINTS_…``). The ``Hold`` handler prints a line when
it starts (so the test reads the process's output rather than polling it) and runs until its job is
canceled or given back, at most two minutes.
"""

from __future__ import annotations

import sys
from typing import Any

from flask import Flask

from flask_asyncendpoints import AsyncEndpoints, JobContext

ae = AsyncEndpoints()


@ae.handler("Hold")
def hold(ctx: JobContext) -> dict[str, Any]:
    print(f"devserver-app: job {ctx.job_id} started", file=sys.stderr, flush=True)
    ctx.cancelled.wait(120)
    return {"held": True}


ae.route("/hold", "Hold")


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()
    ae.init_app(app)
    return app


app = create_app()
