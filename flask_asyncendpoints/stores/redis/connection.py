"""redis-py, imported when first needed, and the one connection each thread keeps out of a client's pool."""

from __future__ import annotations

import contextlib
import os
import threading
import types
import weakref
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError

try:  # installed by the redis extra; see _HeldConnection.pack
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - redis-py without hiredis
    _hiredis_pack = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import redis

    from .sentinel import SentinelWatch

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

    With a Sentinel-managed client, ``watch`` follows the Sentinels' failovers: calls raise
    ``StoreError`` while one is under way, and a connection to a master that has been replaced is
    dropped before its next call, so the next one connects to the new master.

    :param client: a ``redis.Redis`` client.
    :param watch: the failovers of the client's Sentinel service, if it has one.
    :raises ConfigurationError: when the ``redis`` package is missing.
    """

    def __init__(self, client: redis.Redis, watch: SentinelWatch | None = None) -> None:
        self._client = client
        self._exceptions = import_redis().exceptions
        self._watch = watch
        #: ``held``: this thread's connection.
        self._local = threading.local()

    def call(self, *command: Any) -> Any:
        """Send one command on this thread's own connection and return the raw reply.

        Like the pool, it makes sure the connection holds no stale data before sending; after any
        failure other than an error reply it is closed, and the next command connects afresh.
        """
        held = self._held()
        connection = held.connection
        exceptions = self._exceptions
        try:
            connection.send_packed_command(held.pack(command))
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
        connection = self._held().connection
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

    def groups(self, keys: Sequence[Sequence[str]]) -> list[tuple[str, list[int]]]:
        """The calls on ``keys`` (one list per call) by the connection they go out on: all on this
        thread's, for one server. Each group's first key stands for it in :meth:`call_together`."""
        return [(keys[0][0], list(range(len(keys))))] if keys else []

    def call_together(self, key: str, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` on one connection, in one round trip; their replies, errors as exceptions.

        ``WAIT`` counts the replicas that have every write of the connection it is sent on, so the
        writes it vouches for must go on the same one.
        """
        return self.call_many(commands, raise_on_error=False)

    def _held(self) -> _HeldConnection:
        """This thread's connection, checked to be fit for the next command."""
        held: _HeldConnection | None = getattr(self._local, "held", None)
        watch = self._watch
        if held is None or held.pid != os.getpid():
            held = self._local.held = _HeldConnection(self._client.connection_pool)
            if watch is not None:
                # Its threads run in each process that uses the store, a forked child too.
                watch.start()
                held.generation = watch.generation
        connection = held.connection
        if watch is not None:
            watch.check()
            if held.generation != watch.generation:
                # The master moved: leave the old one, and the next command connects to the new.
                held.generation = watch.generation
                connection.disconnect()
        exceptions = self._exceptions
        try:
            if connection.can_read():
                raise exceptions.ConnectionError("connection has unread data")
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError):
            connection.disconnect()
        return held


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
        errors = [reply for reply in replies if isinstance(reply, Exception)]
        for error in errors:
            # A node that could not be reached (a failover) leaves no reply to use, whatever the caller asked.
            if not isinstance(error, self._exceptions.ResponseError):
                raise error
        if errors and raise_on_error:
            raise errors[0]
        return replies

    def groups(self, keys: Sequence[Sequence[str]]) -> list[tuple[str, list[int]]]:
        """The calls on ``keys`` (one list per call) by the master that owns their slot."""
        by_node: dict[str, tuple[str, list[int]]] = {}
        for index, call_keys in enumerate(keys):
            node = self._client.get_node_from_key(call_keys[0])
            by_node.setdefault(node.name, (call_keys[0], []))[1].append(index)
        return list(by_node.values())

    def call_together(self, key: str, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` on one connection to the master of ``key``'s slot; their replies, errors
        as exceptions.

        The cluster client's pipeline would send a command without keys (``WAIT``) to a node of its
        choosing; here every command goes to the one node, on one of its connections.
        """
        exceptions = self._exceptions
        node = self._client.get_node_from_key(key)
        pipe = self._client.get_redis_connection(node).pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        try:
            replies: list[Any] = pipe.execute(raise_on_error=False)
        except (exceptions.ConnectionError, exceptions.TimeoutError):
            # The node may be gone (a failover): learn the slots again before the next call.
            self._client.nodes_manager.initialize()
            raise
        if any(isinstance(reply, exceptions.AskError) for reply in replies):
            # MOVED or ASK: the slot has another master now. Nothing ran; the caller tries again.
            self._client.nodes_manager.initialize()
        return replies


class _HeldConnection:
    """A connection taken out of a pool for one thread; it goes back when the thread's locals are dropped."""

    def __init__(self, pool: Any) -> None:
        self.pid = os.getpid()
        _return_dropped()  # first, so this thread may take one of them
        self.connection = connection = pool.get_connection()
        #: The :attr:`SentinelWatch.generation <.sentinel.SentinelWatch.generation>` it connects under.
        self.generation = 0
        #: Whether :meth:`pack` may call hiredis itself: when it is the packer redis-py chose.
        self.hiredis = _hiredis_pack is not None and _uses_hiredis_packer(connection)
        weakref.finalize(self, _give_back, pool, connection, self.pid)

    def pack(self, command: tuple[Any, ...]) -> Any:
        """One command as the bytes to send, as the connection's ``pack_command`` makes them.

        redis-py's hiredis packer checks and copies every argument in Python before hiredis packs
        them, about 1.5 µs of a submit; called directly, hiredis makes the same bytes.
        """
        if self.hiredis:
            name = command[0]
            if type(name) is str and " " not in name:  # redis-py splits "SCRIPT LOAD" and the like
                try:
                    return [_hiredis_pack(command)]
                except TypeError:
                    pass  # redis-py's own packer says what is wrong (DataError), or converts it
        return self.connection.pack_command(*command)


def _uses_hiredis_packer(connection: Any) -> bool:
    packer = getattr(connection, "_command_packer", None)
    return type(packer).__name__ == "HiredisRespSerializer" and type(packer).__module__ == "redis.connection"


#: Connections whose thread's locals were dropped, waiting to go back to their pool.
_DROPPED: deque[tuple[Any, Any, int]] = deque()


def _give_back(pool: Any, connection: Any, pid: int) -> None:
    # A finalizer runs wherever the garbage collector happens to run, maybe inside one of the
    # pool's own methods in this very thread, with its lock held (``close`` disconnecting every
    # connection): releasing here would wait for that lock forever. So it only queues the
    # connection (``deque.append`` takes no lock); the next connection taken out gives it back.
    _DROPPED.append((pool, connection, pid))


def _return_dropped() -> None:
    """Give the connections of dropped thread locals back to their pools."""
    while True:
        try:
            pool, connection, pid = _DROPPED.popleft()
        except IndexError:
            return
        # A connection inherited through fork is the parent's; the child's pool has forgotten it.
        if os.getpid() == pid:
            with contextlib.suppress(Exception):
                pool.release(connection)
