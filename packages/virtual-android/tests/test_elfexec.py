"""Pushed arm64 programs run on the virtual S24 under qemu, in a sandbox, and only those.

The programs are real static arm64 ELF files, compiled here with Debian's cross compiler;
the refusals are the words of mksh (Android's /system/bin/sh), as Debian's mksh prints them
for the same files."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import adbutils
import pytest
from virtual_android.device import VirtualS24
from virtual_android.pytest_plugin import AdbRunner, connected
from virtual_android.system.elfexec import allow_exec, read_elf, sandbox_problem

TMP = "/data/local/tmp"
CC = "aarch64-linux-gnu-gcc"
INSTALL = "apt-get install gcc-aarch64-linux-gnu qemu-user-static bubblewrap"

HELLO = r"""
#include <stdio.h>
#include <unistd.h>
#include <string.h>
int main(int argc, char **argv) {
    char cwd[256];
    getcwd(cwd, sizeof cwd);
    printf("cwd=%s\n", cwd);
    for (int i = 1; i < argc; i++) printf("arg=%s\n", argv[i]);
    if (argc > 1 && strcmp(argv[1], "sleep") == 0) { fflush(stdout); sleep(60); }
    if (argc > 2 && strcmp(argv[1], "cat") == 0) {
        FILE *f = fopen(argv[2], "r"); char buf[64] = {0};
        if (f) { fgets(buf, sizeof buf, f); printf("read=%s", buf); }
    }
    return 3;
}
"""

ESCAPE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    /* argv[1]: a host file outside the phone; argv[2]: a host TCP port */
    printf("read_host=%s\n", open(argv[1], O_RDONLY) >= 0 ? "yes" : "no");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[2]));
    a.sin_addr.s_addr = htonl(0x7f000001);
    printf("connect=%s\n", s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0 ? "yes" : "no");
    printf("write_outside=%s\n", open("/data/escaped", O_WRONLY | O_CREAT, 0644) >= 0 ? "yes" : "no");
    printf("write_root=%s\n", open("/escaped", O_WRONLY | O_CREAT, 0644) >= 0 ? "yes" : "no");
    printf("write_here=%s\n", open("here.txt", O_WRONLY | O_CREAT, 0644) >= 0 ? "yes" : "no");
    return 0;
}
"""


@pytest.fixture(scope="session")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which(CC) is None:
        pytest.skip(f"no arm64 cross compiler: {INSTALL}")
    problem = sandbox_problem()
    if problem is not None:
        pytest.skip(f"pushed programs cannot run here: {problem}")
    out = tmp_path_factory.mktemp("arm64")
    built = {}
    for name, source, flags in (
        ("hello", HELLO, ["-static"]),
        ("escape", ESCAPE, ["-static"]),
        ("dynamic", HELLO, []),
    ):
        (out / f"{name}.c").write_text(source)
        subprocess.run(
            [CC, *flags, "-O1", str(out / f"{name}.c"), "-o", str(out / name)], check=True
        )
        built[name] = out / name
    return built


@pytest.fixture
def phone(adb_server: adbutils.AdbClient) -> Iterator[VirtualS24]:
    dev = VirtualS24()
    assert allow_exec(dev) is None
    with connected(adb_server, dev) as phone:
        yield phone


def _push(adb: AdbRunner, serial: str, local: Path, remote: str, mode: str = "755") -> None:
    done = adb("-s", serial, "push", str(local), remote)
    assert done.returncode == 0, done.stderr
    adb("-s", serial, "shell", "chmod", mode, remote)


def test_elf_headers_are_read_for_what_a_phone_checks(programs: dict[str, Path]) -> None:
    static = read_elf(programs["hello"].read_bytes())
    dynamic = read_elf(programs["dynamic"].read_bytes())
    host = read_elf(Path("/bin/true").read_bytes())
    assert static is not None and static.machine == 183 and static.interpreter is None
    assert dynamic is not None and dynamic.interpreter == "/lib/ld-linux-aarch64.so.1"
    assert host is not None and host.machine != 183
    assert read_elf(b"#!/system/bin/sh\n" + bytes(64)) is None


def test_a_pushed_arm64_program_runs_its_own_bytes(
    adb: AdbRunner, phone: VirtualS24, programs: dict[str, Path], tmp_path: Path
) -> None:
    _push(adb, phone.serial, programs["hello"], f"{TMP}/hello")
    note = tmp_path / "note.txt"
    note.write_text("pushed words\n")
    assert adb("-s", phone.serial, "push", str(note), f"{TMP}/note.txt").returncode == 0
    run = adb("-s", phone.serial, "shell", f"cd {TMP} && ./hello cat note.txt '$(id)'; echo rc=$?")
    # Its working directory is the phone's, the phone file it names is there to read, the
    # argv is literal, and its exit status reaches the shell.
    assert run.stdout.splitlines() == [
        f"cwd={TMP}",
        "arg=cat",
        "arg=note.txt",
        "arg=$(id)",
        "read=pushed words",
        "rc=3",
    ], run.stderr


def test_the_sandbox_holds(
    adb: AdbRunner, phone: VirtualS24, programs: dict[str, Path], tmp_path: Path
) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("host only")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[object] = []
    listener.settimeout(15)
    waiter = threading.Thread(target=lambda: accepted.append(_accept(listener)), daemon=True)
    waiter.start()
    port = listener.getsockname()[1]
    _push(adb, phone.serial, programs["escape"], f"{TMP}/escape")
    run = adb("-s", phone.serial, "shell", f"cd {TMP} && ./escape {secret} {port}")
    listener.close()
    waiter.join(timeout=20)
    assert run.stdout.splitlines() == [
        "read_host=no",
        "connect=no",
        "write_outside=no",
        "write_root=no",
        "write_here=yes",  # its own working directory, which stays in the sandbox
    ], run.stderr
    assert accepted == [None]
    assert not Path("/data/escaped").exists() and not Path("/escaped").exists()
    # The phone keeps running, and nothing came back into its filesystem.
    listing = adb("-s", phone.serial, "shell", f"ls {TMP}")
    assert listing.returncode == 0 and "here.txt" not in listing.stdout


def _accept(listener: socket.socket) -> object:
    try:
        conn, _ = listener.accept()
    except OSError:
        return None
    conn.close()
    return "connected"


@pytest.mark.parametrize(
    ("program", "mode", "message", "status"),
    [
        ("host", "755", "not executable: 64-bit ELF file", 1),
        ("dynamic", "755", "No such file or directory", 126),
        ("hello", "644", "can't execute: Permission denied", 126),
    ],
)
def test_what_a_phone_refuses_is_refused_in_its_words(
    adb: AdbRunner,
    phone: VirtualS24,
    programs: dict[str, Path],
    program: str,
    mode: str,
    message: str,
    status: int,
) -> None:
    local = Path("/bin/true") if program == "host" else programs[program]
    _push(adb, phone.serial, local, f"{TMP}/prog", mode)
    run = adb("-s", phone.serial, "shell", f"{TMP}/prog; echo rc=$?")
    assert f"{TMP}/prog: {message}" in run.stderr
    assert run.stdout.strip() == f"rc={status}"


def test_a_running_program_is_a_phone_process_and_dies_with_kill(
    adb: AdbRunner, phone: VirtualS24, programs: dict[str, Path]
) -> None:
    _push(adb, phone.serial, programs["hello"], f"{TMP}/hello")
    dev = adbutils.AdbClient(port=int(os.environ["ANDROID_ADB_SERVER_PORT"])).device(phone.serial)
    stream = dev.shell(f"{TMP}/hello sleep", stream=True)
    try:
        seen = b""
        while b"arg=sleep\n" not in seen:
            byte = stream.read(1)
            assert byte, f"the program ended early: {seen!r}"
            seen += byte
        pid = dev.shell("pidof hello").strip()
        assert pid, "the running program is a process of the phone"
        qemu = _host_qemu_pids()
        assert qemu, "the program runs under qemu on the host"
        dev.shell(f"kill {pid}")
        deadline = time.monotonic() + 10
        while _host_qemu_pids() & qemu and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _host_qemu_pids() & qemu
        assert not dev.shell("pidof hello").strip()
    finally:
        stream.close()


def _host_qemu_pids() -> set[int]:
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0] == b"/.qemu" and f"{TMP}/hello".encode() in cmd:
                found.add(int(proc.name))
    return found


def test_without_exec_the_phone_answers_as_before(
    adb: AdbRunner, adb_server: adbutils.AdbClient, programs: dict[str, Path]
) -> None:
    with connected(adb_server, VirtualS24()) as phone:
        _push(adb, phone.serial, programs["hello"], f"{TMP}/hello")
        run = adb("-s", phone.serial, "shell", f"{TMP}/hello; echo rc=$?")
    assert "Exec format error" in run.stderr and run.stdout.strip() == "rc=126"
