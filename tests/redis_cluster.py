"""A real Redis Cluster on loopback for the tests: 3 masters and 3 replicas from the ``redis-server`` binary.

:class:`LocalCluster` starts six ``redis-server`` processes with ``cluster-enabled yes`` on free
loopback ports, joins them with ``redis-cli --cluster create … --cluster-replicas 1``, waits until
every node says ``cluster_state:ok`` and every replica is in sync, and stops exactly the processes
it started (their temporary directory goes too). It can tell which node serves a key's slot and
which node replicates it, and stop a node, for failover tests.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ports import free_ports

#: A node's cluster bus port is its port plus this.
BUS_PORT_OFFSET = 10000

#: How long a node may be unreachable before the cluster fails it over (milliseconds), unless a
#: :class:`LocalCluster` is given another ``node_timeout_ms``.
NODE_TIMEOUT_MS = 3000


@dataclass
class Node:
    """One ``redis-server`` of the cluster."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class LocalCluster:
    """Six nodes on loopback; :meth:`start`, then :meth:`stop`.

    :ivar nodes: every node started, by port.
    """

    server: str = field(default_factory=lambda: shutil.which("redis-server") or "redis-server")
    cli: str = field(default_factory=lambda: shutil.which("redis-cli") or "redis-cli")
    #: ``cluster-node-timeout``: a failover test wants a short one, so a replica takes over in seconds.
    node_timeout_ms: int = NODE_TIMEOUT_MS
    nodes: dict[int, Node] = field(default_factory=dict)
    _root: Path | None = None
    #: The replicas :meth:`cut_replication` cut off, by the port of their master.
    _cut: dict[int, list[int]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes.values())

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the nodes, make them one cluster and wait until it is ready.

        :raises RuntimeError: when it does not come up within ``timeout`` seconds (everything
            started is stopped again).
        """
        self._root = Path(tempfile.mkdtemp(prefix="ae-redis-cluster-"))
        try:
            for port in free_ports(6, plus=BUS_PORT_OFFSET):
                directory = self._root / str(port)
                directory.mkdir()
                process = self._spawn(port, directory)
                self.nodes[port] = Node(port, process, directory)
            deadline = time.monotonic() + timeout
            for node in self.nodes.values():
                self._wait(lambda n=node: self._started(n), deadline, f"{node.address} to start")
            subprocess.run(
                [self.cli, "--cluster", "create", *(n.address for n in self.nodes.values()), "--cluster-replicas", "1",
                 "--cluster-yes"],
                check=True, capture_output=True, timeout=max(deadline - time.monotonic(), 1),
            )  # fmt: skip
            self._wait(self._ready, deadline, "the cluster to be ready")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node this cluster started (and only those), and remove their files."""
        for node in self.nodes.values():
            if node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes.values():
            try:
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(timeout=10)
        self.nodes.clear()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def kill(self, port: int) -> None:
        """Stop one node at once (``SIGKILL``), as a crash would."""
        node = self.nodes[port]
        node.process.kill()
        node.process.wait(timeout=10)

    def restart(self, port: int, *, timeout: float = 30.0) -> None:
        """Start a stopped node again and wait until it is in sync: it rejoins the cluster, as a replica
        of the master that took over from it, with its data from that master."""
        import redis

        node = self.nodes[port]
        node.process = self._spawn(port, node.directory)

        def in_sync() -> bool:
            try:
                with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as client:
                    info = client.info("replication")
            except (redis.RedisError, OSError):
                return False
            return bool(info["role"] == "slave" and info.get("master_link_status") == "up")

        self._wait(in_sync, time.monotonic() + timeout, f"{node.address} to rejoin as a replica")

    def cut_replication(self, port: int) -> None:
        """Cut the link from the master on ``port`` to its replicas, and keep it cut.

        Each replica is given a wrong ``masterauth``, so it cannot connect again, and the master drops
        their links (``CLIENT KILL TYPE replica``): from here the master acknowledges writes that no
        replica has, as it does in the moment between a write and its replication, or while a
        replica lags. A replica still takes over when the master is then stopped.
        """
        import redis

        self._cut[port] = self.replicas_of(port)
        for replica in self._cut[port]:
            with redis.Redis(port=replica, socket_timeout=2) as client:
                client.config_set("masterauth", "not-the-password")
        with redis.Redis(port=port, socket_timeout=2) as client:
            client.execute_command("CLIENT", "KILL", "TYPE", "replica")

    def restore_replication(self, port: int, *, timeout: float = 20.0) -> None:
        """Let the replicas :meth:`cut_replication` cut off connect again, and wait until they are in sync."""
        import redis

        replicas = self._cut.pop(port, [])
        for replica in replicas:
            with redis.Redis(port=replica, socket_timeout=2) as client:
                client.config_set("masterauth", "")

        def linked() -> bool:
            for replica in replicas:
                with redis.Redis(port=replica, socket_timeout=2, decode_responses=True) as client:
                    if client.info("replication").get("master_link_status") != "up":
                        return False
            return True

        self._wait(linked, time.monotonic() + timeout, f"the replicas of {port} to sync again")

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key``'s slot now."""
        slot = int(self._command(next(iter(self._alive())), "CLUSTER", "KEYSLOT", key))
        for start, stop, master, *_ in self._slots():
            if start <= slot <= stop:
                return int(master[1])
        raise LookupError(f"no node serves slot {slot}")

    def replicas_of(self, port: int) -> list[int]:
        """The ports of the replicas of the master on ``port``."""
        for _, _, master, *replicas in self._slots():
            if int(master[1]) == port:
                return [int(replica[1]) for replica in replicas]
        return []

    # -- plumbing --------------------------------------------------------------------------------------

    def _spawn(self, port: int, directory: Path) -> subprocess.Popen[bytes]:
        # The child writes to its own copy of the log's descriptor: this one is closed once it runs.
        with (directory / "server.log").open("ab") as log:
            return subprocess.Popen(
                [
                    self.server,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(directory / "nodes.conf"),
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                    "--dir", str(directory),
                    "--save", "",
                    "--appendonly", "no",
                    "--daemonize", "no",
                    # A replica syncs at once rather than after the default 5 s wait for others to join,
                    # and CLUSTER SLOTS lists it once its offset moves: pinged every second, not 10.
                    "--repl-diskless-sync-delay", "0",
                    "--repl-ping-replica-period", "1",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def _alive(self) -> list[int]:
        return [port for port, node in self.nodes.items() if node.process.poll() is None]

    def _slots(self) -> list[Any]:
        import redis

        for port in self._alive():
            with contextlib.suppress(redis.RedisError), redis.Redis(port=port, socket_timeout=2) as client:
                reply: list[Any] = client.execute_command("CLUSTER", "SLOTS")
                return [[int(entry[0]), int(entry[1]), *entry[2:]] for entry in reply]
        raise RuntimeError("no node of the cluster answers")

    def _started(self, node: Node) -> bool:
        """Whether the node answers; a node whose process ended raises at once, with its log."""
        if node.process.poll() is not None:
            log = (node.directory / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{node.address} exited with status {node.process.returncode}:\n{log}")
        return self._answers(node.port)

    def _answers(self, port: int) -> bool:
        import redis

        try:
            with redis.Redis(port=port, socket_timeout=2) as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def _command(self, port: int, *command: str) -> str:
        import redis

        with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as client:
            return str(client.execute_command(*command))

    def _ready(self) -> bool:
        import redis

        try:
            for port in self.nodes:
                with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as client:
                    if "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                        return False
                    info = client.info("replication")
                    if info["role"] == "slave" and info.get("master_link_status") != "up":
                        return False
            masters = self._slots()
            return sum(stop - start + 1 for start, stop, *_ in masters) == 16384 and all(
                len(entry) >= 4 for entry in masters
            )
        except (redis.RedisError, OSError):
            return False

    @staticmethod
    def _wait(ready: Any, deadline: float, what: str) -> None:
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.1)  # allow-sleep: polling an external process coming up, no event to wait on
