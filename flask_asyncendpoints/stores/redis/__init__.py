"""The Redis store, :class:`RedisStore`, and the helpers that read its URLs.

The modules, each importing only those listed after it:

- ``store``: :class:`RedisStore`: making it, and creating and reading jobs; it mixes in the parts below.
- ``running``: claims, the ends of attempts, cancels, progress and log lines.
- ``waiting``: idle workers' waits and wake-ups, long-polls, cancel announcements (pub/sub).
- ``upkeep``: recovering expired leases, purges, requeue and delete, a job's history and log, recurring occurrences.
- ``monitoring``: the counts, the monitoring reads and the registry of worker processes.
- ``core``: what the parts share: the client, scripts and keys, and the helpers every call starts with.
- ``pubsub``: the subscriber thread: finished jobs for long-polls, cancel requests, cluster wake-ups.
- ``sentinel``: the Sentinels' failover events, so that the store never writes to a master being replaced.
- ``urls``: Redis URLs to clients (``connect``), :func:`redact_url`, :func:`parse_sentinel_url`,
  :func:`parse_cluster_url`.
- ``scripts``: the Lua scripts of ``lua/`` run by ``EVALSHA`` (and ``WAIT``), and redis-py's errors as ``StoreError``.
- ``connection``: :func:`import_redis`, the connection each thread keeps out of the pool, cluster calls.
- ``clock``: the Redis server's clock, read once a minute.
- ``codec``: job records, state hashes and script replies to :class:`~flask_asyncendpoints.jobs.Job`, and back.
- ``keys``: the key layout: every key of a queue under the queue's hash tag.
"""

from __future__ import annotations

from .connection import import_redis
from .scripts import SCRIPT_NAMES
from .store import CREATE_MANY_CHUNK, RedisStore
from .urls import (
    CLIENT_DEFAULTS,
    DEFAULT_SENTINEL_PORT,
    ClusterSettings,
    SentinelSettings,
    parse_cluster_url,
    parse_sentinel_url,
    redact_url,
)

__all__ = [
    "CLIENT_DEFAULTS",
    "CREATE_MANY_CHUNK",
    "DEFAULT_SENTINEL_PORT",
    "SCRIPT_NAMES",
    "ClusterSettings",
    "RedisStore",
    "SentinelSettings",
    "import_redis",
    "parse_cluster_url",
    "parse_sentinel_url",
    "redact_url",
]
