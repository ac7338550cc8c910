"""The store's Lua scripts from ``lua/``, run by ``EVALSHA``, and redis-py's errors as ``StoreError``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from ...errors import StoreError
from .connection import ClusterCalls, ThreadConnections, import_redis

if TYPE_CHECKING:
    import redis
    import redis.cluster
    from redis.commands.core import Script

#: The scripts in ``lua/``, one per atomic operation; ``common.lua`` is prepended to each.
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
)


def script_source(name: str, *, cluster: bool = False) -> str:
    """The text of the script ``name`` as it is sent: whether it runs on a cluster, ``common.lua``,
    then ``{name}.lua``."""
    folder = resources.files(__package__ or "flask_asyncendpoints.stores.redis").joinpath("lua")
    common = folder.joinpath("common.lua").read_text(encoding="utf-8")
    script = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return f"local CLUSTER = {'true' if cluster else 'false'}\n{common}\n{script}"


class ScriptRunner:
    """The scripts of :data:`SCRIPT_NAMES` registered on one client, and the words for its failures.

    :param client: the ``redis.Redis`` or ``redis.cluster.RedisCluster`` client the scripts are
        registered on.
    :param connections: the client's calls, which scripts are sent with.
    :param where: where the client connects, for messages (never with a password).
    :param key_prefix: the store's key prefix, for messages.
    :param cluster: whether the client is a cluster's (the scripts then publish on sharded channels).
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
    ) -> None:
        self._exceptions = import_redis().exceptions
        self._client = client
        self._call = connections.call
        self._call_many = connections.call_many
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
        exceptions = self._exceptions
        try:
            yield
        except exceptions.AuthenticationError as exc:
            raise StoreError(
                f"Redis at {self._where} refused the credentials while {doing} ({exc}). "
                "Check the user name and password in ASYNCENDPOINTS_STORE."
            ) from exc
        except exceptions.TimeoutError as exc:
            raise StoreError(
                f"Redis at {self._where} did not answer in time while {doing} ({exc}). Check the server's load "
                "and the network, or raise socket_timeout in ASYNCENDPOINTS_STORE."
            ) from exc
        except exceptions.ConnectionError as exc:
            raise StoreError(
                f"Could not reach Redis at {self._where} while {doing} ({exc}). Check that the server is running "
                "and reachable, and that ASYNCENDPOINTS_STORE names it."
            ) from exc
        except exceptions.ResponseError as exc:
            raise StoreError(
                f"Redis at {self._where} refused {doing} ({exc}). Check that it is a writable Redis 6.0 or later "
                f"that allows Lua scripts, and that nothing else writes keys under the prefix {self._key_prefix!r}."
            ) from exc
        except exceptions.RedisError as exc:
            raise StoreError(f"Redis at {self._where} failed while {doing} ({exc}).") from exc

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script and return its reply.

        :raises StoreError: when Redis cannot be reached or refuses the script.
        """
        script = self.registered[name]
        with self.errors(f"running the {name} script"):
            try:
                return self._call("EVALSHA", script.sha, len(keys), *keys, *args)
            except self._exceptions.NoScriptError:
                # Not run: the server has lost its scripts (SCRIPT FLUSH, a restart, a failover).
                script.sha = self._client.script_load(script.script)
                return self._call("EVALSHA", script.sha, len(keys), *keys, *args)

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
