"""Pushed arm64 programs, executed: the phone's own bytes under qemu, inside a sandbox.

A real S24 runs an arm64 ELF that ``adb push`` put in ``/data/local/tmp``; so does this phone
once it is started with execution on (:func:`allow_exec`): the file's own bytes run under
``qemu-aarch64-static -cpu max`` (qemu's user mode, which translates the program's arm64
code and passes its system calls to the host kernel).

qemu's user mode is no sandbox, since those system calls are real. So the program runs inside
bubblewrap: new namespaces for everything (no network, its own PID 1, no IPC with the host), a
root directory that holds only qemu and the phone's files the command line names (each at its
phone path, read-only), a writable working directory that starts empty, an empty environment,
an argv list with no shell between, and resource limits (file size, open files, no core
dumps). Where bubblewrap or qemu is missing, execution stays off and the phone says why in
its log; the phone then answers as before (its emulated tools, or "Exec format error").

What a phone refuses, this one refuses with the words of Android's shell (mksh, checked
against Debian's mksh): an ELF for another machine ("not executable: 64-bit ELF file", status
1), a dynamically linked program whose loader the phone lacks ("No such file or directory",
126; the phone has no bionic to load one with, so every dynamic arm64 program gets it), and a
file without the execute bit (the shell's own check, before this module is asked).

While it runs, the program is the phone process the shell started: in ``ps`` and ``/proc``,
its running time the phone's work (heat, battery, its ``/proc/PID/stat``), its RSS the real
one of the sandbox's processes, and ``kill`` (or a closed stream) ends the whole sandbox.
What it writes in its working directory stays in the sandbox: nothing comes back into the
phone's filesystem (llama.cpp's tools write only to stdout and stderr).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import shutil
import struct
import subprocess
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from ..device import VirtualS24
from ..fs.filesystem import FsError
from ..inference.llm import NotGGUFError, materialize_gguf
from ..inference.realcli import allowed_binary, run_piped
from ..shell.interpreter import CommandContext, CommandHandler

log = logging.getLogger(__name__)

__all__ = ["ElfInfo", "allow_exec", "exec_enabled", "read_elf", "sandbox_problem"]

EM_AARCH64 = 183
PT_INTERP = 3
QEMU = "qemu-aarch64-static"
BWRAP = "bwrap"
INSTALL = "apt-get install qemu-user-static bubblewrap"
# What the sandbox may create: files of 1 GiB at most, 1024 open files, no core dumps.
LIMITS = (
    (resource.RLIMIT_FSIZE, 1 << 30),
    (resource.RLIMIT_NOFILE, 1024),
    (resource.RLIMIT_CORE, 0),
)
_RUNNER = "\0exec"  # the runner's registry name: no command line can name it

_LOCK = threading.Lock()
_ENABLED: weakref.WeakSet[VirtualS24] = weakref.WeakSet()


@dataclass(frozen=True)
class ElfInfo:
    bits: int  # 32 or 64
    machine: int  # e_machine: 183 is AArch64
    interpreter: str | None  # PT_INTERP (a dynamically linked program's loader)


def read_elf(data: bytes) -> ElfInfo | None:
    """The facts of an ELF file's header that decide whether a phone runs it; ``None`` when
    ``data`` is not ELF (or too short to be one)."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] not in (1, 2):
        return None
    bits = 32 if data[4] == 1 else 64
    endian = "<" if data[5] == 1 else ">"
    (machine,) = struct.unpack_from(endian + "H", data, 18)
    interp = None
    if bits == 64:
        (phoff,) = struct.unpack_from(endian + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 54)
        for i in range(phnum):
            at = phoff + i * phentsize
            if at + 40 > len(data):
                break
            (ptype,) = struct.unpack_from(endian + "I", data, at)
            if ptype == PT_INTERP:
                (offset,) = struct.unpack_from(endian + "Q", data, at + 8)
                (size,) = struct.unpack_from(endian + "Q", data, at + 32)
                interp = data[offset : offset + size].rstrip(b"\0").decode("utf-8", "replace")
                break
    return ElfInfo(bits, machine, interp)


def sandbox_problem() -> str | None:
    """Why pushed programs cannot run here (a tool missing, or bubblewrap refused to start),
    or ``None`` when they can."""
    missing = [tool for tool in (QEMU, BWRAP) if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (install: {INSTALL})"
    probe = subprocess.run(
        [BWRAP, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"bubblewrap cannot make a sandbox here: {probe.stderr.strip()[-200:]}"
    return None


def allow_exec(device: VirtualS24) -> str | None:
    """Let ``device`` execute pushed arm64 programs; ``None`` when it now does, else why not
    (also written to the phone's log, and execution stays off)."""
    problem = sandbox_problem()
    if problem is not None:
        why = f"pushed programs will not run: {problem}"
        device.logs.write("virtual-android", why, priority="W")
        log.warning("virtual S24: %s", why)
        return problem
    with _LOCK:
        _ENABLED.add(device)
    # Registered as a command so that running one is a phone process (ps, kill, /proc).
    device.add_command(_RUNNER, _run)
    device.executors.append(_resolve)
    return None


def exec_enabled(device: VirtualS24) -> bool:
    with _LOCK:
        return device in _ENABLED


def _resolve(
    device: VirtualS24, path: str, data: bytes
) -> tuple[CommandHandler | None, str] | None:
    """The shell asks before running the file ``path``: the runner, mksh's refusal, or
    ``None`` (not an ELF: the shell goes on as before)."""
    elf = read_elf(data[:4096])
    if elf is None or not exec_enabled(device):
        return None
    if allowed_binary(device, lambda: data) is not None:
        return None  # an allow-listed host build: realcli runs its host copy
    if elf.machine != EM_AARCH64 or elf.bits != 64:
        return None, f"not executable: {elf.bits}-bit ELF file"
    if elf.interpreter is not None:
        return None, "No such file or directory"
    return device.commands_snapshot()[_RUNNER], ""


def _run(ctx: CommandContext) -> int:
    path = ctx.fs.normpath(ctx.argv[0], ctx.cwd)
    with tempfile.TemporaryDirectory(prefix="virtual-android-exec-") as tmp:
        root = Path(tmp) / "root"
        argv = _sandbox_argv(ctx, path, root)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp,
            env={},
            preexec_fn=_limits,
        )
        return run_piped(ctx, proc, {}, _tree_rss_kb)


def _limits() -> None:
    for which, value in LIMITS:
        resource.setrlimit(which, (value, value))


def _sandbox_argv(ctx: CommandContext, path: str, root: Path) -> list[str]:
    """bubblewrap's command line: the program, and each phone file its argv names, at their
    phone paths in an otherwise empty, read-only root; the working directory writable."""
    binds: list[str] = []
    for phone_path in [path, *_named_files(ctx)]:
        host = _host_copy(ctx, phone_path, root, program=phone_path == path)
        if host is not None:
            _mount_point(root, phone_path, is_dir=False)
            binds += ["--ro-bind", str(host), phone_path]
    _mount_point(root, ctx.cwd, is_dir=True)
    work = root.parent / "cwd"
    work.mkdir()
    # The working directory is writable, except "/" (adb shell's default), which is
    # read-only on a phone too, and whose bind would hide everything else.
    writable = ["--bind", str(work), ctx.cwd] if ctx.cwd != "/" else []
    for name in ("proc", "dev"):
        _mount_point(root, "/" + name, is_dir=True)
    _mount_point(root, "/.qemu", is_dir=False)
    qemu = shutil.which(QEMU) or QEMU
    return [
        BWRAP,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--ro-bind", str(root), "/",
        "--ro-bind", qemu, "/.qemu",
        *writable,
        *binds,
        "--proc", "/proc",
        "--dev", "/dev",
        "--chdir", ctx.cwd,
        "--",
        "/.qemu", "-cpu", "max", path, *ctx.argv[1:],
    ]  # fmt: skip


def _named_files(ctx: CommandContext) -> list[str]:
    """The phone's files that the arguments name (absolute, or relative to the working
    directory): the only files of the phone the program sees."""
    found = []
    for arg in ctx.argv[1:]:
        if not arg or arg.startswith("-"):
            continue
        phone_path = ctx.fs.normpath(arg, ctx.cwd)
        with contextlib.suppress(FsError):
            if not ctx.fs.stat(phone_path).is_dir:
                found.append(phone_path)
    return found


def _host_copy(ctx: CommandContext, phone_path: str, root: Path, program: bool) -> Path | None:
    try:
        data = ctx.fs.read(phone_path)
    except FsError:
        return None
    with contextlib.suppress(NotGGUFError):
        return materialize_gguf(data)  # a model is written out once, shared by content
    host = root.parent / "files" / phone_path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_bytes(data)
    host.chmod(0o755 if program else 0o644)
    return host


def _mount_point(root: Path, phone_path: str, *, is_dir: bool) -> None:
    target = root / phone_path.lstrip("/")
    if is_dir:
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)


def _tree_rss_kb(pid: int) -> int | None:
    """The resident memory of ``pid`` and every process below it (bubblewrap, its init, qemu
    running the program)."""
    total, seen, todo = 0, False, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    seen = True
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
    return total if seen else None
