"""Loopback ports for the servers the tests start (Redis, Sentinels, cluster nodes, gunicorn).

A port the kernel picks for ``bind(0)`` comes from the range it also gives outgoing connections
their local ports from, so between the look and the server's own bind a client socket of any test
(there are thousands, to Redis, PostgreSQL, MariaDB) can take it, and the server then fails to
start. These ports come from below that range, where no outgoing connection is ever put.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: The lowest port handed out here.
LOWEST = 10000


def _ephemeral_start() -> int:
    """The first port of the kernel's range for outgoing connections (Linux's default elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, plus: int = 0) -> list[int]:
    """``count`` distinct loopback ports nothing listens on, below the range of outgoing connections.

    :param plus: each port's twin ``port + plus`` must be free (and below the range) too: a cluster
        node's bus port is its port + 10000.
    """
    highest = _ephemeral_start() - 1 - plus
    if highest - LOWEST < 100 * count:
        raise RuntimeError(f"too few ports below the range for outgoing connections ({highest})")
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(LOWEST, highest)
        if port not in ports and _free(port) and (not plus or _free(port + plus)):
            ports.append(port)
    return ports


def free_port() -> int:
    """One such port."""
    return free_ports(1)[0]
