"""The store's Lua scripts from ``lua/``, run by ``EVALSHA``, and redis-py's errors as ``StoreError``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from ...errors import StoreError
from .connection import ThreadConnections, import_redis

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

#: The scripts in ``lua/``, one per atomic operation; ``common.lua`` is prepended to each.
SCRIPT_NAMES = (
    "create",
    "create_many",
    "claim",
    "renew",
    "complete",
    "complete_many",
    "fail",
    "finish_canceled",
    "release",
    "cancel",
    "set_progress",
    "recover",
    "purge",
    "wake",
    "requeue",
    "delete_finished",
)


def script_source(name: str) -> str:
    """The text of the script ``name`` as it is sent: ``common.lua``, then ``{name}.lua``."""
    folder = resources.files(__package__ or "flask_asyncendpoints.stores.redis").joinpath("lua")
    common = folder.joinpath("common.lua").read_text(encoding="utf-8")
    return common + "\n" + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")


class ScriptRunner:
    """The scripts of :data:`SCRIPT_NAMES` registered on one client, and the words for its failures.

    :param client: the ``redis.Redis`` client the scripts are registered on.
    :param connections: the client's per-thread connections, which single scripts are sent on.
    :param where: where the client connects, for messages (never with a password).
    :param key_prefix: the store's key prefix, for messages.
    :raises ConfigurationError: when the ``redis`` package is missing.
    """

    def __init__(self, client: redis.Redis, connections: ThreadConnections, *, where: str, key_prefix: str) -> None:
        self._exceptions = import_redis().exceptions
        self._client = client
        self._call = connections.call
        self._where = where
        self._key_prefix = key_prefix
        # Registered on this client only: redis-py's Script loads itself on first use and again after
        # NOSCRIPT (SCRIPT FLUSH, a restart, a failover), so nothing has to be loaded up front.
        self.registered: dict[str, Script] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
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
        """Run one script on this thread's connection and return its reply.

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
        """Run one script once per ``(keys, args)``, all in one round trip.

        ``EVALSHA`` is sent directly rather than through redis-py's ``Script``, whose pipelines ask
        ``SCRIPT EXISTS`` first: a second round trip on every batch. When the server answers
        ``NOSCRIPT`` (after ``SCRIPT FLUSH``, a restart or a failover) none of the calls ran, so the
        script is loaded and the whole batch sent again.

        :raises StoreError: when Redis cannot be reached or refuses the script.
        """
        script = self.registered[name]
        with self.errors(f"running the {name} script"):
            for attempt in (1, 2):
                pipe = self._client.pipeline(transaction=False)
                for keys, args in calls:
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
                try:
                    return pipe.execute()
                except self._exceptions.NoScriptError:
                    if attempt == 2:
                        raise
                    script.sha = self._client.script_load(script.script)
        raise AssertionError("unreachable")
