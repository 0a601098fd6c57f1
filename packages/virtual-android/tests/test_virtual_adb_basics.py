"""The virtual S24 as the real adb binary and adbutils see it: identity, shell, exit codes."""

from __future__ import annotations

import re
import subprocess

import adbutils
import pytest
from virtual_android.device import VirtualS24

SERIAL_RE = re.compile(r"^127\.0\.0\.1:(\d+)$")


def test_devices_l_shows_the_s24(adb, virtual_s24: VirtualS24) -> None:
    result = adb("devices", "-l")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith(virtual_s24.serial))
    assert line.split()[1] == "device"
    assert "model:SM_S921B" in line
    assert "product:e1sxxx" in line
    assert "device:e1s" in line


def test_serial_and_port(virtual_s24: VirtualS24) -> None:
    match = SERIAL_RE.match(virtual_s24.serial)
    assert match and int(match.group(1)) == virtual_s24.port
    assert not 5555 <= virtual_s24.port <= 5585


def test_emulator_ports_are_refused() -> None:
    with pytest.raises(ValueError):
        VirtualS24(port=5555)


def test_context_manager_and_idempotent_stop() -> None:
    with VirtualS24() as dev:
        assert dev.port > 0
    dev.stop()
    dev.stop()


def test_getprop_through_adb_binary(adb, virtual_s24: VirtualS24) -> None:
    result = adb("-s", virtual_s24.serial, "shell", "getprop", "ro.product.model")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "SM-S921B"


def test_getprop_through_adbutils(device: adbutils.AdbDevice) -> None:
    assert device.getprop("ro.product.manufacturer") == "samsung"
    assert device.getprop("ro.board.platform") == "s5e9945"
    assert device.getprop("ro.soc.model") == "s5e9945"
    assert device.getprop("ro.build.version.release") == "14"
    assert device.getprop("ro.build.version.sdk") == "34"
    assert device.getprop("ro.product.cpu.abi") == "arm64-v8a"
    assert device.prop.model == "SM-S921B"
    listing = device.shell("getprop")
    assert "[ro.product.model]: [SM-S921B]" in listing.splitlines()
    assert re.search(r"^\[ro\.build\.fingerprint\]: \[samsung/e1sxxx/e1s:14/.+\]$", listing, re.M)


def test_exit_codes_through_adb_shell_v2(adb, virtual_s24: VirtualS24) -> None:
    ok = adb("-s", virtual_s24.serial, "shell", "echo hi")
    assert (ok.returncode, ok.stdout) == (0, "hi\n")
    assert adb("-s", virtual_s24.serial, "shell", "exit 3").returncode == 3
    assert adb("-s", virtual_s24.serial, "shell", "false").returncode == 1
    both = adb("-s", virtual_s24.serial, "shell", "echo out; echo err >&2; exit 42")
    assert (both.returncode, both.stdout, both.stderr) == (42, "out\n", "err\n")


def test_exit_codes_through_adbutils_shell2(device: adbutils.AdbDevice) -> None:
    v1 = device.shell2("echo hello; false")  # v1 path: appends '; echo X4EXIT:$?'
    assert (v1.returncode, v1.output) == (1, "hello\n")
    v2 = device.shell2("echo out; echo err 1>&2; exit 5", v2=True)
    assert (v2.returncode, v2.stdout, v2.stderr) == (5, "out\n", "err\n")
    assert device.shell2(["test", "-d", "/sdcard"], v2=True).returncode == 0


def test_unknown_command_is_127_not_found(
    adb, device: adbutils.AdbDevice, virtual_s24: VirtualS24
) -> None:
    result = device.shell2("frobnicate --now", v2=True)
    assert result.returncode == 127
    assert result.stdout == ""
    assert result.stderr == "/system/bin/sh: frobnicate: inaccessible or not found\n"
    binary = adb("-s", virtual_s24.serial, "shell", "frobnicate")
    assert binary.returncode == 127
    assert "not found" in binary.stderr


def test_exec_out_is_binary_clean(adb, device: adbutils.AdbDevice, virtual_s24: VirtualS24) -> None:
    payload = bytes(range(256)) * 64
    device.sync.push(payload, "/data/local/tmp/bytes.bin")
    stream = device.open_transport()
    stream.send_command("exec:cat /data/local/tmp/bytes.bin")
    stream.check_okay()
    assert stream.read_until_close(encoding=None) == payload
    text = adb("-s", virtual_s24.serial, "exec-out", "echo", "a\nb")
    assert text.stdout == "a\nb\n"


def test_stdin_reaches_the_command(adb, virtual_s24: VirtualS24) -> None:
    result = adb(
        "-s",
        virtual_s24.serial,
        "shell",
        "cat > /data/local/tmp/in.txt; wc -l /data/local/tmp/in.txt",
        input="one\ntwo\nthree\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "3"


def test_identity_commands(device: adbutils.AdbDevice) -> None:
    assert device.shell("id").startswith("uid=2000(shell) gid=2000(shell)")
    assert device.shell("whoami") == "shell"
    assert device.window_size() == (1080, 2340)
    assert device.shell("wm density") == "Physical density: 416"
    assert re.fullmatch(r"\d{10}", device.shell("date +%s"))
    assert "load average:" in device.shell("uptime")
    assert device.shell("settings get system screen_brightness") == "128"
    device.shell("settings put system screen_brightness 77")
    assert device.shell("settings get system screen_brightness") == "77"
    assert device.shell("settings get global no_such_key") == "null"


def test_input_events_are_recorded(device: adbutils.AdbDevice, virtual_s24: VirtualS24) -> None:
    device.keyevent("KEYCODE_HOME")
    device.click(100, 200)
    device.swipe(10, 20, 30, 40, 0.2)
    device.send_keys("hello world")
    device.shell("input keyevent --longpress 26")
    kinds = [(e.kind, e.args) for e in virtual_s24.input_events]
    assert kinds[0] == ("keyevent", (3,))
    assert kinds[1] == ("tap", (100.0, 200.0))
    assert kinds[2][0] == "swipe" and kinds[2][1][:4] == (10.0, 20.0, 30.0, 40.0)
    assert kinds[3] == ("text", ("hello world",))
    assert virtual_s24.input_events[4].longpress and kinds[4] == ("keyevent", (26,))
    bad = device.shell2("input keyevent NOT_A_KEY", v2=True)
    assert bad.returncode != 0


def test_interactive_shell_reads_commands_from_stdin(adb, virtual_s24: VirtualS24) -> None:
    script = "echo one\ncd /sdcard\npwd\nfor i in 1 2\ndo echo $i\ndone\nexit 4\necho never\n"
    result = adb("-s", virtual_s24.serial, "shell", input=script)
    assert (result.stdout, result.returncode) == ("one\n/sdcard\n1\n2\n", 4)


def test_pty_shell_translates_newlines(
    adb_server: adbutils.AdbClient, virtual_s24: VirtualS24
) -> None:
    command = [adbutils.adb_path(), "-P", str(adb_server.port), "-s", virtual_s24.serial]
    result = subprocess.run(
        [*command, "shell", "-tt", "echo a; echo b"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert result.stdout == b"a\r\nb\r\n"
