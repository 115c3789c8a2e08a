"""Free loopback ports for servers started by tests.

A port is handed out unbound: the server that gets it binds it later. Asking the kernel
for one (bind to port 0) returns a port of the ephemeral range, which every outgoing
connection on the machine draws from as well, and which another xdist worker may be
handed in the same instant. So ports come from below the ephemeral range instead, each
xdist worker from its own slice of it, never twice in one process, and only if nothing
holds them now.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

# Below Linux's default ephemeral range (32768–60999): no client socket takes these.
LOW, HIGH = 20000, 32767

_issued: set[int] = set()
# Its own generator: a test that seeds the module-level one must not make ports repeat.
_random = random.Random()


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def worker_slice() -> range:
    """This process's ports: the whole pool without xdist, else worker N's Nth share."""
    pool_high = min(HIGH, ephemeral_range()[0] - 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return range(LOW, pool_high + 1)
    size = (pool_high + 1 - LOW) // count
    start = LOW + int(worker[2:]) * size
    return range(start, start + size)


def bindable(port: int) -> bool:
    """Nothing listens on or lingers at ``port`` (no SO_REUSEADDR: TIME_WAIT counts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    # Random, not sequential: independent test runs on one machine (other checkouts)
    # do not march through the same ports in step.
    ports = worker_slice()
    for _ in range(1000):
        port = _random.choice(ports)
        if port not in _issued and bindable(port):
            _issued.add(port)
            return port
    raise RuntimeError(f"no free port in {ports}")
