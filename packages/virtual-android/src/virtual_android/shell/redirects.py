"""Redirections: where a command's stdin, stdout and stderr go (files of the virtual
filesystem, /dev/null, another descriptor)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ..errors import VirtualAndroidError
from ..fs.filesystem import FsError, VirtualFS
from .expansion import expand_string
from .parser import Redirect
from .shellio import BytesInput, CancelToken, NullOutput, Output

if TYPE_CHECKING:
    from .interpreter import IO, Interpreter, ShellState


class RedirectError(VirtualAndroidError):
    pass


class _FileOutput(Output):
    def __init__(self, fs: VirtualFS, path: str, token: CancelToken) -> None:
        self._fs = fs
        self._path = path
        self._token = token

    def write_bytes(self, data: bytes) -> None:
        self._token.check()
        with contextlib.suppress(FsError):
            self._fs.write(self._path, data, append=True)


def apply_redirects(sh: Interpreter, redirects: list[Redirect], io: IO, state: ShellState) -> IO:
    result = io.copy()
    for redirect in redirects:
        target = expand_string(sh, redirect.target, state)
        op = redirect.op
        if op == "<<":
            if redirect.fd == 0:
                result.stdin = BytesInput(target.encode("utf-8", "surrogateescape"))
            continue
        if op in (">&", "<&"):
            if target == "-":
                if redirect.fd == 0:
                    result.stdin = BytesInput(b"")
                else:
                    _set_out(result, redirect.fd, NullOutput())
                continue
            if target.isdigit():
                source = int(target)
                if redirect.fd == 0:
                    continue
                chosen = result.stderr if source == 2 else result.stdout
                _set_out(result, redirect.fd, chosen)
                continue
            op = ">"
        if op in (">", ">>"):
            output = _open_output(sh, target, op == ">>", state)
            if redirect.fd == -2:
                result.stdout = output
                result.stderr = output
            else:
                _set_out(result, redirect.fd, output)
        elif op in ("<", "<>"):
            if redirect.fd != 0:
                continue
            if target == "/dev/null":
                result.stdin = BytesInput(b"")
                continue
            try:
                result.stdin = BytesInput(sh.fs.read(target, state.cwd))
            except FsError as exc:
                raise RedirectError(f"{target}: open: {exc}") from None
    return result


def _set_out(io: IO, fd: int, output: Output) -> None:
    if fd == 1:
        io.stdout = output
    elif fd == 2:
        io.stderr = output


def _open_output(sh: Interpreter, target: str, append: bool, state: ShellState) -> Output:
    if target in ("/dev/null", "/dev/zero"):
        return NullOutput()
    if target == "/dev/stderr":
        return NullOutput()
    try:
        if not append or not sh.fs.exists(target, state.cwd):
            sh.fs.write(target, b"", cwd=state.cwd)
    except FsError as exc:
        raise RedirectError(f"{target}: create: {exc}") from None
    return _FileOutput(sh.fs, sh.fs.normpath(target, state.cwd), sh.token)
