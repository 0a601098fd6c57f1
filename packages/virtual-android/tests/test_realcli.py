"""An allowed host build runs as the phone's llama-cli, and nothing else does.

A stand-in "build" (a host script that reports its argv, working directory, environment and the
files it is given) shows what the phone hands a real binary, without the minutes of compiling
llama.cpp; the real llama.cpp CLI runs the same way in devicelab's tests
(tests/plugins/devicelab_virtual/test_real_llama_cli.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import adbutils
import pytest
from virtual_android.device import VirtualS24
from virtual_android.inference.llama_cpp_backend import cpu_has_amx
from virtual_android.inference.llamacli import install_llama_cli
from virtual_android.inference.realcli import allow_host_binaries
from virtual_android.pytest_plugin import AdbRunner, connected

TMP = "/data/local/tmp"
# Reports what it was given as JSON on stdout; sleeps when asked, to be killed.
STAND_IN = f"""#!{sys.executable}
import json, os, sys, time
args = sys.argv[1:]
files = {{}}
for flag in ("-m", "-f"):
    if flag in args:
        path = args[args.index(flag) + 1]
        files[flag] = open(path, "rb").read()[:8].hex() if os.path.exists(path) else None
        print("reading " + path, file=sys.stderr)
print(json.dumps({{"argv": args, "cwd": os.getcwd(), "env": dict(os.environ), "files": files,
    "pid": os.getpid()}}), flush=True)
if "-p" in args and args[args.index("-p") + 1] == "sleep":
    time.sleep(60)
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    path = tmp_path / "llama-completion"
    path.write_text(STAND_IN)
    path.chmod(0o755)
    return path


@pytest.fixture
def phone(adb_server: adbutils.AdbClient, stand_in: Path) -> Iterator[VirtualS24]:
    dev = VirtualS24()
    install_llama_cli(dev)
    allow_host_binaries(dev, [stand_in])
    with connected(adb_server, dev) as phone:
        yield phone


def _push(adb: AdbRunner, serial: str, local: Path, remote: str) -> None:
    done = adb("-s", serial, "push", str(local), remote)
    assert done.returncode == 0, done.stderr
    adb("-s", serial, "shell", "chmod", "755", remote)


def test_the_allowed_build_runs_with_the_phones_files_and_a_literal_argv(
    adb: AdbRunner, phone: VirtualS24, stand_in: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(64))
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("hello\n")
    _push(adb, phone.serial, stand_in, f"{TMP}/llama-cli")
    for local in (model, prompt):
        assert adb("-s", phone.serial, "push", str(local), f"{TMP}/{local.name}").returncode == 0
    canary = tmp_path / "canary"
    run = adb(
        "-s", phone.serial, "shell",
        f"cd {TMP} && ./llama-cli -m model.gguf -f prompt.txt -n 4 -p '$(touch {canary})' -no-cnv",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    # The flags arrive as one argv, with no shell between: the $(...) is text.
    assert seen["argv"][seen["argv"].index("-p") + 1] == f"$(touch {canary})"
    assert not canary.exists()
    assert seen["argv"][seen["argv"].index("-n") + 1] == "4"
    # -m and -f are the phone's files, copied out: the binary reads the pushed bytes.
    assert seen["files"] == {"-m": "4747554603000000", "-f": b"hello\n"[:8].hex()}
    # An empty environment (but for the locale, and llama.cpp's AMX repacking turned off on an
    # AMX host, where it crashes) and a working directory of its own, not the host's.
    allowed = {"LC_CTYPE"} | ({"LLAMA_ARG_REPACK"} if cpu_has_amx() else set())
    assert set(seen["env"]) <= allowed
    assert seen["env"].get("LLAMA_ARG_REPACK", "0") == "0"
    assert seen["cwd"] != os.getcwd()
    # What it logs about its files names the phone's paths, not the host copies.
    assert "reading model.gguf" in run.stderr and "reading prompt.txt" in run.stderr


def test_a_flag_that_could_touch_host_files_is_refused(
    adb: AdbRunner, phone: VirtualS24, stand_in: Path, tmp_path: Path
) -> None:
    _push(adb, phone.serial, stand_in, f"{TMP}/llama-cli")
    target = tmp_path / "log.txt"
    run = adb("-s", phone.serial, "shell", f"{TMP}/llama-cli --log-file {target}")
    assert run.returncode == 1
    assert "error: invalid argument: --log-file" in run.stderr
    assert not target.exists()


def test_other_pushed_bytes_keep_the_imitation(
    adb: AdbRunner, phone: VirtualS24, tmp_path: Path
) -> None:
    fake = tmp_path / "llama-cli"
    fake.write_bytes(b"\x7fELF placeholder for an arm64 llama-cli build\n")
    _push(adb, phone.serial, fake, f"{TMP}/llama-cli")
    run = adb("-s", phone.serial, "shell", f"{TMP}/llama-cli --help")
    assert run.returncode == 0
    assert run.stdout.startswith(f"usage: {TMP}/llama-cli [options]")  # the imitation's usage


def test_killing_the_phones_process_kills_the_build(
    adb: AdbRunner, phone: VirtualS24, stand_in: Path
) -> None:
    _push(adb, phone.serial, stand_in, f"{TMP}/llama-cli")
    dev = adbutils.AdbClient(port=int(os.environ["ANDROID_ADB_SERVER_PORT"])).device(phone.serial)
    stream = dev.shell(f"{TMP}/llama-cli -p sleep", stream=True)
    try:
        line = b""
        while not line.endswith(b"\n"):
            line += stream.read(1)
        host_pid = json.loads(line)["pid"]
        pid = dev.shell("pidof llama-cli").strip()
        assert pid, "the running build is a process of the phone"
        dev.shell(f"kill {pid}")
        deadline = time.monotonic() + 10
        while Path(f"/proc/{host_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{host_pid}").exists()
    finally:
        stream.close()


def test_a_missing_build_is_named(tmp_path: Path) -> None:
    dev = VirtualS24()
    with pytest.raises(FileNotFoundError, match="not an executable file"):
        allow_host_binaries(dev, [tmp_path / "nothing"])
