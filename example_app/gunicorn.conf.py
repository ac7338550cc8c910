"""Gunicorn settings for the example app, safe to serve as they are.

    pip install gunicorn
    FLASK_ASYNCENDPOINTS_STORE=redis://127.0.0.1:6379/0 gunicorn -c example_app/gunicorn.conf.py example_app:app

Threaded workers (``gthread``) rather than gunicorn's default ``sync`` workers: a sync worker
serves one connection at a time, so a few clients that send their requests slowly (slowloris)
hold every worker and the app stops answering. A gthread worker parks idle and kept-alive
connections in its event loop, holding no thread for them, and serves each request in one of
``threads`` threads; a client that dribbles its headers holds one thread until it is done. So
``workers * threads`` is how many such clients the server survives at once: put a buffering
proxy such as nginx in front when the app faces the internet (see the deployment docs).
Every value can be overridden on the command line (``--workers``, ``--threads``, ``--bind``...).
"""

import os

from flask_asyncendpoints.gunicorn import post_worker_init, worker_exit  # noqa: F401

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Enough that slow clients and long polls (GET /jobs/<id>?wait=…, each a thread for up to
# ASYNCENDPOINTS_LONG_POLL_MAX) leave threads free for everyone else.
threads = int(os.environ.get("GUNICORN_THREADS", "64"))

# A gthread worker whose event loop stops for this long is restarted.
timeout = 30
# Longer than ASYNCENDPOINTS_SHUTDOWN_TIMEOUT (30 s): worker_exit lets running jobs finish and
# gives back the rest within graceful_timeout, two seconds short of it.
graceful_timeout = 40
# Idle kept-alive connections wait in the event loop, not in a thread, and are closed after this.
keepalive = 5

# What a request may send before the app sees it: its request line, and at most 50 header fields
# of 8 KiB. The extension stores at most ASYNCENDPOINTS_MAX_CONTEXT_BYTES (32 KiB) of them with a job.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
