"""Fixtures: a connected VirtualS24 on the private adb server (tests/plugins/conftest.py)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator

import adbutils
import pytest
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
