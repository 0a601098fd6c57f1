"""The `reverse:` and `framebuffer:` services through the real adb binary and adbutils."""

from __future__ import annotations

import socket
import subprocess
import threading

import adbutils
from virtual_android.device import VirtualS24


def _adb(server: adbutils.AdbClient, serial: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [adbutils.adb_path(), "-P", str(server.port), "-s", serial, *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_adb_reverse_lists_and_removes_mappings(
    adb_server: adbutils.AdbClient, virtual_s24: VirtualS24, device: adbutils.AdbDevice
) -> None:
    serial = virtual_s24.serial
    assert _adb(adb_server, serial, "reverse", "tcp:12345", "tcp:4000").returncode == 0
    device.reverse("tcp:23456", "tcp:4001")
    listed = _adb(adb_server, serial, "reverse", "--list").stdout.split("\n")
    listed = [line for line in listed if line]  # adb ends the list with a blank line
    assert [line.split()[1:] for line in listed] == [
        ["tcp:12345", "tcp:4000"],
        ["tcp:23456", "tcp:4001"],
    ]
    assert listed[0].split()[0].startswith("host-")
    pairs = [(r.remote, r.local) for r in device.reverse_list()]
    assert pairs == [("tcp:12345", "tcp:4000"), ("tcp:23456", "tcp:4001")]

    norebind = _adb(adb_server, serial, "reverse", "--no-rebind", "tcp:12345", "tcp:9")
    assert norebind.returncode == 1 and "cannot rebind existing socket" in norebind.stderr
    assert _adb(adb_server, serial, "reverse", "--remove", "tcp:12345").returncode == 0
    gone = _adb(adb_server, serial, "reverse", "--remove", "tcp:12345")
    assert gone.returncode == 1 and "listener 'tcp:12345' not found" in gone.stderr
    device.reverse_remove_all()
    assert _adb(adb_server, serial, "reverse", "--list").stdout.strip() == ""


def test_a_device_side_connection_reaches_the_host_through_reverse(
    virtual_s24: VirtualS24, device: adbutils.AdbDevice
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    host_port = listener.getsockname()[1]
    listener.settimeout(10)
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            got.append(conn.recv(100))
            conn.sendall(b"pong")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        device.reverse("tcp:8081", f"tcp:{host_port}")
        # An app on the phone connecting to its localhost:8081.
        stream = virtual_s24.open_reverse(8081)
        stream.write(b"ping")
        assert stream.read(timeout=10) == b"pong"
        stream.close()
        thread.join(10)
        assert got == [b"ping"]
    finally:
        listener.close()


def test_nc_on_the_phone_reaches_the_host_through_reverse(
    adb_server: adbutils.AdbClient, virtual_s24: VirtualS24, device: adbutils.AdbDevice
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            got.append(conn.recv(100))
            conn.sendall(b"pong\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        device.reverse("tcp:8082", f"tcp:{listener.getsockname()[1]}")
        adb = [adbutils.adb_path(), "-P", str(adb_server.port), "-s", virtual_s24.serial]
        done = subprocess.run(
            [*adb, "shell", "nc", "127.0.0.1", "8082"],
            input="ping\n",
            capture_output=True,
            text=True,
            timeout=30,
        )
        thread.join(10)
        assert (done.returncode, done.stdout) == (0, "pong\n")
        assert got == [b"ping\n"]
    finally:
        listener.close()
    refused = device.shell2(["nc", "127.0.0.1", "8083"])
    assert refused.returncode == 1 and "Connection refused" in refused.output


def test_framebuffer_is_a_frame_of_the_screen(device: adbutils.AdbDevice) -> None:
    image = device.framebuffer()
    assert image.size == (1080, 2340)
    assert image.mode in ("RGB", "RGBA")
