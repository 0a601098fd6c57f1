"""Fixtures for the plugins' tests: a private adb server, the real binary adbutils ships."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from wordsplugin import free_port

_PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
if str(_PLUGINS) not in sys.path:
    sys.path.insert(0, str(_PLUGINS))


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
