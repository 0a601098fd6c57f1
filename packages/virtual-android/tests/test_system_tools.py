"""logcat and log, cmd, ip/ifconfig, svc, df, top, ime, am broadcast/VIEW/-W, ps -u and ls -R,
through adbutils and the real adb binary, as on an Android 14 phone."""

from __future__ import annotations

import re
import subprocess
import time

import adbutils
from virtual_android.device import VirtualS24

THREADTIME = re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} +(\d+) +(\d+) ([VDIWEF]) (\S+) *: (.*)$")


def test_log_writes_and_logcat_dumps_in_threadtime(dev: adbutils.AdbDevice) -> None:
    dev.shell(["log", "-t", "vsys", "hello from the shell"])
    dev.shell(["log", "-p", "e", "-t", "vsys", "it broke"])
    out = dev.shell(["logcat", "-d", "-s", "vsys"]).splitlines()
    assert out[0] == "--------- beginning of main"
    entries = [THREADTIME.match(line) for line in out[1:]]
    assert all(entries), out
    assert [(m.group(3), m.group(4), m.group(5)) for m in entries if m] == [
        ("I", "vsys", "hello from the shell"),
        ("E", "vsys", "it broke"),
    ]
    assert dev.shell(["logcat", "-d", "-s", "vsys:E", "-v", "brief"]).splitlines()[1:] == [
        "E/vsys    (" + out[2].split()[2].rjust(5) + "): it broke"
    ]


def test_logcat_buffers_clear_and_the_system_writes(dev: adbutils.AdbDevice) -> None:
    system = dev.shell(["logcat", "-d", "-b", "system"])
    assert "--------- beginning of system" in system and "SystemServer" in system
    assert "beginning of main" not in system
    dev.shell(["am", "start", "-n", "ai.devicelab.docassist/.MainActivity"])
    started = dev.shell(["logcat", "-d", "-b", "all", "-s", "ActivityTaskManager"])
    assert "Displayed ai.devicelab.docassist/.MainActivity for user 0: +" in started
    assert dev.shell(["logcat", "-c"]) == ""
    assert dev.shell(["logcat", "-d"]) == ""
    assert "ring buffer is" in dev.shell(["logcat", "-g"])
    bad = dev.shell2(["logcat", "-d", "-b", "nosuch"])
    assert bad.returncode != 0 and "unknown buffer" in bad.output


def test_logcat_follows_until_the_client_goes(dev: adbutils.AdbDevice, wait) -> None:  # type: ignore[no-untyped-def]
    stream = dev.shell(["logcat", "-v", "tag", "-s", "follow"], stream=True)
    stream.conn.settimeout(10)
    dev.shell(["log", "-t", "follow", "one"])
    received = b""
    deadline = time.monotonic() + 10
    while b"I/follow  : one" not in received and time.monotonic() < deadline:
        received += stream.conn.recv(4096)
    assert b"I/follow  : one" in received
    stream.close()
    wait(lambda: "logcat" not in dev.shell(["ps", "-A", "-o", "ARGS"]), 5)


def test_adbutils_logcat_sees_a_log_line(dev: adbutils.AdbDevice, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "logcat.txt"
    cat = dev.logcat(path, clear=True, command="logcat -v time", re_filter="I/TAG")
    dev.shell(["log", "-p", "i", "-t", "TAG", "hello"])
    time.sleep(0.5)
    cat.stop()
    assert re.search(r"I/TAG.*hello", path.read_text())


def test_cmd_is_the_service_front_door(dev: adbutils.AdbDevice) -> None:
    assert "package" in dev.shell(["cmd", "-l"])
    assert dev.shell(["cmd", "package", "path", "android"]).startswith("package:/system/")
    missing = dev.shell2(["cmd", "nosuchservice"])
    assert missing.returncode == 20 and "Can't find service: nosuchservice" in missing.output
    assert dev.shell(["ls", "/system/bin/cmd"]) == "/system/bin/cmd"


def test_wifi_address_follows_svc_wifi(dev: adbutils.AdbDevice) -> None:
    assert dev.wlan_ip() == "192.168.1.57"
    assert "inet 192.168.1.57/24" in dev.shell(["ip", "addr", "show", "dev", "wlan0"])
    dev.switch_wifi(False)
    assert "inet addr" not in dev.shell(["ifconfig", "wlan0"])
    assert "state DOWN" in dev.shell(["ip", "link", "show", "wlan0"])
    dev.switch_wifi(True)
    assert dev.wlan_ip() == "192.168.1.57"
    assert dev.shell2(["ifconfig", "eth9"]).returncode == 1


def test_df_and_top(dev: adbutils.AdbDevice) -> None:
    df = dev.shell(["df", "/data"]).splitlines()
    assert df[0].split() == [
        "Filesystem",
        "1K-blocks",
        "Used",
        "Available",
        "Use%",
        "Mounted",
        "on",
    ]
    fields = df[1].split()
    assert fields[-1] == "/data" and int(fields[1]) == int(fields[2]) + int(fields[3])
    dev.sync.push(b"x" * 3_000_000, "/data/local/tmp/big.bin")
    assert int(dev.shell(["df", "/data"]).splitlines()[1].split()[2]) >= int(fields[2]) + 2900
    top = dev.shell(["top", "-b", "-n", "1"]).splitlines()
    assert top[0].startswith("Tasks:") and "%cpu" in top[3]
    assert top[4].split()[:2] == ["PID", "USER"]
    assert any(line.split()[-1] == "system_server" for line in top[5:])


def test_am_broadcast_view_and_measured_start(dev: adbutils.AdbDevice) -> None:
    sent = dev.shell2(["am", "broadcast", "-a", "com.example.PING", "--es", "k", "v"])
    assert sent.returncode == 0
    assert sent.output.splitlines() == [
        "Broadcasting: Intent { act=com.example.PING flg=0x400000 (has extras) }",
        "Broadcast completed: result=0",
    ]
    denied = dev.shell2(["am", "broadcast", "-a", "android.intent.action.AIRPLANE_MODE"])
    assert denied.returncode != 0 and "Permission Denial" in denied.output

    dev.open_browser("https://example.org/some/page")
    assert dev.app_current().package == "com.sec.android.app.sbrowser"
    view = dev.shell(["am", "start", "-a", "android.intent.action.VIEW", "-d", "https://a.b/c"])
    assert view.startswith(
        "Starting: Intent { act=android.intent.action.VIEW dat=https://a.b/... }"
    )

    out = dev.shell(["am", "start", "-W", "-S", "-n", "ai.mlc.mlcchat/.MainActivity"])
    assert "LaunchState: COLD" in out
    total = int(re.search(r"TotalTime: (\d+)", out).group(1))  # type: ignore[union-attr]
    logged = dev.shell(["logcat", "-d", "-s", "ActivityTaskManager", "ActivityManager"])
    assert f"Displayed ai.mlc.mlcchat/.MainActivity for user 0: +{total}ms" in logged
    pid = dev.shell(["pidof", "ai.mlc.mlcchat"])
    assert f"Start proc {pid}:ai.mlc.mlcchat/u0a" in logged
    dev.app_stop("ai.mlc.mlcchat")
    stopped = dev.shell(["logcat", "-d", "-b", "system", "-s", "ActivityManager"])
    assert "Force stopping ai.mlc.mlcchat appid=" in stopped


def test_ime(dev: adbutils.AdbDevice) -> None:
    honeyboard = "com.samsung.android.honeyboard/.service.HoneyBoardService"
    assert dev.shell(["ime", "list", "-s"]).splitlines() == [honeyboard]
    assert (
        dev.shell(["ime", "set", honeyboard]) == f"Input method {honeyboard} selected for user #0"
    )
    assert dev.shell(["settings", "get", "secure", "default_input_method"]) == honeyboard


def test_ps_u_shell_and_ls_r(device: adbutils.AdbDevice) -> None:
    rows = device.shell(["ps", "-u", "shell"]).splitlines()
    assert rows[0].split()[:2] == ["USER", "PID"]
    assert {row.split()[0] for row in rows[1:]} == {"shell"}
    assert any(row.split()[-1] == "adbd" for row in rows[1:])
    device.shell(
        "mkdir -p /data/local/tmp/t/a/b && touch /data/local/tmp/t/a/b/f /data/local/tmp/t/g"
    )
    assert device.shell(["ls", "-R", "/data/local/tmp/t"]).split("\n") == [
        "/data/local/tmp/t:",
        "a",
        "g",
        "",
        "/data/local/tmp/t/a:",
        "b",
        "",
        "/data/local/tmp/t/a/b:",
        "f",
    ]


def test_reboot_drops_the_transport_and_comes_back_fresh(  # type: ignore[no-untyped-def]
    adb_server: adbutils.AdbClient,
    virtual_s24: VirtualS24,
    device: adbutils.AdbDevice,
    wait,
    state_of,
) -> None:
    virtual_s24.boot_seconds = 2.0
    device.sync.push(b"kept", "/data/local/tmp/kept.txt")
    device.shell(["setprop", "persist.vsys.mark", "1"])
    before_uptime = float(device.shell(["cat", "/proc/uptime"]).split()[0])
    server_pid = device.shell(["pidof", "system_server"])
    adb = [adbutils.adb_path(), "-P", str(adb_server.port), "-s", virtual_s24.serial]
    assert subprocess.run([*adb, "reboot"], capture_output=True, timeout=30).returncode == 0
    wait(lambda: state_of(virtual_s24.serial) != "device", 5)  # the server saw it go
    waited = subprocess.run([*adb, "wait-for-device"], capture_output=True, timeout=60)
    assert waited.returncode == 0
    wait(lambda: device.shell(["getprop", "sys.boot_completed"]) == "1", 30)
    assert float(device.shell(["cat", "/proc/uptime"]).split()[0]) < before_uptime
    assert device.shell(["pidof", "system_server"]) not in ("", server_pid)
    assert device.sync.read_bytes("/data/local/tmp/kept.txt") == b"kept"
    assert device.shell(["getprop", "persist.vsys.mark"]) == "1"
    assert virtual_s24.boots == 2
