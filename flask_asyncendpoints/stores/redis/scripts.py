"""The store's Lua scripts from ``lua/``, run by ``EVALSHA``, and redis-py's errors as ``StoreError``."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from ...errors import StoreError
from .connection import ClusterCalls, ThreadConnections, import_redis
from .keys import WAIT_COUNTER

if TYPE_CHECKING:
    import redis
    import redis.cluster
    from redis.commands.core import Script

#: The scripts in ``lua/``, one per atomic operation; what each uses of ``common.lua`` is prepended to it.
SCRIPT_NAMES = (
    "create",
    "claim",
    "renew",
    "complete",
    "fail",
    "finish_canceled",
    "release",
    "cancel",
    "set_progress",
    "append_logs",
    "recover",
    "purge",
    "requeue",
    "delete",
    "point",
    "unpoint",
    "wake",
    "page",
    "stats",
    "register_worker",
    "occurrence",
    "await",
)


def script_source(name: str, *, cluster: bool = False) -> str:
    """The text of the script ``name`` as it is sent: whether it runs on a cluster, the definitions
    of ``common.lua`` it uses, then ``{name}.lua``."""
    folder = resources.files(__package__ or "flask_asyncendpoints.stores.redis").joinpath("lua")
    common = folder.joinpath("common.lua").read_text(encoding="utf-8")
    script = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return f"local CLUSTER = {'true' if cluster else 'false'}\n{used_definitions(common, script)}\n{script}"


#: A top-level definition of ``common.lua``: ``local NAME = …``, ``local A, B = …`` or ``local function NAME(``.
_DEFINITION = re.compile(r"^local\s+(?:function\s+(\w+)|([\w\s,]+?)\s*=)", re.MULTILINE)


def used_definitions(common: str, script: str) -> str:
    """The paragraphs of ``common`` (blocks of lines between blank lines) that define a name ``script``
    uses, or one that another paragraph it gets uses, in their order in ``common``.

    A script runs all of its text on every call: each helper it carries but never calls is built
    again every time (a closure, a table), about 0.1 µs of the server's time apiece. A paragraph that
    defines nothing (the file's opening comments) is left out.
    """
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", common) if p.strip()]
    defined: list[set[str]] = []
    for paragraph in paragraphs:
        names: set[str] = set()
        for function, variables in _DEFINITION.findall(paragraph):
            names.update([function] if function else (v.strip() for v in variables.split(",")))
        defined.append(names)
    wanted = [False] * len(paragraphs)
    uses = _code(script)
    while True:
        more = [
            i
            for i, names in enumerate(defined)
            if not wanted[i] and any(re.search(rf"\b{re.escape(n)}\b", uses) for n in names)
        ]
        if not more:
            break
        for i in more:
            wanted[i] = True
            uses += "\n" + _code(paragraphs[i])
    return "\n\n".join(p for p, keep in zip(paragraphs, wanted, strict=True) if keep)


def _code(lua: str) -> str:
    """``lua`` without its comments (no script has ``--`` in a string), so a name a comment mentions
    does not count as used."""
    return re.sub(r"--[^\n]*", "", lua)


class ScriptRunner:
    """The scripts of :data:`SCRIPT_NAMES` registered on one client, and the words for its failures.

    :param client: the ``redis.Redis`` or ``redis.cluster.RedisCluster`` client the scripts are
        registered on.
    :param connections: the client's calls, which scripts are sent with.
    :param where: where the client connects, for messages (never with a password).
    :param key_prefix: the store's key prefix, for messages.
    :param cluster: whether the client is a cluster's (the scripts then publish on sharded channels).
    :param wait_replicas: how many replicas :meth:`run_durable` waits for.
    :param wait_timeout: how long :meth:`run_durable` waits for them, in seconds.
    :raises ConfigurationError: when the ``redis`` package is missing.
    """

    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
        connections: ThreadConnections | ClusterCalls,
        *,
        where: str,
        key_prefix: str,
        cluster: bool = False,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        self._exceptions = exceptions = import_redis().exceptions
        #: What :meth:`errors` turns into :class:`StoreError`.
        self._caught = (exceptions.RedisError, exceptions.RedisClusterException)
        self._client = client
        self._connections = connections
        self._call = connections.call
        self._call_many = connections.call_many
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self._where = where
        self._key_prefix = key_prefix
        # Registered on this client only, and loaded when the server first answers NOSCRIPT (and again
        # after SCRIPT FLUSH, a restart, a failover), so nothing has to be loaded up front.
        self.registered: dict[str, Script] = {
            name: client.register_script(script_source(name, cluster=cluster)) for name in SCRIPT_NAMES
        }

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn redis-py's exceptions into :class:`StoreError` with a message saying what to check."""
        try:
            yield
        except self._caught as exc:
            raise self.store_error(exc, doing) from exc

    def store_error(self, exc: Exception, doing: str) -> StoreError:
        """The :class:`StoreError` for one of redis-py's exceptions, with a message saying what to check.

        :param exc: a ``RedisError`` or ``RedisClusterException``.
        :param doing: what failed, for the message (``"running the create script"``).
        """
        exceptions = self._exceptions
        if isinstance(exc, exceptions.AuthenticationError):
            return StoreError(
                f"Redis at {self._where} refused the credentials while {doing} ({exc}). "
                "Check the user name and password in ASYNCENDPOINTS_STORE."
            )
        if isinstance(exc, exceptions.TimeoutError):
            return StoreError(
                f"Redis at {self._where} did not answer in time while {doing} ({exc}). Check the server's load "
                "and the network, or raise socket_timeout in ASYNCENDPOINTS_STORE."
            )
        if isinstance(exc, exceptions.ConnectionError):
            return StoreError(
                f"Could not reach Redis at {self._where} while {doing} ({exc}). Check that the server is running "
                "and reachable, and that ASYNCENDPOINTS_STORE names it."
            )
        if isinstance(exc, (exceptions.ClusterDownError, exceptions.TryAgainError, exceptions.AskError)):
            # CLUSTERDOWN, TRYAGAIN, MOVED or ASK: a slot without a master for now, or moving.
            return StoreError(
                f"{self._where} could not serve a slot while {doing} ({exc}): a node is failing over, or slots "
                "are moving. It answers again once a replica has taken over; try again shortly."
            )
        if isinstance(exc, exceptions.ReadOnlyError):
            return StoreError(
                f"Redis at {self._where} is a read-only replica now ({exc}) while {doing}: its master moved. "
                "Point ASYNCENDPOINTS_STORE at the new master, or use a redis+sentinel:// URL, which follows it."
            )
        if isinstance(exc, exceptions.ResponseError):
            return StoreError(
                f"Redis at {self._where} refused {doing} ({exc}). Check that it is a writable Redis 6.0 or later "
                f"that allows Lua scripts, and that nothing else writes keys under the prefix {self._key_prefix!r}."
            )
        if isinstance(exc, exceptions.RedisError):
            return StoreError(f"Redis at {self._where} failed while {doing} ({exc}).")
        # Not a RedisError: the cluster client's own errors, such as a slot no node is known to serve.
        return StoreError(
            f"{self._where} failed while {doing} ({exc}). Check that its nodes are up and every slot is served."
        )

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script and return its reply.

        :raises StoreError: when Redis cannot be reached or refuses the script.
        """
        script = self.registered[name]
        # Spelled out rather than `with self.errors(...)`: every submit and claim comes through here.
        try:
            try:
                return self._call("EVALSHA", script.sha, len(keys), *keys, *args)
            except self._exceptions.NoScriptError:
                # Not run: the server has lost its scripts (SCRIPT FLUSH, a restart, a failover).
                script.sha = self._client.script_load(script.script)
                return self._call("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._caught as exc:
            raise self.store_error(exc, f"running the {name} script") from exc

    def run_behind(
        self, command: Sequence[Any], name: str, keys: Sequence[str], args: Sequence[Any], *, doing: str
    ) -> tuple[Any, Any]:
        """Send ``command``, then one script, in one round trip (no ``MULTI``); both replies.

        Redis runs the script as soon as it has answered ``command``: behind a blocking command
        (``BLPOP``), the moment that returns or times out. A script the server answers ``NOSCRIPT``
        did not run: it is loaded and run again on its own. ``command``'s reply is an exception when
        the server refused it (the script ran all the same).

        :param doing: what ``command`` does, for the message of a failure to send or read.
        :raises StoreError: when Redis cannot be reached, or refuses the script.
        """
        script = self.registered[name]
        with self.errors(doing):
            first, reply = self._call_many(
                [tuple(command), ("EVALSHA", script.sha, len(keys), *keys, *args)], raise_on_error=False
            )
        if isinstance(reply, self._exceptions.NoScriptError):
            return first, self.run(name, keys, args)
        if isinstance(reply, self._exceptions.ResponseError):
            raise self.store_error(reply, f"running the {name} script") from reply
        return first, reply

    def run_many(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run one script once per ``(keys, args)``, all in one round trip (one per node on a cluster).

        ``EVALSHA`` is sent directly rather than through redis-py's ``Script``, whose pipelines ask
        ``SCRIPT EXISTS`` first: a second round trip on every batch. A call the server answers with
        ``NOSCRIPT`` (after ``SCRIPT FLUSH``, a restart or a failover) did not run: the script is
        loaded and those calls, and only those, are sent again.

        :raises StoreError: when Redis cannot be reached or refuses the script.
        """
        script = self.registered[name]
        missing = self._exceptions.NoScriptError
        with self.errors(f"running the {name} script"):
            replies = self._call_many(
                [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls], raise_on_error=False
            )
            again = [i for i, reply in enumerate(replies) if isinstance(reply, missing)]
            if again:
                script.sha = self._client.script_load(script.script)
                retried = self._call_many(
                    [("EVALSHA", script.sha, len(calls[i][0]), *calls[i][0], *calls[i][1]) for i in again],
                    raise_on_error=False,
                )
                for i, reply in zip(again, retried, strict=True):
                    replies[i] = reply
            for reply in replies:
                if isinstance(reply, self._exceptions.ResponseError):
                    raise reply
            return replies

    def wait_for_replicas(self, key: str, doing: str) -> None:
        """Return once :attr:`wait_replicas` replicas have everything written so far to the master of
        ``key`` (a queue's hash tag), by any connection: see :meth:`run_durable`.

        :raises StoreError: when fewer confirm it within :attr:`wait_timeout` seconds.
        """
        with self.errors(doing):
            answers = self._connections.call_together(key, self._durably(key))
            for answer in answers:
                if isinstance(answer, Exception):
                    raise answer
            self._check_replicas(int(answers[-1]), doing)

    def _durably(self, key: str) -> list[tuple[Any, ...]]:
        """The commands that make the writes of the connection before them as durable as asked."""
        return [("INCR", f"{key}{WAIT_COUNTER}"), ("WAIT", self.wait_replicas, max(1, round(self.wait_timeout * 1000)))]

    def _check_replicas(self, confirmed: int, doing: str) -> None:
        if confirmed < self.wait_replicas:
            raise StoreError(
                f"Redis at {self._where} took the writes of {doing}, but {confirmed} of the {self.wait_replicas} "
                f"replica(s) asked for (wait_replicas) confirmed them within {self.wait_timeout:g} s, so a "
                "failover now could lose them. They are on the master: a submit tried again with the same "
                "X-Async-Request-Id finds its job. Check the replicas (INFO replication), or lower wait_replicas "
                "in ASYNCENDPOINTS_STORE."
            )

    def run_durable(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run one script once per ``(keys, args)``, and answer once :attr:`wait_replicas` replicas
        have what they wrote.

        Each connection's calls are followed by ``WAIT`` on that connection, in the same round trip
        (one per master on a cluster): Redis answers a write before its replicas have it, and
        ``WAIT`` tells how many have every write of the connection so far. Before it goes an
        ``INCR`` of the queue's ``T:wait`` counter (``T`` being the hash tag each call's first key
        is): a create that finds its job already (a client trying again) writes nothing, and the
        write that created it may have gone out on another connection. A write of this connection
        after it, once on a replica, means the replica has it too, replication being one stream.

        :raises StoreError: when Redis cannot be reached or refuses the script, or when fewer
            replicas than :attr:`wait_replicas` confirm the writes within :attr:`wait_timeout`
            seconds (the writes are on the master all the same).
        """
        script = self.registered[name]
        missing = self._exceptions.NoScriptError
        replies: list[Any] = [None] * len(calls)
        doing = f"running the {name} script"
        with self.errors(doing):
            for key, positions in self._connections.groups([keys for keys, _ in calls]):
                commands = [("EVALSHA", script.sha, len(calls[i][0]), *calls[i][0], *calls[i][1]) for i in positions]
                after = self._durably(key)
                answers = self._connections.call_together(key, [*commands, *after])
                again = [j for j, answer in enumerate(answers[: len(commands)]) if isinstance(answer, missing)]
                if again:
                    script.sha = self._client.script_load(script.script)
                    retried = self._connections.call_together(
                        key,
                        [*(("EVALSHA", script.sha, *commands[j][2:]) for j in again), *after],
                    )
                    for j, answer in zip(again, retried, strict=False):
                        answers[j] = answer
                    answers[-2:] = retried[-2:]
                for reply in answers:
                    if isinstance(reply, Exception):
                        raise reply
                self._check_replicas(int(answers[-1]), doing)
                for j, i in enumerate(positions):
                    replies[i] = answers[j]
        return replies
