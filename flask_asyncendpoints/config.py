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
    "REDACT_HEADERS": DEFAULT_REDACT_HEADERS,
    "EXPOSE_TRACEBACKS": None,  # None: app.debug
    "EXPOSE_EXCEPTION_MESSAGES": True,
    "JOB_DETAILS_URL": "/jobs/<uuid:job_id>",
    "LONG_POLL_MAX": 30.0,
    "OPENAPI_URL": None,
    "DASHBOARD_URL": None,
    "METRICS_URL": None,
}


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
    redact_headers: frozenset[str]
    expose_tracebacks: bool
    expose_exception_messages: bool
    job_details_url: str
    long_poll_max: float
    openapi_url: str | None
    dashboard_url: str | None
    metrics_url: str | None

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
            redact_headers=frozenset(h.lower() for h in redact),
            expose_tracebacks=debug if expose is None else reader.flag("EXPOSE_TRACEBACKS"),
            expose_exception_messages=reader.flag("EXPOSE_EXCEPTION_MESSAGES"),
            job_details_url=reader.text("JOB_DETAILS_URL"),
            long_poll_max=reader.number("LONG_POLL_MAX", minimum=0),
            openapi_url=reader.optional_text("OPENAPI_URL"),
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


def set_defaults(config: dict[str, Any]) -> None:
    """``setdefault`` every key on a Flask config."""
    for key, value in DEFAULTS.items():
        config.setdefault(PREFIX + key, value)
