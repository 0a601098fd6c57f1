"""The shell's own commands: the ones that change its state (cd, export, set, read, exit,
break), run other commands (sh, exec, command, source) or answer about them (type, which)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import VirtualAndroidError
from ..fs.filesystem import FsError
from .lexer import NAME_RE
from .parser import parse

if TYPE_CHECKING:
    from .interpreter import IO, Interpreter, ShellState

SH = "/system/bin/sh"


class ExitShell(VirtualAndroidError):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class LoopControl(VirtualAndroidError):
    def __init__(self, levels: int) -> None:
        super().__init__(levels)
        self.levels = levels


class BreakLoop(LoopControl):
    pass


class ContinueLoop(LoopControl):
    pass


class ReturnFromFunction(VirtualAndroidError):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _cd(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    target = argv[1] if len(argv) > 1 else state.vars.get("HOME", "/")
    path = sh.fs.normpath(target, state.cwd)
    if not sh.fs.is_dir(path):
        problem = "No such file or directory" if not sh.fs.exists(path) else "Not a directory"
        io.stderr.write(f"{SH}: cd: {path}: {problem}\n")
        return 2
    state.cwd = path
    return 0


def _pwd(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    io.stdout.write(state.cwd + "\n")
    return 0


def _export(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    if len(argv) == 1 or argv[1:] == ["-p"]:
        for key in sorted(state.exported):
            if key in state.vars:
                io.stdout.write(f"export {key}={_sh_quote(state.vars[key])}\n")
        return 0
    for item in argv[1:]:
        name, eq, value = item.partition("=")
        if not NAME_RE.fullmatch(name):
            io.stderr.write(f"{SH}: export: {item}: is not an identifier\n")
            return 1
        if eq:
            state.vars[name] = value
        state.exported.add(name)
    return 0


def _unset(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    for name in argv[1:]:
        if name in ("-v", "-f"):
            continue
        state.vars.pop(name, None)
        state.exported.discard(name)
    return 0


def _exit(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    code = state.status
    if len(argv) > 1:
        try:
            code = int(argv[1])
        except ValueError:
            io.stderr.write(f"{SH}: exit: {argv[1]}: bad number\n")
            code = 1
    raise ExitShell(code & 0xFF)


def _read(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    names = [a for a in argv[1:] if not a.startswith("-")]
    raw = "-r" in argv[1:]
    line_bytes = io.stdin.readline()
    if not line_bytes:
        for name in names or ["REPLY"]:
            state.vars[name] = ""
        return 1
    line = line_bytes.decode("utf-8", "surrogateescape").rstrip("\n")
    if not raw:
        line = line.replace("\\", "")
    names = names or ["REPLY"]
    if names == ["REPLY"]:
        state.vars["REPLY"] = line
        return 0
    pieces = line.split(None, len(names) - 1)
    for index, name in enumerate(names):
        state.vars[name] = pieces[index] if index < len(pieces) else ""
    return 0


def _break(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    raise BreakLoop(int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 1)


def _continue(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    raise ContinueLoop(int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 1)


def _sh(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    args = argv[1:]
    errexit = False
    while args and args[0] in ("-e", "-x", "-u", "-l", "-i"):
        errexit = errexit or args[0] == "-e"
        args = args[1:]
    if args and args[0] == "-c":
        if len(args) < 2:
            io.stderr.write(f"{SH}: -c: option requires an argument\n")
            return 1
        return sh.run_child(args[1], args[3:], io, state, errexit)
    if args:
        return sh.run_script(args[0], args[1:], io, state)
    script = io.stdin.read().decode("utf-8", "surrogateescape")
    return sh.run_child(script, state.args, io, state)


def _exec(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    if len(argv) == 1:
        return 0
    raise ExitShell(sh.execute(argv[1:], io, state))


def _command(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    args = argv[1:]
    if args and args[0] in ("-v", "-V"):
        return _which(sh, ["which", *args[1:]], io, state)
    if not args:
        return 0
    return sh.execute(args, io, state)


def _type(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    status = 0
    for name in argv[1:]:
        if name in BUILTINS:
            io.stdout.write(f"{name} is a shell builtin\n")
        elif sh.resolve(name, state)[0] is not None:
            io.stdout.write(f"{name} is {_where(name)}\n")
        else:
            io.stderr.write(f"{name} not found\n")
            status = 1
    return status


def _where(name: str) -> str:
    return name if "/" in name else f"/system/bin/{name}"


def _which(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    status = 0
    for name in argv[1:]:
        if name in BUILTINS and argv[0] != "which":
            io.stdout.write(name + "\n")
        elif sh.resolve(name, state)[0] is not None:
            io.stdout.write(_where(name) + "\n")
        else:
            status = 1
    return status


def _set(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    if len(argv) == 1:
        for key in sorted(state.vars):
            io.stdout.write(f"{key}={_sh_quote(state.vars[key])}\n")
        return 0
    args = argv[1:]
    while args and args[0][:1] in ("-", "+") and args[0] != "--":
        flag = args.pop(0)
        if flag[1:] == "o" and args:
            if args.pop(0) == "errexit":
                state.errexit = flag[0] == "-"
        elif "e" in flag:
            state.errexit = flag[0] == "-"
    if args and args[0] == "--":
        state.args = args[1:]
    return 0


def _return(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    raise ReturnFromFunction(int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else state.status)


def _shift(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    count = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 1
    state.args = state.args[count:]
    return 0


def _colon(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    return 0


def _wait(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    sh.wait_jobs()
    return 0


def _source(sh: Interpreter, argv: list[str], io: IO, state: ShellState) -> int:
    if len(argv) < 2:
        return 0
    try:
        text = sh.fs.read(argv[1], state.cwd).decode("utf-8", "surrogateescape")
    except FsError as exc:
        io.stderr.write(f"{SH}: {argv[1]}: {exc}\n")
        return 1
    tree = parse(text)
    return sh.run_list(tree, io, state)


def _sh_quote(value: str) -> str:
    if value and re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


BuiltinFn = Callable[["Interpreter", list[str], "IO", "ShellState"], int]

BUILTINS: dict[str, BuiltinFn] = {
    "cd": _cd,
    "pwd": _pwd,
    "export": _export,
    "unset": _unset,
    "exit": _exit,
    "read": _read,
    "break": _break,
    "continue": _continue,
    "sh": _sh,
    "exec": _exec,
    "command": _command,
    "type": _type,
    "which": _which,
    "set": _set,
    "shift": _shift,
    "return": _return,
    ":": _colon,
    "wait": _wait,
    "trap": _colon,
    "source": _source,
    ".": _source,
}
