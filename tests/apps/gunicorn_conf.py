"""Gunicorn settings for the real-process tests: the library's exit hook, as the docs tell users to add it."""

from flask_asyncendpoints.gunicorn import post_worker_init, worker_exit  # noqa: F401

loglevel = "info"
