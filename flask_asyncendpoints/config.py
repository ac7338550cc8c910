"""Every ``ASYNCENDPOINTS_*`` configuration key, named once, with its default.

Values may come from ``app.config.from_prefixed_env()`` (``FLASK_ASYNCENDPOINTS_…``), which parses
JSON: ``FLASK_ASYNCENDPOINTS_WORKER=false`` and ``FLASK_ASYNCENDPOINTS_MAX_CONCURRENCY=4`` arrive as
a bool and an int; numbers given as strings are accepted too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

PREFIX = "ASYNCENDPOINTS_"

#: Request headers never stored with a job (matched case-insensitively).
DEFAULT_REDACT_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization", "X-Api-Key")

#: Each key without its ``ASYNCENDPOINTS_`` prefix, and its default.
DEFAULTS: dict[str, Any] = {
    "STORE": "memory://",
    "KEY_PREFIX": "ae",
    "WORKER": True,
    "MAX_CONCURRENCY": os.cpu_count() or 1,
    "POLL_INTERVAL": 1.0,
    "BATCH_SIZE": 5,
    "MAX_QUEUE_SIZE": 50,
    "MAX_PENDING_JOBS": None,
    "DEFAULT_MAX_RETRIES": 3,
    "RETRY_DELAY_BASE": 2.0,
    "RETRY_MAX_DELAY": 3600.0,
    "RETRY_JITTER": False,
    "JOB_TIMEOUT": 1800.0,
    "CLAIM_TIMEOUT": 300.0,
    "RECOVERY_ENABLED": True,
    "RECOVERY_INTERVAL": 60.0,
    "RESULT_TTL": 86400.0,
    "SHUTDOWN_TIMEOUT": 30.0,
    "MAX_PAYLOAD_BYTES": 1024 * 1024,
    "MAX_CONTEXT_BYTES": 32 * 1024,
    "REDACT_HEADERS": DEFAULT_REDACT_HEADERS,
    "EXPOSE_TRACEBACKS": None,  # None: app.debug
    "EXPOSE_EXCEPTION_MESSAGES": True,
    "JOB_DETAILS_URL": "/jobs/<uuid:job_id>",
    "LONG_POLL_MAX": 30.0,
    "OPENAPI_URL": None,
    "QUEUES": None,  # None: every queue the app's handlers and schedules name, served with equal weights
    "HISTORY_LIMIT": 10,
    "WORKER_HEARTBEAT": 10.0,
    "EXECUTION_LOGS": False,
    "EXECUTION_LOG_LOGGERS": None,  # None: the module logger of each handler
    "EXECUTION_LOG_MAX_LINES": 200,
    "EXECUTION_LOG_MAX_BYTES": 64 * 1024,
    "SCHEDULES": None,
    "SCHEDULE_MISSED_WINDOW": 3600.0,
    "OPENAPI_TITLE": None,  # None: app.name
    "OPENAPI_VERSION": "1.0.0",
    "IMMEDIATE": False,
    "DASHBOARD_URL": None,
    "METRICS_URL": None,
}


@dataclass(frozen=True)
class QueuePlan:
    """The queues a worker serves, and how it orders them on each claim turn.

    Without ``weights`` the order is strict: every claim takes all it can from the first queue, then
    the next. With ``weights``, each claim turn puts the queues in a weighted random order (a queue
    of weight 5 comes first five times as often as one of weight 1), so no queue is ever starved.
    """

    names: tuple[str, ...]
    weights: tuple[float, ...] | None = None

    def __str__(self) -> str:
        if self.weights is None:
            return ",".join(self.names)
        return ",".join(f"{name}:{weight:g}" for name, weight in zip(self.names, self.weights, strict=True))


def parse_queues(value: Any, *, key: str = PREFIX + "QUEUES") -> QueuePlan | None:
    """Read a queue list: ``None``; ``"high,default"`` or ``["high", "default"]`` (strict order); or
    ``"high:5,default:1"`` / ``{"high": 5, "default": 1}`` / ``[["high", 5], ...]`` (weighted).

    :param value: the configured value.
    :param key: named in the error (the config key, or a command-line option).
    :raises ConfigurationError: for anything else, an empty list, a repeated queue or a weight ≤ 0.
    """
    if value is None:
        return None
    example = "e.g. 'high,default' (strict order) or 'high:5,default:1' (weighted)"
    items: list[Any]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, Mapping):
        items = [(k, v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigurationError(f"{key} must be a list of queue names, {example}, not {value!r}.")
    names: list[str] = []
    weights: list[float] = []
    weighted = False
    for item in items:
        if isinstance(item, str) and ":" in item:
            item = tuple(part.strip() for part in item.rsplit(":", 1))
        if isinstance(item, (list, tuple)) and len(item) == 2:
            name, raw = item
            weighted = True
            try:
                weight = float(raw)
            except (TypeError, ValueError):
                weight = math.nan
            if isinstance(raw, bool) or not math.isfinite(weight) or weight <= 0:
                raise ConfigurationError(f"{key}: the weight of queue {name!r} must be a number > 0, not {raw!r}.")
        else:
            name, weight = item, 1.0
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{key} must name queues by non-empty strings, {example}, not {value!r}.")
        if name in names:
            raise ConfigurationError(f"{key} names the queue {name!r} twice; name each queue once.")
        names.append(name)
        weights.append(weight)
    if not names:
        raise ConfigurationError(f"{key} names no queue; {example}, or None for every queue the handlers name.")
    return QueuePlan(tuple(names), tuple(weights) if weighted else None)


@dataclass(frozen=True)
class Settings:
    """The extension's configuration for one app, read and checked once in ``init_app``."""

    store: Any
    key_prefix: str
    worker: bool
    max_concurrency: int
    poll_interval: float
    batch_size: int
    max_queue_size: int
    max_pending_jobs: int | None
    default_max_retries: int
    retry_delay_base: float
    retry_max_delay: float
    retry_jitter: bool
    job_timeout: float | None
    claim_timeout: float
    recovery_enabled: bool
    recovery_interval: float
    result_ttl: float | None
    shutdown_timeout: float
    max_payload_bytes: int
    max_context_bytes: int
    redact_headers: frozenset[str]
    expose_tracebacks: bool
    expose_exception_messages: bool
    job_details_url: str
    long_poll_max: float
    openapi_url: str | None
    openapi_title: str | None
    openapi_version: str
    immediate: bool = False
    queues: QueuePlan | None = None
    history_limit: int = 10
    worker_heartbeat: float = 10.0
    execution_logs: bool = False
    execution_log_loggers: tuple[str, ...] | None = None
    execution_log_max_lines: int = 200
    execution_log_max_bytes: int = 64 * 1024
    schedules: tuple[Mapping[str, Any], ...] = ()
    schedule_missed_window: float = 3600.0
    dashboard_url: str | None = None
    metrics_url: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, debug: bool = False) -> Settings:
        """Read every key from a Flask config, defaults already set.

        :param config: ``app.config``.
        :param debug: ``app.debug``, the default of ``ASYNCENDPOINTS_EXPOSE_TRACEBACKS``.
        :raises ConfigurationError: naming the key whose value is wrong.
        """
        reader = _Reader(config)
        expose = config.get(PREFIX + "EXPOSE_TRACEBACKS")
        redact = config.get(PREFIX + "REDACT_HEADERS")
        if isinstance(redact, str):
            redact = [part for part in (p.strip() for p in redact.split(",")) if part]
        if not isinstance(redact, (list, tuple, set, frozenset)) or not all(isinstance(h, str) for h in redact):
            raise ConfigurationError(
                f"{PREFIX}REDACT_HEADERS must be a list of header names (or a comma-separated string), not {redact!r}."
            )
        return cls(
            store=config.get(PREFIX + "STORE"),
            key_prefix=reader.text("KEY_PREFIX"),
            worker=reader.flag("WORKER"),
            max_concurrency=reader.integer("MAX_CONCURRENCY", minimum=1),
            poll_interval=reader.number("POLL_INTERVAL", minimum=0.001),
            batch_size=reader.integer("BATCH_SIZE", minimum=1),
            max_queue_size=reader.integer("MAX_QUEUE_SIZE", minimum=0),
            max_pending_jobs=reader.optional_integer("MAX_PENDING_JOBS", minimum=1),
            default_max_retries=reader.integer("DEFAULT_MAX_RETRIES", minimum=0),
            retry_delay_base=reader.number("RETRY_DELAY_BASE", minimum=0),
            retry_max_delay=reader.number("RETRY_MAX_DELAY", minimum=0),
            retry_jitter=reader.flag("RETRY_JITTER"),
            job_timeout=reader.optional_number("JOB_TIMEOUT", minimum=0.001),
            claim_timeout=reader.number("CLAIM_TIMEOUT", minimum=0.1),
            recovery_enabled=reader.flag("RECOVERY_ENABLED"),
            recovery_interval=reader.number("RECOVERY_INTERVAL", minimum=0.01),
            result_ttl=reader.optional_number("RESULT_TTL", minimum=0),
            shutdown_timeout=reader.number("SHUTDOWN_TIMEOUT", minimum=0),
            max_payload_bytes=reader.integer("MAX_PAYLOAD_BYTES", minimum=1),
            max_context_bytes=reader.integer("MAX_CONTEXT_BYTES", minimum=0),
            redact_headers=frozenset(h.lower() for h in redact),
            expose_tracebacks=debug if expose is None else reader.flag("EXPOSE_TRACEBACKS"),
            expose_exception_messages=reader.flag("EXPOSE_EXCEPTION_MESSAGES"),
            job_details_url=reader.text("JOB_DETAILS_URL"),
            long_poll_max=reader.number("LONG_POLL_MAX", minimum=0),
            openapi_url=reader.optional_text("OPENAPI_URL"),
            queues=parse_queues(config.get(PREFIX + "QUEUES")),
            history_limit=reader.integer("HISTORY_LIMIT", minimum=1),
            worker_heartbeat=reader.number("WORKER_HEARTBEAT", minimum=0.1),
            execution_logs=reader.flag("EXECUTION_LOGS"),
            execution_log_loggers=reader.optional_names("EXECUTION_LOG_LOGGERS"),
            execution_log_max_lines=reader.integer("EXECUTION_LOG_MAX_LINES", minimum=1),
            execution_log_max_bytes=reader.integer("EXECUTION_LOG_MAX_BYTES", minimum=1),
            schedules=reader.dicts("SCHEDULES"),
            schedule_missed_window=reader.number("SCHEDULE_MISSED_WINDOW", minimum=0),
            openapi_title=reader.text("OPENAPI_TITLE") if config.get(PREFIX + "OPENAPI_TITLE") is not None else None,
            openapi_version=reader.text("OPENAPI_VERSION"),
            immediate=reader.flag("IMMEDIATE"),
            dashboard_url=reader.optional_url_prefix("DASHBOARD_URL"),
            metrics_url=reader.optional_text("METRICS_URL"),
        )


class _Reader:
    """Reads one typed key at a time and says which key is wrong when it is."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    def _fail(self, key: str, value: Any, expected: str) -> ConfigurationError:
        return ConfigurationError(f"{PREFIX}{key} must be {expected}, not {value!r}.")

    def text(self, key: str) -> str:
        value = self.config.get(PREFIX + key)
        if not isinstance(value, str) or not value:
            raise self._fail(key, value, "a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self.config.get(PREFIX + key) is None else self.text(key)

    def optional_url_prefix(self, key: str) -> str | None:
        """A URL prefix such as ``/asyncendpoints``: a leading slash, no trailing one, no variables."""
        value = self.optional_text(key)
        if value is None:
            return None
        prefix = value.rstrip("/")
        if not prefix.startswith("/") or "<" in prefix or "?" in prefix or "#" in prefix:
            raise self._fail(key, value, "a URL path such as '/asyncendpoints' (or None to turn it off)")
        return prefix

    def flag(self, key: str) -> bool:
        value = self.config.get(PREFIX + key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self._fail(key, value, "true or false")

    def number(self, key: str, *, minimum: float) -> float:
        value: Any = self.config.get(PREFIX + key)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self._fail(key, value, "a number of seconds") from None
        if isinstance(value, bool) or not math.isfinite(number) or number < minimum:
            raise self._fail(key, value, f"a finite number ≥ {minimum}")
        return number

    def optional_number(self, key: str, *, minimum: float) -> float | None:
        return None if self.config.get(PREFIX + key) is None else self.number(key, minimum=minimum)

    def integer(self, key: str, *, minimum: int) -> int:
        value: Any = self.config.get(PREFIX + key)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise self._fail(key, value, "a whole number") from None
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()) or number < minimum:
            raise self._fail(key, value, f"a whole number ≥ {minimum}")
        return number

    def optional_integer(self, key: str, *, minimum: int) -> int | None:
        return None if self.config.get(PREFIX + key) is None else self.integer(key, minimum=minimum)

    def optional_names(self, key: str) -> tuple[str, ...] | None:
        value = self.config.get(PREFIX + key)
        if value is None:
            return None
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, value, "a list of logger names (or a comma-separated string), or None")
        return tuple(value)

    def dicts(self, key: str) -> tuple[Mapping[str, Any], ...]:
        value = self.config.get(PREFIX + key)
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, Mapping) for v in value):
            raise self._fail(key, value, "a list of dicts (one per schedule), or None")
        return tuple(value)


def set_defaults(config: dict[str, Any]) -> None:
    """``setdefault`` every key on a Flask config."""
    for key, value in DEFAULTS.items():
        config.setdefault(PREFIX + key, value)
