"""`python -m devicelab_virtual`: one virtual S24 (its models on devicelab's engine) in the
foreground, as `devicelab virtual start` runs it in the background."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import adbutils

PLUGINS = Path(__file__).resolve().parents[3] / "plugins"


def test_main_runs_in_the_foreground_until_sigterm(
    adb_server: adbutils.AdbClient, wait, state_of
) -> None:
    env = dict(os.environ, PYTHONPATH=str(PLUGINS))
    proc = subprocess.Popen(
        [sys.executable, "-m", "devicelab_virtual", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        serial = proc.stdout.readline().strip()
        assert serial.startswith("127.0.0.1:")
        adb_server.connect(serial, timeout=5)
        wait(lambda: state_of(serial) == "device", 10)
        assert adb_server.device(serial).shell("getprop ro.product.device") == "e1s"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        wait(lambda: state_of(serial) != "device", 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        adb_server.disconnect(serial)
