"""A phone over ADB, through adbutils: shell with exit codes, streaming, push, reconnect.

Every command that carries a value from a scenario or a corpus is built with :func:`quote`,
and long text (prompts) goes to the phone as a pushed file, never on a command line.
Connection failures become :class:`~devicelab.DeviceLostError`, which the scheduler answers
by reconnecting and retrying the trial.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import devicelab
from devicelab import DeviceLostError, MissingDependencyError, TrialTimeout

INSTALL_HINT = "pip install 'devicelab[android]'"
SHELL_V2_STDOUT, SHELL_V2_STDERR, SHELL_V2_EXIT = 1, 2, 3


def quote(argv: Sequence[str]) -> str:
    """One shell command line from ``argv``: every word single-quoted where it needs it."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def adbutils_module() -> Any:
    try:
        import adbutils
    except ImportError:
        raise MissingDependencyError(
            f"Android devices need adbutils and uiautomator2. Install them: {INSTALL_HINT}"
        ) from None
    return adbutils


def client() -> Any:
    """The adb server client (ANDROID_ADB_SERVER_HOST/PORT, as adb itself reads them).

    Starts the server with the adb binary that adbutils ships when none is running.
    """
    adbutils = adbutils_module()
    host = os.environ.get("ANDROID_ADB_SERVER_HOST", "127.0.0.1")
    port = int(os.environ.get("ANDROID_ADB_SERVER_PORT", "5037"))
    c = adbutils.AdbClient(host=host, port=port)
    try:
        c.server_version()
    except Exception:
        if host not in ("127.0.0.1", "localhost"):
            raise devicelab.UsageError(
                f"no adb server answers at {host}:{port}. Start it there (adb start-server) "
                "or unset ANDROID_ADB_SERVER_HOST."
            ) from None
        subprocess.run(
            [adbutils.adb_path(), "-P", str(port), "start-server"],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        c.server_version()
    return c


@dataclass
class ShellResult:
    code: int
    stdout: str
    stderr: str


def _lost(exc: BaseException, serial: str) -> DeviceLostError:
    return DeviceLostError(f"lost the connection to {serial}: {type(exc).__name__}: {exc}")


class Adb:
    """One phone, by serial, through the adb server."""

    def __init__(self, serial: str) -> None:
        self.serial = serial
        self.client = client()
        self.device = self.client.device(serial)
        self._lock = threading.Lock()

    def state(self) -> str | None:
        try:
            for info in self.client.list():
                if info.serial == self.serial:
                    return str(info.state)
        except Exception:
            return None
        return None

    def run(self, argv: Sequence[str] | str, timeout: float = 30.0) -> ShellResult:
        """Run a command (shell v2: separate stdout, stderr and the exit code)."""
        out: list[bytes] = []
        err: list[bytes] = []
        code = self.stream(argv, out.append, err.append, deadline=time.monotonic() + timeout)
        return ShellResult(
            code, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace")
        )

    def check(self, argv: Sequence[str] | str, timeout: float = 30.0) -> str:
        """Run a command that must succeed; its stdout."""
        result = self.run(argv, timeout)
        if result.code != 0:
            cmd = argv if isinstance(argv, str) else quote(argv)
            raise devicelab.EngineError(
                f"`{cmd}` failed on {self.serial} (exit {result.code}): "
                f"{(result.stderr or result.stdout).strip()[-300:]}"
            )
        return result.stdout

    def stream(
        self,
        argv: Sequence[str] | str,
        on_stdout: Callable[[bytes], None],
        on_stderr: Callable[[bytes], None] | None = None,
        deadline: float | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Run a command and hand over its output as it arrives; the exit code.

        ``deadline`` (time.monotonic) bounds the whole command: past it the stream is closed
        (which ends the command on the phone) and :class:`TrialTimeout` is raised. ``stop``
        ends it early, returning -1.
        """
        cmd = argv if isinstance(argv, str) else quote(argv)
        limit = 10.0 if deadline is None else max(0.05, min(10.0, deadline - time.monotonic()))
        try:
            conn = self.device.open_transport(timeout=limit)
            conn.send_command(f"shell,v2,raw:{cmd}")
            conn.check_okay()
        except Exception as exc:
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout(cmd) from exc  # a hung device: the trial's time is up
            raise _lost(exc, self.serial) from exc
        sock: socket.socket = conn.conn
        try:
            buf = b""
            while True:
                if stop is not None and stop.is_set():
                    return -1
                wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if wait <= 0:
                    raise self._timeout(cmd)
                sock.settimeout(wait)
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    raise DeviceLostError(f"{self.serial} closed the shell before it exited")
                buf += chunk
                while len(buf) >= 5:
                    kind, size = buf[0], int.from_bytes(buf[1:5], "little")
                    if len(buf) < 5 + size:
                        break
                    data, buf = buf[5 : 5 + size], buf[5 + size :]
                    if kind == SHELL_V2_STDOUT:
                        on_stdout(data)
                    elif kind == SHELL_V2_STDERR and on_stderr is not None:
                        on_stderr(data)
                    elif kind == SHELL_V2_EXIT:
                        return data[0] if data else 255
        except (TrialTimeout, DeviceLostError):
            raise
        except OSError as exc:
            raise _lost(exc, self.serial) from exc
        finally:
            conn.close()

    def _timeout(self, cmd: str) -> TrialTimeout:
        return TrialTimeout(
            f"`{cmd[:80]}` on {self.serial} did not finish in time (the device may be hung; "
            "scenario key [scenario] timeout_s)"
        )

    def lines(
        self, argv: Sequence[str] | str, on_line: Callable[[str], None], stop: threading.Event
    ) -> int:
        """Stream a long-running command's stdout line by line until ``stop`` is set."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = [""]

        def feed(data: bytes) -> None:
            text = pending[0] + decoder.decode(data)
            *complete, pending[0] = text.split("\n")
            for line in complete:
                on_line(line)

        return self.stream(argv, feed, stop=stop)

    def push(self, local: Path | bytes, remote: str) -> None:
        try:
            self.device.sync.push(local if isinstance(local, bytes) else str(local), remote)
        except Exception as exc:
            raise _lost(exc, self.serial) from exc

    def push_if_changed(self, local: Path, remote: str) -> bool:
        """Push ``local`` unless the phone already has a file with the same MD5; pushed?"""
        result = self.run(["md5sum", remote], timeout=120)
        remote_md5 = result.stdout.split()[0] if result.code == 0 and result.stdout else ""
        if remote_md5 == md5_of(local):
            return False
        self.push(local, remote)
        return True

    def getprops(self) -> dict[str, str]:
        props: dict[str, str] = {}
        for line in self.check(["getprop"]).splitlines():
            if line.startswith("[") and "]: [" in line:
                key, _, value = line[1:].partition("]: [")
                props[key] = value.rstrip("]")
        return props

    def reconnect(self, timeout_s: float) -> None:
        """Wait for the phone to be back; for a TCP serial, ask the adb server to connect."""
        deadline = time.monotonic() + timeout_s
        tcp = ":" in self.serial
        while True:
            if tcp:
                with contextlib.suppress(Exception):  # not back yet: try again below
                    self.client.connect(self.serial, timeout=2)
            if self.state() == "device":
                try:
                    if self.run(["echo", "ok"], timeout=5).stdout.strip() == "ok":
                        return
                except (DeviceLostError, TrialTimeout):
                    pass
            if time.monotonic() > deadline:
                raise DeviceLostError(f"{self.serial} did not come back within {timeout_s:g} s")
            time.sleep(0.25)


_md5_cache: dict[tuple[str, int, float], str] = {}


def md5_of(path: Path) -> str:
    """MD5 of a local file, cached by path, size and mtime (model files are large)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime)
    if key not in _md5_cache:
        h = hashlib.md5()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _md5_cache[key] = h.hexdigest()
    return _md5_cache[key]
