"""Fault switches: the device disappears, goes offline, or hangs."""

from __future__ import annotations

import subprocess

import adbutils
import pytest
from virtual_android.device import VirtualS24


def test_cut_transport_then_reconnect(
    adb_server: adbutils.AdbClient, virtual_s24: VirtualS24, wait, state_of
) -> None:
    serial = virtual_s24.serial
    device = adb_server.device(serial)
    assert device.shell("echo before") == "before"
    virtual_s24.cut_transport()
    wait(lambda: virtual_s24.transport_count() == 0 or state_of(serial) != "device", 5)
    adb_server.connect(serial, timeout=5)  # "already connected" while the server retries itself
    wait(lambda: state_of(serial) == "device", 15)
    wait(lambda: device.shell("echo after") == "after", 10)


def test_set_offline_and_back(
    adb_server: adbutils.AdbClient, virtual_s24: VirtualS24, wait, state_of
) -> None:
    serial = virtual_s24.serial
    device = adb_server.device(serial)
    virtual_s24.set_offline(True)
    wait(lambda: state_of(serial) != "device", 5)
    with pytest.raises(adbutils.AdbError):
        device.shell2("echo x", v2=True, timeout=5)
    assert virtual_s24.transport_count() == 0
    virtual_s24.set_offline(False)
    adb_server.connect(serial, timeout=5)
    wait(lambda: state_of(serial) == "device", 15)
    assert device.shell("echo back") == "back"


def test_set_hung_makes_calls_time_out(
    adb, adb_server: adbutils.AdbClient, virtual_s24: VirtualS24, wait, state_of
) -> None:
    device = adb_server.device(virtual_s24.serial)
    assert device.shell("echo ok") == "ok"
    virtual_s24.set_hung(True)
    with pytest.raises(adbutils.AdbTimeout):
        device.shell2("echo never", v2=True, timeout=1.0)
    with pytest.raises(subprocess.TimeoutExpired):
        adb("-s", virtual_s24.serial, "shell", "echo never", timeout=1.5)
    assert state_of(virtual_s24.serial) == "device"  # connected, just silent
    virtual_s24.set_hung(False)
    wait(lambda: device.shell2("echo alive", v2=True, timeout=5).stdout == "alive\n", 10)


def test_stop_drops_the_device(adb_server: adbutils.AdbClient, wait, state_of) -> None:
    dev = VirtualS24()
    dev.start()
    try:
        adb_server.connect(dev.serial, timeout=5)
        wait(lambda: state_of(dev.serial) == "device", 10)
    finally:
        dev.stop()
    wait(lambda: state_of(dev.serial) != "device", 5)
    adb_server.disconnect(dev.serial)
