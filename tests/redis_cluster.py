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
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: How long a node may be unreachable before the cluster fails it over (milliseconds); tests that
#: stop a master can lower it with ``CONFIG SET cluster-node-timeout``.
NODE_TIMEOUT_MS = 3000


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports nothing listens on, whose cluster bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


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
    nodes: dict[int, Node] = field(default_factory=dict)
    _root: Path | None = None

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
            for port in free_ports(6):
                directory = self._root / str(port)
                directory.mkdir()
                process = subprocess.Popen(
                    [
                        self.server,
                        "--port", str(port),
                        "--bind", "127.0.0.1",
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str(directory / "nodes.conf"),
                        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                        "--dir", str(directory),
                        "--save", "",
                        "--appendonly", "no",
                        "--daemonize", "no",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=(directory / "server.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
                self.nodes[port] = Node(port, process, directory)
            deadline = time.monotonic() + timeout
            for node in self.nodes.values():
                self._wait(lambda n=node: self._answers(n.port), deadline, f"{node.address} to start")
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

    def _alive(self) -> list[int]:
        return [port for port, node in self.nodes.items() if node.process.poll() is None]

    def _slots(self) -> list[Any]:
        import redis

        for port in self._alive():
            with contextlib.suppress(redis.RedisError), redis.Redis(port=port, socket_timeout=2) as client:
                reply: list[Any] = client.execute_command("CLUSTER", "SLOTS")
                return [[int(entry[0]), int(entry[1]), *entry[2:]] for entry in reply]
        raise RuntimeError("no node of the cluster answers")

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
