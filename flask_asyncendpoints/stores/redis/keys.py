"""The key layout of the Redis store: every key of one queue under one hash tag, and the few shared keys.

With ``{p}`` the key prefix and ``q`` a queue name, each queue's keys start with the hash tag
``{p:q}`` (``{ae:default}``), so a queue lives in one Redis Cluster slot and different queues spread
over the slots; each script works on the keys of one queue only. The keys shared by every queue
start with ``{p}`` (``{ae}``). Tests and benchmarks find every key of a prefix with
:func:`scan_patterns`.

A queued job's place in its queue is one sorted-set member, ``<sort key>:<job id>``, where the sort
key is fixed-width text that sorts as the claim order: the priority (10 digits, higher first), the
time the job became due (16 digits of microseconds), a sequence number (6 digits, for jobs due in
the same microsecond) and a flag, ``n`` for a job that has never changed since it was created (it
has no state hash yet) and ``r`` for one that has.
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass

from ...jobs import DEFAULT_QUEUE

#: The range of priorities the store can keep (a signed 32-bit integer).
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1

#: Suffixes of the per-queue keys (after the queue's hash tag), as the scripts in ``lua/`` build them.
READY = ":ready"
SCHEDULED = ":sched"
DUE = ":due"
RUNNING = ":run"
EXPIRING = ":exp"
NAMES = ":names"
WAKE = ":wake"
#: A counter that submits made with ``wait_replicas`` increment before their ``WAIT``.
WAIT_COUNTER = ":wait"
#: A zset of the jobs long-polls wait for, and the prefix of each one's token list (``T:f:<id>``).
WAITS = ":waits"
FINISH_TOKENS = ":f:"
CANCELS_CHANNEL = ":cancels"
DONE = {"Completed": ":done:Completed", "Failed": ":done:Failed", "Canceled": ":done:Canceled"}

#: The first character of a job record that points to the queue holding the job (see :meth:`QueueKeys.record`).
POINTER = "@"

_sequence = itertools.count()
_sequence_lock = threading.Lock()


def next_sequence(count: int = 1) -> int:
    """The first of ``count`` consecutive sequence numbers, process-wide and increasing.

    Jobs due in the same microsecond are claimed in sequence order; within one process (the one
    place where submits can be told apart in time) that is the order they were made in.
    """
    with _sequence_lock:
        first = next(_sequence)
        for _ in range(count - 1):
            next(_sequence)
    return first


def sequence_arg() -> str:
    """A new sequence number as a sort key's six digits, for the scripts that put a job back in a queue."""
    return f"{next_sequence() % 1_000_000:06d}"


def check_priority(priority: int) -> int:
    """``priority`` as an ``int``.

    :raises ValueError: when it is outside :data:`MIN_PRIORITY` .. :data:`MAX_PRIORITY`.
    """
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"a job's priority must be a whole number, not {priority!r}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"a job's priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}, not {priority}")
    return priority


def sort_key(priority: int, due: float, sequence: int, flag: str) -> str:
    """The claim-order part of a queue member (see the module docstring).

    ``lua/common.lua`` builds the same text for jobs it puts back in a queue.
    """
    return f"{MAX_PRIORITY - priority:010d}{round(due * 1_000_000):016d}{sequence % 1_000_000:06d}{flag}"


def priority_of(key: str) -> int:
    """The priority a sort key (or a whole member) starts with."""
    return MAX_PRIORITY - int(key[:10])


def member_id(member: str) -> str:
    """The job id of a queue member."""
    return member.partition(":")[2]


def claim_nonce() -> str:
    """A new claim's nonce: the attempt ids of the jobs it claims are ``<nonce>.<n>``.

    128 random bits as 32 hex digits. Besides making attempts unique, the length keeps each queue's
    running set (members ``<attempt>:<job id>``, 71 bytes and more) over Redis's
    ``zset-max-listpack-value`` (64 bytes by default), so Redis holds it as a skiplist: as a
    listpack, every lease added would parse the score of every lease held from its 17-digit text,
    which cost Redis 7 % of its instructions per job drained.
    """
    return os.urandom(16).hex()


def lease_token(attempt: str, queue: str) -> str:
    """The token handed to the worker for one attempt: the attempt's id and its queue, so that every
    call made with the token goes straight to the queue's keys."""
    return f"{attempt}@{queue}"


def parse_token(token: str) -> tuple[str, str] | None:
    """``(attempt, queue)`` of a token made by :func:`lease_token`, or ``None`` for any other text."""
    attempt, at, queue = token.partition("@")
    if not at or not attempt:
        return None
    return attempt, queue


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue.

    :ivar queue: the queue's name.
    :ivar base: its hash tag, ``{<prefix>:<queue>}``; every key of the queue starts with it, and the
        scripts get it as ``KEYS[1]`` and build the rest.
    """

    queue: str
    base: str

    def record(self, job_id: str) -> str:
        """A string: the job as it was created (see ``lua/common.lua``). In the default queue it is
        ``@<queue>`` for a job that lives in another queue: the pointer ``get`` follows."""
        return f"{self.base}:j:{job_id}"

    def state(self, job_id: str) -> str:
        """A hash: what has changed since the job was created; absent until the first change."""
        return f"{self.base}:s:{job_id}"

    def log(self, job_id: str) -> str:
        """A list: the job's execution log."""
        return f"{self.base}:l:{job_id}"

    def key(self, suffix: str) -> str:
        """The queue's key with ``suffix`` (one of this module's suffixes)."""
        return self.base + suffix

    def throughput(self, hour: int) -> str:
        """A hash: jobs that ended in each minute of the ``hour`` (epoch hours)."""
        return f"{self.base}:tp:{hour}"


@dataclass(frozen=True)
class Layout:
    """Every key of one store, by key prefix.

    :ivar prefix: the key prefix.
    """

    prefix: str

    def queue(self, name: str) -> QueueKeys:
        """The keys of the queue ``name``."""
        return QueueKeys(name, f"{{{self.prefix}:{name}}}")

    @property
    def default(self) -> QueueKeys:
        """The default queue, whose job records also hold the pointers to jobs of other queues."""
        return self.queue(DEFAULT_QUEUE)

    @property
    def shared(self) -> str:
        """The hash tag of the keys shared by every queue, ``{<prefix>}``."""
        return f"{{{self.prefix}}}"

    @property
    def queues(self) -> str:
        """A set: the name of every queue that has had a job."""
        return f"{self.shared}:queues"

    @property
    def workers(self) -> str:
        """A sorted set: worker ids scored by when their registration runs out."""
        return f"{self.shared}:workers"

    def worker(self, worker_id: str) -> str:
        """A string: one worker's registration as JSON, with a time to live."""
        return f"{self.shared}:worker:{worker_id}"

    @property
    def occurrences(self) -> str:
        """A hash: the last claimed occurrence of each recurring schedule."""
        return f"{self.shared}:occurrences"


def scan_patterns(prefix: str) -> list[str]:
    """``SCAN MATCH`` patterns that match every key of the store with this prefix, and no other's."""
    escaped = "".join("\\" + char if char in "*?[]\\" else char for char in prefix)
    return [f"{{{escaped}:*", f"{{{escaped}}}*"]
