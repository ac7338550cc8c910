"""The gunicorn hooks, called as gunicorn calls them (the real-process tests run them in gunicorn)."""

from __future__ import annotations

from types import SimpleNamespace

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_asyncendpoints import AsyncEndpoints
from flask_asyncendpoints.gunicorn import post_worker_init, worker_exit


def make_app(**config: object) -> tuple[AsyncEndpoints, Flask]:
    ae = AsyncEndpoints()
    app = Flask("hooked")
    app.config.update(ASYNCENDPOINTS_MAX_CONCURRENCY=1, **config)
    ae.init_app(app)
    return ae, app


def test_post_worker_init_starts_the_job_worker_through_middleware() -> None:
    ae, app = make_app()
    try:
        post_worker_init(SimpleNamespace(wsgi=ProxyFix(app)))
        assert ae.get_worker(app).running
        worker_exit(None, SimpleNamespace(cfg=SimpleNamespace(graceful_timeout=5)))
        assert not ae.get_worker(app).running
    finally:
        ae.shutdown(app, timeout=1)


def test_post_worker_init_respects_worker_off_and_other_apps() -> None:
    ae, app = make_app(ASYNCENDPOINTS_WORKER=False)
    post_worker_init(SimpleNamespace(wsgi=app))
    assert not ae.get_worker(app).started
    post_worker_init(SimpleNamespace(wsgi=Flask("plain")))
    post_worker_init(SimpleNamespace(wsgi=None))
