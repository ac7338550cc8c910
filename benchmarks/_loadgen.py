"""A small HTTP load generator: threads POSTing one JSON body to one URL path on loopback, for a while.

Run by ``benchmarks/http.py`` as several processes (``python -m benchmarks._loadgen …``); each prints one
JSON object: requests answered with the expected status, other answers, errors, and the latency of
every expected answer (seconds) inside the measuring window. Every request opens its own connection
and sends ``Connection: close``, as gunicorn's sync workers close each connection anyway. Only the
standard library, so the processes start fast and cost little.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Tally:
    expected: int = 0
    other: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def one_request(host: str, port: int, request: bytes) -> str:
    """Send ``request`` on a new connection; the status code answered (as text)."""
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    head = b"".join(chunks)[:16].split(b" ", 2)
    return head[1].decode("ascii", "replace") if len(head) > 1 else "no-answer"


def run(
    host: str, port: int, path: str, body: bytes, *, threads: int, start_at: float, warmup: float, duration: float
) -> Tally:
    request = build_request(host, port, path, body)
    window_start = start_at + warmup
    window_end = window_start + duration
    tally = Tally()
    lock = threading.Lock()

    def client(expected: str) -> None:
        mine = Tally()
        delay = start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        while True:
            began = time.time()
            if began >= window_end:
                break
            try:
                status = one_request(host, port, request)
            except OSError as exc:
                status = f"error:{type(exc).__name__}"
            ended = time.time()
            if window_start <= began and ended <= window_end:
                if status == expected:
                    mine.expected += 1
                    mine.latencies.append(ended - began)
                else:
                    mine.other[status] += 1
        with lock:
            tally.expected += mine.expected
            tally.other.update(mine.other)
            tally.latencies.extend(mine.latencies)

    pool = [threading.Thread(target=client, args=("202",)) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return tally


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", required=True, help="the JSON body to POST")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--start-at", type=float, required=True, help="epoch time to start sending at")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds sent but not counted")
    parser.add_argument("--duration", type=float, required=True, help="seconds counted")
    args = parser.parse_args(argv)
    tally = run(
        args.host,
        args.port,
        args.path,
        args.body.encode("utf-8"),
        threads=args.threads,
        start_at=args.start_at,
        warmup=args.warmup,
        duration=args.duration,
    )
    json.dump({"expected": tally.expected, "other": dict(tally.other), "latencies": tally.latencies}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
