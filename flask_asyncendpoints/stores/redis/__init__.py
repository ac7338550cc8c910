"""The Redis store, :class:`RedisStore`, and the helpers that read its URLs.

The modules, each importing only those listed after it:

- ``store``: :class:`RedisStore`, the key layout, and one method per store operation.
- ``scans``: operator tasks that walk every job key (``purge_finished``).
- ``pubsub``: the thread that wakes long-polls when their job finishes.
- ``urls``: Redis URLs to clients (``connect``), :func:`redact_url`, :func:`parse_sentinel_url`.
- ``scripts``: the Lua scripts of ``lua/`` run by ``EVALSHA``, and redis-py's errors as ``StoreError``.
- ``connection``: :func:`import_redis` and the connection each thread keeps out of the pool.
- ``codec``: job hashes and script replies to :class:`~flask_asyncendpoints.jobs.Job`, and back.
"""

from __future__ import annotations

from .connection import import_redis
from .scripts import SCRIPT_NAMES
from .store import CREATE_MANY_CHUNK, RedisStore
from .urls import CLIENT_DEFAULTS, DEFAULT_SENTINEL_PORT, SentinelSettings, parse_sentinel_url, redact_url

__all__ = [
    "CLIENT_DEFAULTS",
    "CREATE_MANY_CHUNK",
    "DEFAULT_SENTINEL_PORT",
    "SCRIPT_NAMES",
    "RedisStore",
    "SentinelSettings",
    "import_redis",
    "parse_sentinel_url",
    "redact_url",
]
