"""The device's shell language, streaming loops and quote safety, through adbutils."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import adbutils
import pytest
from virtual_android.device import VirtualS24
from virtual_android.shell.interpreter import CommandContext

LOOP = "while true; do cat /sys/class/thermal/thermal_zone*/temp; echo ---; sleep 0.05; done"


def _sh(device: adbutils.AdbDevice, script: str) -> adbutils.ShellReturn:
    return device.shell2(script, v2=True)


def _loops_running(device: adbutils.AdbDevice) -> list[str]:
    # The [t]rue trick keeps this ps's own command line out of the match.
    out = device.shell("ps -A -o PID,ARGS | grep 'while [t]rue'")
    return [line for line in out.splitlines() if line.strip()]


def test_streaming_while_loop_stops_when_the_client_closes(
    device: adbutils.AdbDevice, wait
) -> None:
    conn = device.shell(LOOP, stream=True)
    conn.conn.settimeout(10)
    received = b""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        chunk = conn.conn.recv(4096)
        assert chunk, "the loop ended by itself"
        received += chunk
    assert _loops_running(device), "the loop should be running on the device"
    conn.close()
    lines = received.decode().splitlines()
    separators = lines.count("---")
    assert separators >= 3
    temps = [line for line in lines if line != "---"]
    assert all(t.isdigit() and 20_000 < int(t) < 110_000 for t in temps[: separators * 9])
    wait(lambda: not _loops_running(device), 5)


def test_kill_stops_a_running_loop(device: adbutils.AdbDevice, wait) -> None:
    conn = device.shell("while true; do echo tick; sleep 0.05; done", stream=True)
    conn.conn.settimeout(10)
    assert conn.conn.recv(100).startswith(b"tick")
    pid = _loops_running(device)[0].split()[0]
    assert _sh(device, f"kill {pid}").returncode == 0
    rest = conn.read_until_close(encoding=None)  # returns once the device closes the stream
    assert rest.count(b"tick") < 100
    wait(lambda: not _loops_running(device), 5)
    assert _sh(device, "kill 1").returncode == 1


QUOTED_PAYLOADS = [
    'it\'s "quoted"',
    "$(touch /data/local/tmp/pwned1)",
    "`touch /data/local/tmp/pwned2`",
    "a; touch /data/local/tmp/pwned3",
    "line1\nline2; touch /data/local/tmp/pwned4\n",
    "$HOME ${PATH} $? && || | > /data/local/tmp/pwned5 * ~",
    "back\\slash and tab\t and 'mixed' \"quotes\" $(echo `id`)",
]


@pytest.mark.parametrize("payload", QUOTED_PAYLOADS)
def test_quoted_arguments_arrive_literally(device: adbutils.AdbDevice, payload: str) -> None:
    # adbutils quotes list arguments with shlex.quote: the device must undo exactly that.
    assert device.shell(["echo", payload], rstrip=False) == payload + "\n"
    assert device.shell(["printf", "%s", payload], rstrip=False) == payload
    leftovers = device.shell("ls /data/local/tmp")
    assert "pwned" not in leftovers


def test_command_substitution_runs_on_the_phone_only(
    device: adbutils.AdbDevice, tmp_path: Path
) -> None:
    result = _sh(device, 'echo $(echo hi) "`echo there`" "$(printf \'a  b\')"')
    assert (result.returncode, result.stdout) == (0, "hi there a  b\n")
    # What it runs is an emulated command like any other: a host path is never touched.
    _sh(device, f"echo $(touch {tmp_path}/probe) `touch {tmp_path}/probe2`")
    assert list(tmp_path.iterdir()) == []


def test_quoting_through_adb_binary(adb, virtual_s24: VirtualS24) -> None:
    result = adb("-s", virtual_s24.serial, "shell", "echo", "'a  b;c'", '"$(echo x)"', "'`y`'")
    assert result.stdout == "a  b;c x `y`\n"


SCRIPTS: list[tuple[str, str, int]] = [
    ("echo a; echo b", "a\nb\n", 0),
    ("true && echo yes || echo no", "yes\n", 0),
    ("false && echo yes || echo no", "no\n", 0),
    ("false; echo $?", "1\n", 0),
    ("X=1; echo $X ${X} \"$X\" '$X'", "1 1 1 $X\n", 0),
    ("X=outer; X=inner sh -c 'echo $X'; echo $X", "outer\nouter\n", 0),
    ("export Y=exp; sh -c 'echo $Y'", "exp\n", 0),
    ('echo "a\\"b" \'c\\d\' e\\ f', 'a"b c\\d e f\n', 0),
    ("echo one\necho two", "one\ntwo\n", 0),
    (
        "echo hi > /data/local/tmp/f; echo ho >> /data/local/tmp/f; cat /data/local/tmp/f",
        "hi\nho\n",
        0,
    ),
    ("cat /nope 2>/dev/null; echo $?", "1\n", 0),
    ("cat /nope 2>&1 | grep -c 'No such file'", "1\n", 0),
    ("printf 'x\\ny\\nz\\n' | grep -v y | wc -l", "2\n", 0),
    ("printf '1\\n2\\n3\\n4\\n' | head -n 2; printf '1\\n2\\n3\\n' | tail -1", "1\n2\n3\n", 0),
    (
        "for z in /sys/class/thermal/thermal_zone*; do cat $z/type; done | head -3",
        "BIG\nMID\nLITTLE\n",
        0,
    ),
    ("for w in a 'b c' d; do echo \"[$w]\"; done", "[a]\n[b c]\n[d]\n", 0),
    ("i=0; while [ $i -lt 3 ]; do echo $i; i=$((i+1)); done", "0\n1\n2\n", 0),
    ("n=0; while true; do n=$((n+1)); if [ $n -ge 4 ]; then break; fi; done; echo $n", "4\n", 0),
    ("if test -d /sdcard; then echo dir; else echo no; fi", "dir\n", 0),
    ("[ -f /proc/meminfo ] && [ ! -e /nope ] && echo ok", "ok\n", 0),
    (
        "mkdir -p /data/local/tmp/a/b && touch /data/local/tmp/a/b/c && ls /data/local/tmp/a/b",
        "c\n",
        0,
    ),
    ("rm /data/local/tmp/nothing", "", 1),
    (
        "touch /data/local/tmp/f; chmod 755 /data/local/tmp/f && stat -c %a /data/local/tmp/f",
        "755\n",
        0,
    ),
    ("exit 7", "", 7),
    ("echo ${UNSET:-fallback}", "fallback\n", 0),
    ("cd /data/local/tmp && pwd", "/data/local/tmp\n", 0),
    (
        "ls -d /sys/devices/system/cpu/cpufreq/policy*",
        "\n".join(f"/sys/devices/system/cpu/cpufreq/policy{n}" for n in (0, 4, 7, 9)) + "\n",
        0,
    ),
    (
        "cat /sys/devices/system/cpu/cpufreq/policy*/scaling_max_freq",
        "1950000\n2600000\n2900000\n3207000\n",
        0,
    ),
    ("echo 'a\\tb'; echo -E 'a\\tb'; echo -n x; echo 'y\\c'; echo z", "a\tb\na\\tb\nxyz\n", 0),
    ("id -u; id -un; id -g", "2000\nshell\n2000\n", 0),
    ("echo $(", "", 1),
    ("echo 'unterminated", "", 1),
]


@pytest.mark.parametrize(("script", "stdout", "status"), SCRIPTS)
def test_shell_language(device: adbutils.AdbDevice, script: str, stdout: str, status: int) -> None:
    result = _sh(device, script)
    assert (result.stdout, result.returncode) == (stdout, status), result.stderr


def test_streaming_pipeline_into_grep(device: adbutils.AdbDevice) -> None:
    conn = device.shell(
        "while true; do echo keep; echo drop; sleep 0.02; done | grep keep", stream=True
    )
    conn.conn.settimeout(10)
    data = b""
    while data.count(b"\n") < 5:
        chunk = conn.conn.recv(100)
        assert chunk
        data += chunk
    conn.close()
    assert set(data.decode().split()) == {"keep"}


def test_head_ends_an_endless_pipeline(device: adbutils.AdbDevice) -> None:
    result = _sh(device, "while true; do echo y; done | head -n 3; echo done")
    assert (result.stdout, result.returncode) == ("y\ny\ny\ndone\n", 0)


def test_sleep_uses_real_time(device: adbutils.AdbDevice) -> None:
    start = time.monotonic()
    assert _sh(device, "sleep 0.3").returncode == 0
    assert time.monotonic() - start >= 0.3


def test_add_command_streams_and_stops_when_closed(
    device: adbutils.AdbDevice, virtual_s24: VirtualS24, wait
) -> None:
    stopped = threading.Event()
    seen: dict[str, object] = {}

    def fake_llama(ctx: CommandContext) -> int:
        seen["argv"] = ctx.argv
        seen["env"] = ctx.env.get("LD_LIBRARY_PATH")
        seen["stdin"] = ctx.stdin_bytes() if "--stdin" in ctx.argv else b""
        try:
            n = 0
            while not ctx.cancelled.is_set():
                ctx.stdout.write(f"token {n}\n")
                n += 1
                ctx.sleep(0.02)
            return 0
        finally:
            stopped.set()

    virtual_s24.add_command("llama-cli", fake_llama)
    conn = device.shell(
        "LD_LIBRARY_PATH=/data/local/tmp llama-cli -m 'model q4.gguf' -n 5", stream=True
    )
    conn.conn.settimeout(10)
    data = b""
    while data.count(b"\n") < 3:
        data += conn.conn.recv(100)
    assert data.startswith(b"token 0\ntoken 1\n")
    assert device.shell("pidof llama-cli").strip().isdigit()
    conn.close()
    assert stopped.wait(5)
    assert seen["argv"] == ["llama-cli", "-m", "model q4.gguf", "-n", "5"]
    assert seen["env"] == "/data/local/tmp"
    wait(lambda: device.shell2("pidof llama-cli").returncode == 1, 5)


def test_extension_command_exit_code_and_stderr(
    device: adbutils.AdbDevice, virtual_s24: VirtualS24
) -> None:
    def failing(ctx: CommandContext) -> int:
        ctx.stderr.write("bad model\n")
        return 3

    virtual_s24.add_command("/data/local/tmp/runner", failing)
    result = _sh(device, "/data/local/tmp/runner --x; echo after $?")
    assert (result.stdout, result.stderr, result.returncode) == ("after 3\n", "bad model\n", 0)
