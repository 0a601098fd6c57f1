"""`adb exec-in` and raw shells: what the client sends before it closes still reaches the
command, and a client that closes still stops a command that is not reading."""

from __future__ import annotations

import os
import subprocess

import adbutils
import pytest
from virtual_android.device import VirtualS24


def exec_in(
    server: adbutils.AdbClient, serial: str, command: str, data: bytes
) -> subprocess.CompletedProcess[bytes]:
    """`adb exec-in COMMAND < data` through the real adb binary."""
    return subprocess.run(
        [adbutils.adb_path(), "-P", str(server.port), "-s", serial, "exec-in", command],
        input=data,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize("size", [12, 4096, 200_000])
def test_exec_in_writes_every_byte_to_the_file(
    adb_server: adbutils.AdbClient, virtual_s24: VirtualS24, device: adbutils.AdbDevice, size: int
) -> None:
    data = os.urandom(size)
    path = f"/data/local/tmp/in-{size}.bin"
    done = exec_in(adb_server, virtual_s24.serial, f"cat > {path}", data)
    assert done.returncode == 0
    assert device.sync.read_bytes(path) == data
    assert device.shell(f"stat -c %s {path}") == str(size)


def test_exec_in_into_a_pipeline(
    adb_server: adbutils.AdbClient, virtual_s24: VirtualS24, device: adbutils.AdbDevice
) -> None:
    text = "".join(f"line {n}\n" for n in range(500)).encode()
    command = "grep 7 | wc -l > /data/local/tmp/n"
    assert exec_in(adb_server, virtual_s24.serial, command, text).returncode == 0
    assert device.shell("cat /data/local/tmp/n") == "95"


def test_client_closing_a_raw_shell_stops_a_loop(device: adbutils.AdbDevice, wait) -> None:
    conn = device.shell("while true; do sleep 0.05; done", stream=True)
    wait(lambda: "while true" in device.shell("ps -A -o ARGS"), 5)
    conn.close()
    wait(lambda: "while true" not in device.shell("ps -A -o ARGS"), 5)
