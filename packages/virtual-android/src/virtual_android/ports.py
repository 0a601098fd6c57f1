"""Loopback ports for a phone or an adb server that no adb server and no Ray cluster on the
same host will take for something else. Light on purpose: the pytest plugin imports it at
pytest's start."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    """A free loopback port outside 5037 (adb's own), 5555-5585 (what adb probes as
    emulators) and 10002-19999 (Ray's default worker ports, when a run shares a host)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != 5037 and not 5555 <= port <= 5585 and not 10002 <= port <= 19999:
            return port
