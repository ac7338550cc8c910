"""Job stores, chosen by the scheme of ``ASYNCENDPOINTS_STORE``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .base import DEFAULT_HISTORY_LIMIT, CancelResult, LeaseState, NewJob, PendingLimitReached, Store
from .memory import MemoryStore
from .monitoring import JobPage, QueueStats, RunningJob, Throughput, ThroughputPoint, WorkerInfo

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "CancelResult",
    "JobPage",
    "LeaseState",
    "MemoryStore",
    "NewJob",
    "PendingLimitReached",
    "QueueStats",
    "RunningJob",
    "Store",
    "Throughput",
    "ThroughputPoint",
    "WorkerInfo",
    "create_store",
]


def _memory(url: str, key_prefix: str, history_limit: int) -> Store:
    return MemoryStore(history_limit=history_limit)


def _redis(url: str, key_prefix: str, history_limit: int) -> Store:
    from .redis import RedisStore

    return RedisStore.from_url(url, key_prefix=key_prefix, history_limit=history_limit)


#: Store factories by URL scheme: each takes the URL, the key prefix and the history limit.
SCHEMES: dict[str, Callable[[str, str, int], Store]] = {
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "redis+sentinel": _redis,
}


def create_store(spec: Any, *, key_prefix: str, history_limit: int = DEFAULT_HISTORY_LIMIT) -> Store:
    """Build the store that ``ASYNCENDPOINTS_STORE`` names.

    :param spec: a URL (``memory://``, ``redis://…``, ``rediss://…``, ``unix://…``,
        ``redis+sentinel://…``), a dict of Redis client options with the URL under ``url``, a
        :class:`Store`, an existing ``redis.Redis`` client, or a callable returning any of these.
    :param key_prefix: the prefix of every Redis key.
    :param history_limit: how many attempts each job's history keeps
        (``ASYNCENDPOINTS_HISTORY_LIMIT``); a :class:`Store` given as it is keeps its own.
    :raises ConfigurationError: when ``spec`` names no store, or ``history_limit`` is negative.
    """
    if isinstance(history_limit, bool) or not isinstance(history_limit, int) or history_limit < 0:
        raise ConfigurationError(
            f"ASYNCENDPOINTS_HISTORY_LIMIT must be a whole number of attempts, 0 or more, not {history_limit!r}."
        )
    if isinstance(spec, Store):
        return spec
    if isinstance(spec, str):
        scheme = urlsplit(spec).scheme.lower()
        factory = SCHEMES.get(scheme)
        if factory is None:
            known = ", ".join(f"{name}://" for name in SCHEMES)
            raise ConfigurationError(
                f"ASYNCENDPOINTS_STORE={spec!r} names no known store. Use one of {known}, "
                "a Store instance or a redis.Redis client."
            )
        return factory(spec, key_prefix, history_limit)
    if isinstance(spec, Mapping):
        options = dict(spec)
        url = options.pop("url", None)
        if not isinstance(url, str):
            raise ConfigurationError(
                "An ASYNCENDPOINTS_STORE given as options needs a 'url', e.g. "
                "{'url': 'redis://127.0.0.1:6379/0', 'socket_timeout': 5}."
            )
        if urlsplit(url).scheme.lower() not in SCHEMES or url.lower().startswith("memory"):
            raise ConfigurationError(f"Options are for Redis stores; {url!r} is not a Redis URL.")
        from .redis import RedisStore

        return RedisStore.from_url(url, key_prefix=key_prefix, history_limit=history_limit, **options)
    if _is_redis_client(spec):
        from .redis import RedisStore

        return RedisStore(spec, key_prefix=key_prefix, history_limit=history_limit)
    if callable(spec):
        return create_store(spec(), key_prefix=key_prefix, history_limit=history_limit)
    raise ConfigurationError(
        f"ASYNCENDPOINTS_STORE must be a URL, a Store, a redis.Redis client or a callable, not {type(spec).__name__}."
    )


def _is_redis_client(value: Any) -> bool:
    try:
        import redis
    except ImportError:
        return False
    return isinstance(value, redis.Redis)
