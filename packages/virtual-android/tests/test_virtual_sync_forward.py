"""sync v1 (push/pull/stat/list) and tcp: forwarding through the real adb server."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import adbutils
import pytest
from virtual_android.device import VirtualS24

FIVE_MB = 5 * 1024 * 1024 + 123


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def payload() -> bytes:
    return os.urandom(FIVE_MB)


def test_push_pull_5mb_with_adbutils(
    device: adbutils.AdbDevice, payload: bytes, tmp_path: Path
) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(payload)
    pushed = device.sync.push(source, "/data/local/tmp/model.bin", mode=0o644, check=True)
    assert pushed == len(payload)
    info = device.sync.stat("/data/local/tmp/model.bin")
    assert info.size == len(payload)
    assert stat.S_ISREG(info.mode) and stat.S_IMODE(info.mode) == 0o644
    assert info.mtime is not None
    on_device = device.shell("md5sum /data/local/tmp/model.bin").split()[0]
    assert on_device == _md5(payload)
    target = tmp_path / "back.bin"
    assert device.sync.pull("/data/local/tmp/model.bin", target) == len(payload)
    assert _md5(target.read_bytes()) == _md5(payload)


def test_push_pull_5mb_with_adb_binary(
    adb, virtual_s24: VirtualS24, payload: bytes, tmp_path: Path
) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(payload)
    serial = virtual_s24.serial
    pushed = adb("-s", serial, "push", str(source), "/sdcard/Download/blob.bin")
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    assert "1 file pushed" in pushed.stdout + pushed.stderr
    target = tmp_path / "pulled.bin"
    pulled = adb("-s", serial, "pull", "/sdcard/Download/blob.bin", str(target))
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    assert _md5(target.read_bytes()) == _md5(payload)
    check = adb("-s", serial, "shell", "toybox md5sum /storage/emulated/0/Download/blob.bin")
    assert check.stdout.split()[0] == _md5(payload)


def test_push_a_directory_and_pull_it_back(adb, virtual_s24: VirtualS24, tmp_path: Path) -> None:
    tree = tmp_path / "models"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.txt").write_text("beta\n")
    serial = virtual_s24.serial
    pushed = adb("-s", serial, "push", str(tree), "/data/local/tmp/")
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    listing = adb("-s", serial, "shell", "cat /data/local/tmp/models/sub/b.txt")
    assert listing.stdout == "beta\n"
    back = tmp_path / "back"
    pulled = adb("-s", serial, "pull", "/data/local/tmp/models", str(back))
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    assert (back / "sub" / "b.txt").read_text() == "beta\n"


def test_stat_and_list(device: adbutils.AdbDevice) -> None:
    device.sync.push(b"hello", "/data/local/tmp/dir/x.txt", mode=0o600)
    info = device.sync.stat("/data/local/tmp/dir/x.txt")
    assert (info.size, stat.S_IMODE(info.mode)) == (5, 0o600)
    missing = device.sync.stat("/data/local/tmp/nope")
    assert (missing.mode, missing.size, missing.mtime) == (0, 0, None)
    assert not device.sync.exists("/data/local/tmp/nope")
    directory = device.sync.stat("/data/local/tmp/dir")
    assert stat.S_ISDIR(directory.mode)
    names = {entry.path: entry for entry in device.sync.list("/data/local/tmp/dir")}
    assert {".", "..", "x.txt"} <= set(names)
    assert names["x.txt"].size == 5
    assert device.sync.read_text("/data/local/tmp/dir/x.txt") == "hello"
    with pytest.raises(adbutils.AdbError):
        device.sync.read_bytes("/data/local/tmp/nope")
    assert device.shell("ls /data/local/tmp/dir") == "x.txt"
    assert device.shell("stat -c '%s %a' /data/local/tmp/dir/x.txt") == "5 600"


def test_push_outside_writable_areas_fails(device: adbutils.AdbDevice) -> None:
    with pytest.raises(adbutils.AdbError):
        device.sync.push(b"x", "/system/bin/evil")
    assert device.shell2("test -e /system/bin/evil", v2=True).returncode == 1


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A tiny TCP echo server on a free loopback port; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port: int = listener.getsockname()[1]
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    yield port
    stop.set()
    listener.close()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(size - len(buffer))
        assert chunk, "connection closed early"
        buffer.extend(chunk)
    return bytes(buffer)


def test_forward_port_to_exposed_echo_server(
    device: adbutils.AdbDevice, virtual_s24: VirtualS24, echo_server: int
) -> None:
    virtual_s24.expose_port(7912, echo_server)
    local = device.forward_port(7912)
    with socket.create_connection(("127.0.0.1", local), timeout=10) as sock:
        sock.sendall(b"ping\n")
        assert _recv_exact(sock, 5) == b"ping\n"
        big = os.urandom(3 * 1024 * 1024)  # several maxdata-sized WRTEs each way
        sender = threading.Thread(target=sock.sendall, args=(big,))
        sender.start()
        echoed = _recv_exact(sock, len(big))
        sender.join()
        assert _md5(echoed) == _md5(big)


def test_create_connection_and_refused_ports(
    device: adbutils.AdbDevice, virtual_s24: VirtualS24, echo_server: int
) -> None:
    with pytest.raises(adbutils.AdbError):
        device.create_connection(adbutils.Network.TCP, 9008)
    virtual_s24.expose_port(9008, echo_server)
    sock = device.create_connection(adbutils.Network.TCP, 9008)
    with sock:
        sock.sendall(b"GET /ping")
        assert _recv_exact(sock, 9) == b"GET /ping"
    virtual_s24.unexpose_port(9008)
    with pytest.raises(adbutils.AdbError):
        device.create_connection(adbutils.Network.TCP, 9008)


def test_adb_forward_with_binary(adb, virtual_s24: VirtualS24, echo_server: int) -> None:
    virtual_s24.expose_port(8080, echo_server)
    result = adb("-s", virtual_s24.serial, "forward", "tcp:0", "tcp:8080")
    assert result.returncode == 0, result.stderr
    local = int(result.stdout.strip())
    with socket.create_connection(("127.0.0.1", local), timeout=10) as sock:
        sock.sendall(b"abc")
        assert _recv_exact(sock, 3) == b"abc"
    adb("-s", virtual_s24.serial, "forward", "--remove", f"tcp:{local}")
