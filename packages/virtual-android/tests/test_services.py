"""The `reverse:` and `framebuffer:` services through the real adb binary and adbutils."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import adbutils
from virtual_android.device import VirtualS24
from virtual_android.pytest_plugin import AdbRunner


def test_adb_reverse_lists_and_removes_mappings(
    adb: AdbRunner, virtual_s24: VirtualS24, device: adbutils.AdbDevice
) -> None:
    serial = virtual_s24.serial
    assert adb("-s", serial, "reverse", "tcp:12345", "tcp:4000").returncode == 0
    device.reverse("tcp:23456", "tcp:4001")
    listed = adb("-s", serial, "reverse", "--list").stdout.split("\n")
    listed = [line for line in listed if line]  # adb ends the list with a blank line
    assert [line.split()[1:] for line in listed] == [
        ["tcp:12345", "tcp:4000"],
        ["tcp:23456", "tcp:4001"],
    ]
    assert listed[0].split()[0].startswith("host-")
    pairs = [(r.remote, r.local) for r in device.reverse_list()]
    assert pairs == [("tcp:12345", "tcp:4000"), ("tcp:23456", "tcp:4001")]

    norebind = adb("-s", serial, "reverse", "--no-rebind", "tcp:12345", "tcp:9")
    assert norebind.returncode == 1 and "cannot rebind existing socket" in norebind.stderr
    assert adb("-s", serial, "reverse", "--remove", "tcp:12345").returncode == 0
    gone = adb("-s", serial, "reverse", "--remove", "tcp:12345")
    assert gone.returncode == 1 and "listener 'tcp:12345' not found" in gone.stderr
    device.reverse_remove_all()
    assert adb("-s", serial, "reverse", "--list").stdout.strip() == ""


@contextlib.contextmanager
def answering_host(reply: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """A host server on a free loopback port that answers one connection's first message
    with ``reply``; yields its port and the messages it got (complete after the block)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            got.append(conn.recv(100))
            conn.sendall(reply)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield listener.getsockname()[1], got
        thread.join(10)
    finally:
        listener.close()


def test_a_device_side_connection_reaches_the_host_through_reverse(
    virtual_s24: VirtualS24, device: adbutils.AdbDevice
) -> None:
    with answering_host(b"pong") as (host_port, got):
        device.reverse("tcp:8081", f"tcp:{host_port}")
        # An app on the phone connecting to its localhost:8081.
        stream = virtual_s24.open_reverse(8081)
        stream.write(b"ping")
        assert stream.read(timeout=10) == b"pong"
        stream.close()
    assert got == [b"ping"]


def test_nc_on_the_phone_reaches_the_host_through_reverse(
    adb: AdbRunner, virtual_s24: VirtualS24, device: adbutils.AdbDevice
) -> None:
    with answering_host(b"pong\n") as (host_port, got):
        device.reverse("tcp:8082", f"tcp:{host_port}")
        done = adb("-s", virtual_s24.serial, "shell", "nc", "127.0.0.1", "8082", input="ping\n")
        assert (done.returncode, done.stdout) == (0, "pong\n")
    assert got == [b"ping\n"]
    refused = device.shell2(["nc", "127.0.0.1", "8083"])
    assert refused.returncode == 1 and "Connection refused" in refused.output


def test_framebuffer_is_a_frame_of_the_screen(device: adbutils.AdbDevice) -> None:
    image = device.framebuffer()
    assert image.size == (1080, 2340)
    assert image.mode in ("RGB", "RGBA")
