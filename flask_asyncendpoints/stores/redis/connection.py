"""redis-py, imported when first needed, and the one connection each thread keeps out of a client's pool."""

from __future__ import annotations

import contextlib
import os
import threading
import types
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError

if TYPE_CHECKING:
    import redis

_INSTALL_HINT = 'pip install "flask-asyncendpoints[redis]"'


def import_redis() -> types.ModuleType:
    """The ``redis`` package.

    :raises ConfigurationError: when it is not installed, naming the extra that installs it.
    """
    try:
        import redis
    except ImportError as exc:
        raise ConfigurationError(
            f"The Redis store needs the 'redis' package, which is not installed. Install it with: {_INSTALL_HINT}"
        ) from exc
    return redis


class ThreadConnections:
    """Single commands to ``client``, each thread on a connection of its own.

    Each thread keeps one connection out of the client's pool (given back when the thread ends):
    checking a connection out and in again for every command costs about as much as the round trip
    itself.

    :param client: a ``redis.Redis`` client.
    :raises ConfigurationError: when the ``redis`` package is missing.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._exceptions = import_redis().exceptions
        #: ``held``: this thread's connection.
        self._local = threading.local()

    def call(self, *command: Any) -> Any:
        """Send one command on this thread's own connection and return the raw reply.

        Like the pool, it makes sure the connection holds no stale data before sending; after any
        failure other than an error reply it is closed, and the next command connects afresh.
        """
        connection = self._connection()
        exceptions = self._exceptions
        try:
            connection.send_command(*command)
            return connection.read_response()
        except exceptions.ResponseError:
            raise
        except BaseException:
            # A reply may still be on its way: nothing else may read this connection's stream.
            connection.disconnect()
            raise

    def call_many(self, commands: Sequence[Sequence[Any]], *, raise_on_error: bool = True) -> list[Any]:
        """Send several commands in one round trip on this thread's connection; their raw replies.

        :param raise_on_error: raise the first error reply (once every reply is read); else error
            replies are in the list as exceptions.
        :raises redis.exceptions.ResponseError: see ``raise_on_error``.
        """
        connection = self._connection()
        exceptions = self._exceptions
        replies: list[Any] = []
        error: Exception | None = None
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except exceptions.ResponseError as exc:
                    error = error or exc
                    replies.append(exc)
        except BaseException:
            connection.disconnect()
            raise
        if error is not None and raise_on_error:
            raise error
        return replies

    def _connection(self) -> Any:
        held: _HeldConnection | None = getattr(self._local, "held", None)
        if held is None or held.pid != os.getpid():
            held = self._local.held = _HeldConnection(self._client.connection_pool)
        connection = held.connection
        exceptions = self._exceptions
        try:
            if connection.can_read():
                raise exceptions.ConnectionError("connection has unread data")
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError):
            connection.disconnect()
        return connection


class ClusterCalls:
    """Single and pipelined commands to a ``redis.cluster.RedisCluster``, routed by their keys.

    The cluster client keeps a pool per node and finds the node of each command's slot itself, so
    there is no connection to hold per thread here.

    :param client: a ``redis.cluster.RedisCluster`` client.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._exceptions = import_redis().exceptions

    def call(self, *command: Any) -> Any:
        """Send one command to the node of its keys' slot and return the reply."""
        return self._client.execute_command(*command)

    def call_many(self, commands: Sequence[Sequence[Any]], *, raise_on_error: bool = True) -> list[Any]:
        """Send several commands in one pipeline (one round trip per node); their replies.

        :param raise_on_error: as for :meth:`ThreadConnections.call_many`.
        :raises redis.exceptions.ResponseError: see ``raise_on_error``.
        """
        pipe = self._client.pipeline()
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        for reply in replies:
            if raise_on_error and isinstance(reply, self._exceptions.ResponseError):
                raise reply
        return replies


class _HeldConnection:
    """A connection taken out of a pool for one thread; it goes back when the thread's locals are dropped."""

    def __init__(self, pool: Any) -> None:
        self.pid = os.getpid()
        self.connection = pool.get_connection()
        weakref.finalize(self, _give_back, pool, self.connection, self.pid)


def _give_back(pool: Any, connection: Any, pid: int) -> None:
    # A connection inherited through fork is the parent's; the child's pool has forgotten it.
    if os.getpid() == pid:
        with contextlib.suppress(Exception):
            pool.release(connection)
