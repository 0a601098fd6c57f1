"""The real llama.cpp CLI as the phone's ``llama-cli``: an allow-listed host build.

The emulated tool (:mod:`.llamacli`) imitates llama.cpp's output; a parser tested only against
it is tested against our own reading of llama.cpp. So a phone can be given host builds of the
real tool (``llama-completion``, built from the same llama.cpp sources as the host engine) with
:func:`allow_host_binaries`. When the file a shell runs as ``llama-cli`` or
``llama-completion`` has exactly the bytes of an allowed build (the client pushed that build,
as it would push its arm64 build to a phone), the phone runs the allowed host file (never the
pushed bytes), so what the client reads is llama.cpp's real output with real timings.
Anything else pushed under those names keeps the imitation.

What still keeps "nothing sent to the device runs on the host":

- Only files the phone's owner allowed run, and only the host copy of them; the pushed file is
  compared by SHA-256, never executed.
- Arguments are an argv list handed to the binary with no shell between (``$(...)`` stays
  text). Only flags that read or write nothing on the host are passed (the ones the emulated
  tool knows); ``-m`` and ``-f`` name files of the virtual filesystem, which are copied out to
  host files the binary reads. Any other flag gets llama.cpp's ``invalid argument`` answer.
- The binary runs in an empty working directory of its own with an empty environment, and
  stdin comes from the phone's shell.

While it runs, its running time is the phone's work, as the emulated tool's is (the heat model,
the battery, and its process's CPU time in ``/proc/PID/stat``), and the phone process's RSS is
the binary's real one. Host paths it prints (the model and prompt copies) are rewritten to the
phone's paths, so the output reads as it would on the phone. Kept as llama.cpp prints it on
this host, and not rewritten to look like a phone's: the ``build:`` line (x86-64 compiler and
target) and ``system_info``'s CPU features, which describe the host the numbers were really
made on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from ..device import VirtualS24
from ..errors import VirtualAndroidError
from ..fs.filesystem import FsError
from ..shell.interpreter import CommandContext
from .llama_cpp_backend import cpu_has_amx
from .llm import NotGGUFError, materialize_gguf

__all__ = [
    "PASSED_FLAGS",
    "allow_host_binaries",
    "allowed_binary",
    "pump_log",
    "pump_out",
    "pump_stdin",
    "run_host_binary",
    "wait_process",
]

# Flags handed to the binary with their value as given: none of them names a host file.
PASSED_FLAGS: dict[str, bool] = {  # flag -> takes a value
    **dict.fromkeys(("-n", "--predict", "--n-predict", "-c", "--ctx-size"), True),
    **dict.fromkeys(("-t", "--threads", "-tb", "--threads-batch"), True),
    **dict.fromkeys(("-b", "--batch-size", "-ub", "--ubatch-size"), True),
    **dict.fromkeys(("--temp", "-s", "--seed", "-p", "--prompt"), True),
    **dict.fromkeys(("-sys", "--system-prompt", "-ngl", "--gpu-layers", "--n-gpu-layers"), True),
    **dict.fromkeys(("-cnv", "--conversation", "-no-cnv", "--no-conversation"), False),
    **dict.fromkeys(("-st", "--single-turn", "--no-display-prompt", "--simple-io"), False),
    **dict.fromkeys(
        ("-e", "--escape", "--no-escape", "--no-warmup", "-h", "--help", "--version"), False
    ),
}
# Flags whose value is a file of the phone, copied out for the binary to read.
FILE_FLAGS = frozenset({"-m", "--model", "-f", "--file"})
_POLL_S = 0.05
_RSS_EVERY_S = 0.2

_LOCK = threading.Lock()
_ALLOWED: weakref.WeakKeyDictionary[VirtualS24, dict[str, Path]] = weakref.WeakKeyDictionary()


def allow_host_binaries(device: VirtualS24, binaries: Iterable[str | os.PathLike[str]]) -> None:
    """Let ``device`` run these host builds of llama.cpp's CLI when a client pushes them.

    Each must be an executable file; it is identified by its SHA-256, taken now."""
    table: dict[str, Path] = {}
    for binary in binaries:
        path = Path(binary).resolve()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise FileNotFoundError(f"{path} is not an executable file")
        table[_sha256(path.read_bytes())] = path
    with _LOCK:
        _ALLOWED.setdefault(device, {}).update(table)


def allowed_binary(device: VirtualS24, content: Callable[[], bytes]) -> Path | None:
    """The host build whose bytes ``content()`` gives, if ``device`` allows one (read only
    when it allows any)."""
    with _LOCK:
        table = dict(_ALLOWED.get(device, {}))
    return table.get(_sha256(content())) if table else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Refused(VirtualAndroidError):
    """An argument the host binary is not given; str() is what the phone prints."""


def _host_argv(ctx: CommandContext, binary: Path, work: Path) -> tuple[list[str], dict[str, str]]:
    """The binary's argv, with the phone's files copied into ``work``, and the host paths
    to rewrite back to the phone's in what it prints."""
    argv, rewrite = [str(binary)], {}
    args = ctx.argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in FILE_FLAGS:
            if i + 1 >= len(args):
                argv.append(arg)  # the binary says what is missing, in its own words
                break
            name = args[i + 1]
            host = _copy_out(ctx, arg, name, work)
            rewrite[str(host)] = name
            argv += [arg, str(host)]
            i += 2
        elif arg in PASSED_FLAGS:
            argv.append(arg)
            if PASSED_FLAGS[arg] and i + 1 < len(args):
                argv.append(args[i + 1])
                i += 1
            i += 1
        else:
            raise _Refused(f"error: invalid argument: {arg}\n")
    return argv, rewrite


def _copy_out(ctx: CommandContext, flag: str, name: str, work: Path) -> Path:
    try:
        data = ctx.fs.read(name, ctx.cwd)
    except FsError:
        # Not copied: the binary is given a path that does not exist and says so itself.
        return work / "missing" / Path(name).name
    if flag in ("-m", "--model"):
        with contextlib.suppress(NotGGUFError):
            return materialize_gguf(data)  # shared by content: a model is copied out once
    path = work / f"file{len(list(work.iterdir()))}"
    path.write_bytes(data)
    return path


# Empty but for one host fix: on a CPU with Intel AMX, llama.cpp's AMX weight repacking crashes
# under some hypervisors (SIGSEGV at ldtilecfg, as the host engine would: see
# llama_cpp_backend). A phone has no AMX, so turning it off changes nothing a phone would do.
_HOST_ENV: dict[str, str] = {"LLAMA_ARG_REPACK": "0"} if cpu_has_amx() else {}


def run_host_binary(ctx: CommandContext, binary: Path) -> int:
    """Run the allowed host ``binary`` as the phone's process ``ctx.pid``; its exit status."""
    with tempfile.TemporaryDirectory(prefix="virtual-android-cli-") as tmp:
        work = Path(tmp)
        try:
            argv, rewrite = _host_argv(ctx, binary, work)
        except _Refused as exc:
            ctx.error(str(exc))
            return 1
        rewrite[str(work)] = ctx.cwd
        # An allow-listed binary and an argv list: no shell ever sees the arguments.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=work,
            env=_HOST_ENV,
        )
        return run_piped(ctx, proc, rewrite)


def run_piped(
    ctx: CommandContext,
    proc: subprocess.Popen[bytes],
    rewrite: dict[str, str],
    rss: Callable[[int], int | None] | None = None,
) -> int:
    """Pump the phone's stdin into ``proc`` and its output (stderr with ``rewrite``) to the
    phone's streams until it exits; killed if the wait ends first (an interrupt, a kill)."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    pumps = [
        threading.Thread(target=pump_stdin, args=(ctx, proc.stdin), daemon=True),
        threading.Thread(target=pump_out, args=(proc.stdout, ctx.write), daemon=True),
        threading.Thread(target=pump_log, args=(proc.stderr, ctx.error, rewrite), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        return wait_process(ctx, proc, rss)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pump in pumps[1:]:
            pump.join(timeout=5)


def wait_process(
    ctx: CommandContext,
    proc: subprocess.Popen[bytes],
    rss: Callable[[int], int | None] | None = None,
) -> int:
    """Wait for ``proc``, keeping the phone's process RSS at the binary's real one (``rss``
    of its pid: its own by default); a kill of the phone's process (or a closed stream) kills
    the binary."""
    rss = rss or _rss_kb
    next_rss = 0.0
    last = time.monotonic()
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            status = proc.wait(timeout=_POLL_S)
            # A signal's death (-N) reads as the shell's 128+N, as a phone's sh reports it.
            return 128 - status if status < 0 else status
        if ctx.cancelled.is_set():
            proc.kill()
            proc.wait()
            return 137
        now = time.monotonic()
        # As the emulated tool: its running time is the phone's work (heat, battery, and this
        # process's CPU in /proc/PID/stat, so telemetry tells the engine from other load).
        ctx.device.add_work(now - last, 1.0, ctx.pid)
        last = now
        if now >= next_rss:
            next_rss = now + _RSS_EVERY_S
            kb = rss(proc.pid)
            if kb is not None:
                with contextlib.suppress(KeyError):  # the phone's process ended meanwhile
                    ctx.device.set_process_rss(ctx.pid, kb)


def _rss_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def pump_stdin(ctx: CommandContext, sink: IO[bytes]) -> None:
    with contextlib.suppress(Exception):  # the binary exited, or the stream was cancelled
        while True:
            line = ctx.stdin.readline()
            if not line:
                break
            sink.write(line)
            sink.flush()
    with contextlib.suppress(OSError):
        sink.close()


def pump_out(source: IO[bytes], write: Callable[[bytes], None]) -> None:
    """Copy the binary's stdout as it comes: tokens are streamed, so what is there is written
    at once (a client measures the first token's time from it)."""
    fd = source.fileno()
    while chunk := os.read(fd, 65536):
        write(chunk)


def pump_log(source: IO[bytes], write: Callable[[bytes], None], rewrite: dict[str, str]) -> None:
    """Copy the binary's log (stderr) line by line, with host paths rewritten to the phone's
    (longest first, so the work directory does not cut a file path inside it in two)."""
    pairs = sorted(((h.encode(), p.encode()) for h, p in rewrite.items()), key=lambda x: -len(x[0]))
    for line in iter(source.readline, b""):
        for host, phone in pairs:
            line = line.replace(host, phone)
        write(line)
