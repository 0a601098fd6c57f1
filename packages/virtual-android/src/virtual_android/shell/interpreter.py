"""A small POSIX-like shell over emulated commands.

Nothing here ever reaches the host: words are parsed and expanded by this package and
every command is a Python function registered on the device; a command substitution
(`$(...)`, backquotes) runs in a subshell over those same commands.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Protocol

from ..fs.filesystem import FsError, VirtualFS
from .builtins import (
    BUILTINS,
    SH,
    BreakLoop,
    ContinueLoop,
    ExitShell,
    LoopControl,
    ReturnFromFunction,
)
from .expansion import expand_pattern, expand_string, expand_word
from .jobs import run_pipeline, spawn_background, wait_jobs
from .lexer import ShellSyntaxError, tokenize
from .parser import (
    AndOr,
    CaseClause,
    CommandList,
    ForLoop,
    FunctionDef,
    Group,
    IfClause,
    Node,
    Parser,
    Pipeline,
    SimpleCommand,
    WhileLoop,
    parse,
)
from .redirects import RedirectError, apply_redirects
from .shellio import (
    BufferOutput,
    BytesInput,
    CancelToken,
    Input,
    NullOutput,
    Output,
    ShellCancelled,
)

if TYPE_CHECKING:
    from ..device import VirtualS24

__all__ = [
    "DEFAULT_ENV",
    "IO",
    "SH",
    "CommandContext",
    "CommandHandler",
    "ExitShell",
    "Interpreter",
    "LoopControl",
    "ShellState",
    "ShellSyntaxError",
]

log = logging.getLogger(__name__)

SYSTEM_BIN_DIRS = (
    "/system/bin",
    "/system/xbin",
    "/vendor/bin",
    "/product/bin",
    "/apex/com.android.runtime/bin",
)


@dataclass(eq=False)
class CommandContext:
    """Everything an emulated command may use.

    argv, env and cwd describe the invocation; stdin is an `Input` (read, readline,
    lines, read_chunk), stdout/stderr are `Output`s whose write() accepts str or bytes
    and streams at once. `cancelled` is set when the client closes the stream or the
    process is killed: long-running handlers must poll it (or use sleep(), which raises
    ShellCancelled). Writes after cancellation raise ShellCancelled too.
    """

    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdin: Input
    stdout: Output
    stderr: Output
    cancelled: CancelToken
    device: VirtualS24
    shell: Interpreter
    pid: int = 0

    @property
    def name(self) -> str:
        return posixpath.basename(self.argv[0]) if self.argv else ""

    @property
    def fs(self) -> VirtualFS:
        return self.device.fs

    def write(self, data: bytes | str) -> None:
        self.stdout.write(data)

    def error(self, data: bytes | str) -> None:
        self.stderr.write(data)

    def stdin_bytes(self) -> bytes:
        return self.stdin.read()

    def sleep(self, seconds: float) -> None:
        """Sleep in real time; raises ShellCancelled when cancelled meanwhile."""
        if seconds <= 0:
            self.cancelled.check()
            return
        if self.cancelled.wait(seconds):
            raise ShellCancelled()

    def path(self, name: str) -> str:
        return VirtualFS.normpath(name, self.cwd)


class CommandHandler(Protocol):
    """An emulated command: handler(ctx) -> exit code."""

    def __call__(self, ctx: CommandContext, /) -> int: ...


@dataclass
class IO:
    stdin: Input
    stdout: Output
    stderr: Output

    def copy(self) -> IO:
        return IO(self.stdin, self.stdout, self.stderr)


@dataclass
class ShellState:
    vars: dict[str, str]
    exported: set[str]
    cwd: str = "/"
    status: int = 0
    pid: int = 0
    args: list[str] = field(default_factory=list)
    functions: dict[str, Node] = field(default_factory=dict)
    errexit: bool = False  # set -e

    def copy(self) -> ShellState:
        """The state a subshell, pipeline stage or background job starts from."""
        return ShellState(
            dict(self.vars),
            set(self.exported),
            self.cwd,
            self.status,
            self.pid,
            list(self.args),
            dict(self.functions),
            self.errexit,
        )


DEFAULT_ENV = {
    "PATH": (
        "/product/bin:/apex/com.android.runtime/bin:/apex/com.android.art/bin:/system_ext/bin:"
        "/system/bin:/system/xbin:/odm/bin:/vendor/bin:/vendor/xbin"
    ),
    "HOME": "/",
    "SHELL": SH,
    "USER": "shell",
    "LOGNAME": "shell",
    "HOSTNAME": "e1s",
    "TMPDIR": "/data/local/tmp",
    "ANDROID_DATA": "/data",
    "ANDROID_ROOT": "/system",
    "ANDROID_STORAGE": "/storage",
    "EXTERNAL_STORAGE": "/sdcard",
    "ANDROID_ASSETS": "/system/app",
    "BOOTCLASSPATH": (
        "/apex/com.android.art/javalib/core-oj.jar:/apex/com.android.art/javalib/core-libart.jar"
    ),
}


class Interpreter:
    """Runs scripts for one shell session of the virtual device."""

    def __init__(
        self,
        device: VirtualS24,
        token: CancelToken,
        state: ShellState | None = None,
    ) -> None:
        self.device = device
        self.token = token
        if state is None:
            env = dict(DEFAULT_ENV)
            state = ShellState(vars=env, exported=set(env), cwd="/", pid=0)
        self.state = state
        # Background jobs (`cmd &`): `$!` is the last one's pid and `wait` joins them, so
        # `cmd & PID=$!; kill -INT $PID; wait` lets cmd finish (adbutils' screenrecord).
        self.jobs: list[threading.Thread] = []
        self.last_job_pid = 0
        self._tests = 0
        self._stderr: Output = NullOutput()
        self.substitution_status = 0

    @property
    def fs(self) -> VirtualFS:
        return self.device.fs

    # -- entry points ----------------------------------------------------------
    def run(self, script: str, io: IO) -> int:
        """Parse and run a script a line at a time, as mksh does; returns its status."""
        try:
            parser = Parser(tokenize(script))
            while (line := parser.parse_line()) is not None:
                self.run_list(line, io, self.state)
        except ShellSyntaxError as exc:
            io.stderr.write(f"{SH}: {exc}\n")
            self.state.status = 1
        except (ExitShell, ReturnFromFunction) as exc:
            self.state.status = exc.code & 0xFF
        except LoopControl:
            pass
        return self.state.status

    # -- execution -------------------------------------------------------------
    def run_list(self, node: CommandList, io: IO, state: ShellState) -> int:
        status = 0
        for item, background in node.items:
            self.token.check()
            if background:
                spawn_background(self, item, io, state)
                status = 0
            else:
                status = self.run_node(item, io, state)
                # An && || list checks its own last command; a negated pipeline never fails.
                if not isinstance(item, AndOr) and not (isinstance(item, Pipeline) and item.negate):
                    self._check_errexit(status, state)
            state.status = status
        return status

    @contextlib.contextmanager
    def tested(self) -> Iterator[None]:
        """While a status is being tested (if/while conditions, all but the last command of
        && ||, a negated pipeline) a failure does not end the shell under set -e."""
        self._tests += 1
        try:
            yield
        finally:
            self._tests -= 1

    def _check_errexit(self, status: int, state: ShellState) -> None:
        if status and state.errexit and not self._tests:
            raise ExitShell(status)

    def run_node(self, node: Node, io: IO, state: ShellState) -> int:
        self.token.check()
        self._stderr = io.stderr  # where a $(...) expanded on the way reports its errors
        if node.redirects and not isinstance(node, SimpleCommand):
            try:
                io = apply_redirects(self, node.redirects, io, state)
            except RedirectError as exc:
                io.stderr.write(f"{SH}: {exc}\n")
                return 1
        if isinstance(node, SimpleCommand):
            return self.run_simple(node, io, state)
        if isinstance(node, Pipeline):
            return run_pipeline(self, node, io, state)
        if isinstance(node, AndOr):
            with self.tested():
                status = self.run_node(node.first, io, state)
            for index, (op, nxt) in enumerate(node.rest):
                if (op == "&&" and status == 0) or (op == "||" and status != 0):
                    if index < len(node.rest) - 1:
                        with self.tested():
                            status = self.run_node(nxt, io, state)
                    else:
                        status = self.run_node(nxt, io, state)
                        self._check_errexit(status, state)
                state.status = status
            return status
        if isinstance(node, CommandList):
            return self.run_list(node, io, state)
        if isinstance(node, WhileLoop):
            return self.run_while(node, io, state)
        if isinstance(node, ForLoop):
            return self.run_for(node, io, state)
        if isinstance(node, IfClause):
            for condition, body in node.branches:
                with self.tested():
                    passed = self.run_list(condition, io, state) == 0
                if passed:
                    return self.run_list(body, io, state)
            if node.otherwise is not None:
                return self.run_list(node.otherwise, io, state)
            return 0
        if isinstance(node, Group):
            if node.subshell:
                sub = state.copy()
                try:
                    return self.run_list(node.body, io, sub)
                except ExitShell as exc:
                    return exc.code & 0xFF
            return self.run_list(node.body, io, state)
        if isinstance(node, CaseClause):
            subject = expand_string(self, node.subject, state)
            for patterns, body in node.arms:
                if any(fnmatchcase(subject, expand_pattern(self, p, state)) for p in patterns):
                    return self.run_list(body, io, state)
            return 0
        if isinstance(node, FunctionDef):
            state.functions[node.name] = node.body
            return 0
        raise AssertionError(f"unknown node {node!r}")

    def run_while(self, node: WhileLoop, io: IO, state: ShellState) -> int:
        status = 0
        while True:
            self.token.check()
            with self.tested():
                cond = self.run_list(node.condition, io, state)
            if (cond == 0) == node.until:
                break
            status, broke = self._run_body(node.body, io, state, status)
            if broke:
                break
        return status

    def run_for(self, node: ForLoop, io: IO, state: ShellState) -> int:
        if node.words is None:
            values = list(state.args)
        else:
            values = []
            for word in node.words:
                values.extend(expand_word(self, word, state))
        status = 0
        for value in values:
            self.token.check()
            state.vars[node.var] = value
            status, broke = self._run_body(node.body, io, state, status)
            if broke:
                break
        return status

    def _run_body(
        self, body: CommandList, io: IO, state: ShellState, status: int
    ) -> tuple[int, bool]:
        """One pass of a loop body: (its status, whether `break` ended the loop). `break N`
        and `continue N` for an outer loop travel on with one level less."""
        try:
            return self.run_list(body, io, state), False
        except BreakLoop as exc:
            if exc.levels > 1:
                raise BreakLoop(exc.levels - 1) from None
            return status, True
        except ContinueLoop as exc:
            if exc.levels > 1:
                raise ContinueLoop(exc.levels - 1) from None
            return status, False

    # -- simple commands -------------------------------------------------------
    def run_simple(self, node: SimpleCommand, io: IO, state: ShellState) -> int:
        self.substitution_status = 0
        try:
            argv: list[str] = []
            for word in node.words:
                argv.extend(expand_word(self, word, state))
            assigns = [(name, expand_string(self, value, state)) for name, value in node.assigns]
        except ShellSyntaxError as exc:
            io.stderr.write(f"{SH}: {exc}\n")
            return 1
        try:
            cmd_io = apply_redirects(self, node.redirects, io, state) if node.redirects else io
        except RedirectError as exc:
            io.stderr.write(f"{SH}: {exc}\n")
            return 1
        except ShellSyntaxError as exc:
            io.stderr.write(f"{SH}: {exc}\n")
            return 1
        if not argv:
            for name, value in assigns:
                state.vars[name] = value
            return self.substitution_status  # X=$(false) fails as false does
        return self.execute(argv, cmd_io, state, dict(assigns))

    def execute(
        self, argv: list[str], io: IO, state: ShellState, assigns: dict[str, str] | None = None
    ) -> int:
        """Run one command (builtin, emulated or script) with its arguments."""
        self.token.check()
        name = argv[0]
        function = state.functions.get(name)
        if function is not None:
            return self._call(function, argv, io, state)
        builtin = BUILTINS.get(name)
        if builtin is not None:
            return builtin(self, argv, io, state)
        handler, problem = self.resolve(name, state)
        if handler is None:
            if problem == "script":
                return self.run_script(name, argv[1:], io, state)
            io.stderr.write(f"{SH}: {name}: {problem}\n")
            # mksh: a missing command is 127; 126 is "found, can't run"; an ELF file it
            # will not run ("not executable: 64-bit ELF file") is 1.
            if problem.startswith("not executable"):
                return 1
            return 127 if problem == "inaccessible or not found" else 126
        env = {k: v for k, v in state.vars.items() if k in state.exported}
        if assigns:
            env.update(assigns)
        return self.device.run_command(handler, argv, env, state.cwd, io, self.token, self)

    def resolve(self, name: str, state: ShellState) -> tuple[CommandHandler | None, str]:
        """Find a handler; on failure the second item says why (sh's message)."""
        registry = self.device.commands_snapshot()
        if "/" not in name:
            handler = registry.get(name)
            if handler is not None:
                return handler, ""
            return None, "inaccessible or not found"
        path = self.fs.normpath(name, state.cwd)
        base = posixpath.basename(path)
        directory = posixpath.dirname(path)
        if path in registry:
            return registry[path], ""
        if directory in SYSTEM_BIN_DIRS and base in registry:
            return registry[base], ""
        try:
            info = self.fs.stat(path)
        except FsError:
            return None, "inaccessible or not found"
        if info.is_dir:
            return None, "can't execute: Is a directory"
        if not info.mode & 0o111:
            return None, "can't execute: Permission denied"
        try:
            data = self.fs.read(path)
        except FsError:
            data = b""
        for executor in self.device.executors:
            found = executor(self.device, path, data)
            if found is not None:
                return found
        if base in registry:
            return registry[base], ""
        head = data[:2]
        if head == b"#!":
            return None, "script"
        return None, "can't execute: Exec format error"

    def _call(self, body: Node, argv: list[str], io: IO, state: ShellState) -> int:
        saved = state.args
        state.args = argv[1:]
        try:
            return self.run_node(body, io, state)
        except ReturnFromFunction as exc:
            return exc.code
        finally:
            state.args = saved

    def run_child(
        self, script: str, args: list[str], io: IO, state: ShellState, errexit: bool = False
    ) -> int:
        """Run a script in a child shell (`sh -c`, a script file): a new process, so it gets
        a copy of the variables with its own positional arguments and none of the options
        or functions, and nothing it sets comes back."""
        sub = state.copy()
        sub.args = list(args)
        sub.functions = {}
        sub.errexit = errexit
        return self.fork(self.token, sub).run(script, io)

    def wait_jobs(self) -> None:
        wait_jobs(self)

    def substitute(self, script: str, state: ShellState) -> str:
        """$(script): its output; its errors go where the command's do. Its status is
        what a command line of assignments alone returns."""
        out = BufferOutput()
        self.substitution_status = self.fork(self.token, state.copy()).run(
            script, IO(BytesInput(b""), out, self._stderr)
        )
        return out.getvalue().decode("utf-8", "surrogateescape")

    def fork(self, token: CancelToken, state: ShellState) -> Interpreter:
        return Interpreter(self.device, token, state)

    def run_script(self, path: str, args: list[str], io: IO, state: ShellState) -> int:
        try:
            text = self.fs.read(path, state.cwd).decode("utf-8", "surrogateescape")
        except FsError as exc:
            io.stderr.write(f"{SH}: {path}: {exc}\n")
            return 127
        return self.run_child(text, args, io, state)

    # -- interactive -----------------------------------------------------------
    def interactive(self, io: IO, prompt: bool = True) -> int:
        """A line-at-a-time session (adb shell without a command); prompts only on a pty."""
        status = 0
        pending = ""
        if prompt:
            io.stdout.write(self._prompt())
        for raw in _split_lines(io.stdin):
            pending += raw.decode("utf-8", "surrogateescape") + "\n"
            try:
                tree = parse(pending)
            except ShellSyntaxError as exc:
                if any(w in str(exc) for w in ("no closing", "unmatched", "EOF", "unclosed")):
                    if prompt:
                        io.stdout.write("> ")
                    continue
                io.stderr.write(f"{SH}: {exc}\n")
                pending = ""
                status = 1
            else:
                pending = ""
                try:
                    status = self.run_list(tree, io, self.state)
                except ExitShell as exc:
                    return exc.code
                except LoopControl:
                    pass
            if prompt:
                io.stdout.write(self._prompt())
        return status

    def _prompt(self) -> str:
        return f"e1s:{self.state.cwd} $ "


def _split_lines(stdin: Input) -> Iterator[bytes]:
    buffer = b""
    while True:
        chunk = stdin.read_chunk()
        if not chunk:
            if buffer.strip():
                yield buffer
            return
        buffer += chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line
