"""Fixtures for the plugins' tests: a private adb server, the real binary adbutils ships."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
if str(_PLUGINS) not in sys.path:
    sys.path.insert(0, str(_PLUGINS))


def free_port() -> int:
    """A free loopback port that the adb server will not take for its own or an emulator's."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != 5037 and not 5555 <= port <= 5585:
            return port


@pytest.fixture(scope="session")
def adb_server() -> Iterator[object]:
    """A private adb server on a free port (never 5037), killed at the end of the session."""
    adbutils = pytest.importorskip("adbutils")
    adb = adbutils.adb_path()
    port = free_port()
    saved = os.environ.get("ANDROID_ADB_SERVER_PORT")
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    subprocess.run(
        [adb, "-P", str(port), "start-server"],
        check=True,
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield adbutils.AdbClient(host="127.0.0.1", port=port)
    finally:
        subprocess.run(
            [adb, "-P", str(port), "kill-server"],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        if saved is None:
            os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
        else:
            os.environ["ANDROID_ADB_SERVER_PORT"] = saved
