"""A real Redis Sentinel deployment on loopback for the tests: 1 master, 1 replica and 3 Sentinels.

:class:`LocalSentinel` starts two ``redis-server`` processes (the second a replica of the first) and
three ``redis-server --sentinel`` processes monitoring them, each on a free loopback port, waits
until the replica is in sync and every Sentinel knows the replica and the two other Sentinels, and
stops exactly the processes it started (their temporary directory goes too).

The Sentinels run with shorter periods than their defaults (``SENTINEL DEBUG``): they look at the
servers every 100 ms rather than every 10 s, and say hello every 500 ms rather than every 2 s, so
they know each other within a second, and a failover (:meth:`LocalSentinel.failover`) ends with the
old master a replica of the new one within three seconds rather than ten. (A shorter hello period
breaks failovers: a Sentinel turns a replica that calls itself master back into a replica four hello
periods after it sees it, and the Sentinel failing over looks at the replica it promotes only once a
second.)
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ports import free_port

#: The name the Sentinels know the master by.
SERVICE = "aemaster"

#: ``SENTINEL DEBUG`` settings (milliseconds) every Sentinel gets once it answers.
SENTINEL_PERIODS = {"info-period": 100, "publish-period": 500, "ping-period": 100, "ask-period": 100}


@dataclass
class Instance:
    """One process of the deployment: a server or a Sentinel."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def log(self) -> str:
        path = self.directory / "log.txt"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class LocalSentinel:
    """A master, a replica and three Sentinels on loopback; :meth:`start`, then :meth:`stop`.

    :ivar servers: the two ``redis-server`` processes (the first started as the master).
    :ivar sentinels: the three Sentinels.
    """

    server: str = field(default_factory=lambda: shutil.which("redis-server") or "redis-server")
    servers: list[Instance] = field(default_factory=list)
    sentinels: list[Instance] = field(default_factory=list)
    _root: Path | None = None

    def url(self, db: int = 0, **options: Any) -> str:
        """A ``redis+sentinel://`` URL naming the three Sentinels, the service and ``db``."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}" + (f"?{query}" if query else "")

    def start(self, *, timeout: float = 30.0) -> None:
        """Start the servers and the Sentinels and wait until the Sentinels know the whole deployment.

        :raises RuntimeError: when it is not ready within ``timeout`` seconds (everything started
            is stopped again).
        """
        self._root = Path(tempfile.mkdtemp(prefix="ae-redis-sentinel-"))
        deadline = time.monotonic() + timeout
        try:
            master = self._start_server("master", [])
            self._wait(lambda: self._answers(master.port), deadline, "the master to start")
            replica = self._start_server("replica", ["--replicaof", "127.0.0.1", str(master.port)])
            self._wait(lambda: self._answers(replica.port), deadline, "the replica to start")
            self._wait(lambda: self._in_sync(replica.port), deadline, "the replica to sync")
            # After a diskless sync the master streams writes to the replica only once the replica
            # acknowledges (within a second): until then a write is on the master alone.
            self._reply(master.port, "SET", "ae-fixture-probe", "1")
            self._wait(
                lambda: self._reply(replica.port, "GET", "ae-fixture-probe") == "1", deadline, "the replica to stream"
            )
            self._reply(master.port, "DEL", "ae-fixture-probe")
            for n in range(3):
                sentinel = self._start_sentinel(f"sentinel-{n}", master.port)
                self._wait(lambda s=sentinel: self._answers(s.port), deadline, f"{sentinel.name} to start")
                periods = [str(word) for item in SENTINEL_PERIODS.items() for word in item]
                self._reply(sentinel.port, "SENTINEL", "DEBUG", *periods)
            self._wait(self._ready, deadline, "the Sentinels to know the replica and each other")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process this deployment started (and only those), and remove their files."""
        instances = [*self.sentinels, *self.servers]
        for instance in instances:
            if instance.process.poll() is None:
                instance.process.terminate()
        for instance in instances:
            try:
                instance.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                instance.process.kill()
                instance.process.wait(timeout=10)
        self.sentinels.clear()
        self.servers.clear()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def master_port(self) -> int:
        """The port of the master, as the first Sentinel that answers names it."""
        import redis

        for sentinel in self.sentinels:
            try:
                _, port = self._reply(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            except (redis.RedisError, OSError):
                continue
            return int(port)
        raise RuntimeError("no Sentinel answers")

    def failover(self) -> int:
        """Ask a Sentinel to fail the master over (``SENTINEL FAILOVER``); the port of the master before."""
        old = self.master_port()
        self._reply(self.sentinels[0].port, "SENTINEL", "FAILOVER", SERVICE)
        return old

    def settled(self, old_master: int) -> bool:
        """Whether the failover away from ``old_master`` is over: every Sentinel names the other
        server, which is a master, and the old master replicates it, in sync."""
        import redis

        try:
            names = {self._reply(s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1] for s in self.sentinels}
            if len(names) != 1:
                return False
            new = int(next(iter(names)))
            return new != old_master and self._role(new) == "master" and self._in_sync(old_master)
        except (redis.RedisError, OSError, TypeError):
            return False

    # -- plumbing --------------------------------------------------------------------------------------

    def _start_server(self, name: str, extra: list[str]) -> Instance:
        assert self._root is not None
        port = free_port()
        directory = self._root / name
        directory.mkdir()
        process = subprocess.Popen(
            [
                self.server,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(directory),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                # A replica syncs at once rather than after the default 5 s wait for others to join.
                "--repl-diskless-sync-delay", "0",
                "--logfile", str(directory / "log.txt"),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        instance = Instance(name, port, process, directory)
        self.servers.append(instance)
        return instance

    def _start_sentinel(self, name: str, master_port: int) -> Instance:
        assert self._root is not None
        port = free_port()
        directory = self._root / name
        directory.mkdir()
        config = directory / "sentinel.conf"
        # A Sentinel rewrites its configuration file as it learns the deployment: a file of its own.
        config.write_text(
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    "daemonize no",
                    f"dir {directory}",
                    f"logfile {directory / 'log.txt'}",
                    f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2",
                    f"sentinel down-after-milliseconds {SERVICE} 1000",
                    f"sentinel failover-timeout {SERVICE} 10000",
                    f"sentinel parallel-syncs {SERVICE} 1",
                    "",
                ]
            )
        )
        process = subprocess.Popen(
            [self.server, str(config), "--sentinel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        instance = Instance(name, port, process, directory)
        self.sentinels.append(instance)
        return instance

    def _ready(self) -> bool:
        import redis

        master = self.servers[0].port
        try:
            for sentinel in self.sentinels:
                state = _fields(self._reply(sentinel.port, "SENTINEL", "MASTER", SERVICE))
                if int(state["port"]) != master or int(state["num-slaves"]) != 1:
                    return False
                if int(state["num-other-sentinels"]) != 2 or "s_down" in state["flags"]:
                    return False
                replicas = [_fields(reply) for reply in self._reply(sentinel.port, "SENTINEL", "REPLICAS", SERVICE)]
                if not replicas or any("s_down" in replica["flags"] for replica in replicas):
                    return False
            return True
        except (redis.RedisError, OSError, KeyError):
            return False

    def _role(self, port: int) -> str:
        return str(self._reply(port, "ROLE")[0])

    def _in_sync(self, port: int) -> bool:
        import redis

        try:
            role = self._reply(port, "ROLE")
            # A replica's ROLE: ["slave", master host, master port, state, offset].
            return bool(role[0] == "slave" and role[3] == "connected" and int(role[4]) >= 0)
        except (redis.RedisError, OSError):
            return False

    def _answers(self, port: int) -> bool:
        import redis

        try:
            return bool(self._reply(port, "PING"))
        except (redis.RedisError, OSError):
            return False

    def _reply(self, port: int, *command: str) -> Any:
        import redis

        with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as client:
            return client.execute_command(*command)

    @staticmethod
    def _wait(ready: Callable[[], bool], deadline: float, what: str) -> None:
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.05)  # allow-sleep: polling external processes coming up, no event to wait on


def _fields(reply: Any) -> dict[str, str]:
    """A Sentinel state reply as a dict of strings.

    Depending on its version, redis-py hands ``SENTINEL MASTER`` / ``REPLICAS`` replies sent through
    ``execute_command`` back as a dict or as the server's flat ``[name, value, ...]`` list.
    """
    if isinstance(reply, dict):
        return {str(name): str(value) for name, value in reply.items()}
    return {str(name): str(value) for name, value in zip(reply[::2], reply[1::2], strict=True)}
