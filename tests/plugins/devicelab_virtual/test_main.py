"""`python -m devicelab_virtual`: one virtual S24 (its models on devicelab's engine) in the
foreground, as `devicelab virtual start` runs it in the background."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import adbutils
from virtual_android.pytest_plugin import assert_serves_until_sigterm

PLUGINS = Path(__file__).resolve().parents[3] / "plugins"


def test_main_runs_in_the_foreground_until_sigterm(adb_server: adbutils.AdbClient) -> None:
    env = dict(os.environ, PYTHONPATH=str(PLUGINS))
    argv = [sys.executable, "-m", "devicelab_virtual", "--port", "0"]
    assert_serves_until_sigterm(adb_server, argv, env)
