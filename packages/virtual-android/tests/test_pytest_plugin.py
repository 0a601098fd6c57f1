"""The package's pytest plugin, as another project gets it: installed through the ``pytest11``
entry point, with no conftest of its own."""

from __future__ import annotations

import socket

import pytest

pytest_plugins = ["pytester"]

USES_THE_FIXTURES = """
import os
from pathlib import Path

def test_phone(virtual_s24, device, adb, adb_server, state_of, wait):
    Path("ports.txt").write_text(f"{adb_server.port} {virtual_s24.port}")
    assert adb_server.port != 5037
    assert os.environ["ANDROID_ADB_SERVER_PORT"] == str(adb_server.port)
    assert device.serial == virtual_s24.serial
    assert device.shell("getprop ro.product.model") == "SM-S921B"
    done = adb("-s", virtual_s24.serial, "shell", "echo", "hi")
    assert (done.returncode, done.stdout) == (0, "hi\\n")
    wait(lambda: state_of(virtual_s24.serial) == "device", 5)
    assert state_of("127.0.0.1:1") is None
"""


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_project_without_a_conftest_gets_a_phone_on_a_private_adb_server(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_uses_fixtures=USES_THE_FIXTURES)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    server_port, phone_port = map(int, (pytester.path / "ports.txt").read_text().split())
    # Afterwards the phone is stopped and the private server killed.
    assert not _listening(phone_port)
    assert not _listening(server_port)
