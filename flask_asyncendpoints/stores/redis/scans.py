"""Operator tasks that walk every job key with ``SCAN``: slow on purpose, never on a request's or a worker's path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...jobs import JobStatus
from .codec import as_text
from .scripts import ScriptRunner

if TYPE_CHECKING:
    import redis

_FINAL = frozenset(status.value for status in JobStatus if status.is_final)


def purge_finished_jobs(
    client: redis.Redis,
    scripts: ScriptRunner,
    *,
    job_prefix: str,
    expiring: str,
    counts: str,
    older_than: float,
    now: float | None,
) -> int:
    """Delete every finished job under ``job_prefix`` that finished ``older_than`` seconds before ``now``.

    Scans the job keys in batches (``SCAN``) and deletes each old finished job with one script, which
    checks the job again, so a job requeued meanwhile is kept.

    :param client: the store's client.
    :param scripts: the store's scripts, for ``delete_finished`` and the words of any failure.
    :param job_prefix: ``{p}:job:``, the first part of every job key.
    :param expiring: the ``{p}:jobs:expiring`` key.
    :param counts: the ``{p}:jobs:counts`` key.
    :param older_than: seconds.
    :param now: the time to judge by; the Redis server's clock when ``None``.
    :returns: how many jobs were deleted.
    :raises StoreError: when Redis cannot be reached or refuses a command.
    """
    with scripts.errors("purging finished jobs"):
        if now is None:
            seconds, micros = client.time()
            now = seconds + micros / 1_000_000
        cutoff = now - older_than
        deleted = 0
        keys: list[Any] = []
        for key in client.scan_iter(match=f"{_glob_escape(job_prefix)}*", count=1000):
            keys.append(key)
            if len(keys) >= 1000:
                deleted += _delete_finished(client, scripts, keys, cutoff, job_prefix, expiring, counts)
                keys = []
        if keys:
            deleted += _delete_finished(client, scripts, keys, cutoff, job_prefix, expiring, counts)
        return deleted


def _delete_finished(
    client: redis.Redis,
    scripts: ScriptRunner,
    keys: list[Any],
    cutoff: float,
    job_prefix: str,
    expiring: str,
    counts: str,
) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, "s", "da")
    deleted = 0
    for key, (status, done) in zip(keys, pipe.execute(), strict=True):
        if status is None or done is None or as_text(status) not in _FINAL or float(as_text(done)) > cutoff:
            continue
        key_text = as_text(key)
        job_id = key_text[len(job_prefix) :]
        deleted += int(scripts.run("delete_finished", [key_text, expiring, counts], [job_id, cutoff]))
    return deleted


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a ``SCAN MATCH`` pattern (a ``{ae}`` prefix has no special
    meaning there, but ``*``, ``?``, ``[`` and ``\\`` would)."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
