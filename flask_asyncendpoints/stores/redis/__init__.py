"""The Redis store, :class:`RedisStore`, and the helpers that read its URLs; the key layout is in :mod:`.store`."""

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
