"""virtual-android's pytest plugin (the ``pytest11`` entry point ``virtual_android``): a
private adb server and a started virtual S24 on it, for any project's tests.

    def test_my_tool_sees_an_s24(device):
        assert device.shell("getprop ro.product.model") == "SM-S921B"

Fixtures (they need adbutils, which ships the real ``adb`` binary: the ``test`` extra; without
it the tests that use them are skipped):

- ``adb_server`` (session): an adb server of its own on a free port (never 5037, so a
  developer's adb and phones are left alone), its ``adbutils.AdbClient``; for the session
  ``ANDROID_ADB_SERVER_PORT`` points at it, so tools that run ``adb`` find it.
- ``virtual_s24``: a started :class:`VirtualS24` connected to that server, stopped after.
- ``device``: the ``adbutils.AdbDevice`` of ``virtual_s24``.
- ``adb``: ``adb("-s", serial, "shell", "id")`` runs the real binary against the server.
- ``wait``: :func:`wait_until`; ``state_of``: ``state_of(serial)`` is the server's state
  of a device (``"device"``, ``"offline"``, ...) or None.

For a phone set up another way (``make_phone()``, a backend of one's own), a fixture of one's
own wraps it in :func:`connected`.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from .ports import free_port

if TYPE_CHECKING:
    from .device import VirtualS24

__all__ = [
    "AdbRunner",
    "adb",
    "adb_server",
    "assert_serves_until_sigterm",
    "connected",
    "device",
    "device_state",
    "free_port",
    "state_of",
    "virtual_s24",
    "wait",
    "wait_until",
]

AdbRunner = Callable[..., subprocess.CompletedProcess[str]]
Phone = TypeVar("Phone", bound="VirtualS24")


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


def device_state(client: Any, serial: str) -> str | None:
    """The adb server's state of `serial` ('device', 'offline', ...), None if not listed."""
    for info in client.list():
        if info.serial == serial:
            return str(info.state)
    return None


@contextlib.contextmanager
def connected(
    client: Any,
    phone: Phone,
    stop: Callable[[Phone], object] | None = None,
    timeout: float = 10.0,
) -> Iterator[Phone]:
    """Start `phone`, connect the adb server `client` to it and wait until it lists the phone;
    on exit stop it (with `stop`, say `shutdown_phone`, or `phone.stop()`) and disconnect."""
    import adbutils

    phone.start()
    try:
        client.connect(phone.serial, timeout=5)
        wait_until(lambda: any(d.serial == phone.serial for d in client.device_list()), timeout)
        yield phone
    finally:
        if stop is None:
            phone.stop()
        else:
            stop(phone)
        with contextlib.suppress(adbutils.AdbError):
            client.disconnect(phone.serial)


def assert_serves_until_sigterm(
    client: Any, argv: list[str], env: dict[str, str] | None = None
) -> None:
    """Run ``argv``, a command that serves one phone in the foreground (``virtual-android
    serve``, or a wrapper of it): it prints the phone's serial, the adb server `client`
    reaches a Galaxy S24 there, and on SIGTERM the command exits 0 and the phone goes."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    serial = ""
    try:
        assert proc.stdout is not None
        serial = proc.stdout.readline().strip()
        assert serial.startswith("127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        client.connect(serial, timeout=5)
        wait_until(lambda: device_state(client, serial) == "device", 10)
        assert client.device(serial).shell("getprop ro.product.device") == "e1s"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        wait_until(lambda: device_state(client, serial) != "device", 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if serial:
            client.disconnect(serial)


def _adb_binary() -> str:
    adbutils = pytest.importorskip("adbutils", reason="needs adbutils: the [test] extra")
    return str(adbutils.adb_path())


def _server_command(binary: str, port: int, command: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [binary, "-P", str(port), command],
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def adb_server() -> Iterator[Any]:
    """A private adb server on a free port (never 5037), killed at the end of the session."""
    binary = _adb_binary()
    import adbutils

    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
        _server_command(binary, port, "start-server").check_returncode()
        try:
            yield adbutils.AdbClient(host="127.0.0.1", port=port)
        finally:
            _server_command(binary, port, "kill-server")


@pytest.fixture
def virtual_s24(adb_server: Any) -> Iterator[VirtualS24]:
    """A started VirtualS24 connected to the private adb server."""
    from .device import VirtualS24

    with connected(adb_server, VirtualS24(port=0)) as phone:
        yield phone


@pytest.fixture
def device(adb_server: Any, virtual_s24: VirtualS24) -> Any:
    """The adbutils handle of the connected virtual S24."""
    return adb_server.device(virtual_s24.serial)


@pytest.fixture
def adb(adb_server: Any) -> AdbRunner:
    """Run the real adb binary against the private server: adb("-s", serial, "shell", "id")."""
    binary = _adb_binary()

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
def wait() -> Callable[..., None]:
    """wait(predicate, timeout=10.0): poll until truthy, fail at the deadline."""
    return wait_until


@pytest.fixture
def state_of(adb_server: Any) -> Callable[[str], str | None]:
    """state_of(serial): the adb server's state for it ('device', 'offline', ...) or None."""
    return lambda serial: device_state(adb_server, serial)
