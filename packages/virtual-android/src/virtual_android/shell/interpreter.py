"""A small POSIX-like shell over emulated commands.

Nothing here ever reaches the host: words are parsed and expanded by this module and
every command is a Python function registered on the device. Command substitution
(`$(...)` and backticks) is deliberately not implemented: unquoted it is a syntax
error, quoted it is literal text.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import VirtualAndroidError
from ..fs.filesystem import FsError, VirtualFS
from .shellio import (
    BrokenPipe,
    BytesInput,
    CancelToken,
    Input,
    NullOutput,
    Output,
    Pipe,
    ShellCancelled,
)

if TYPE_CHECKING:
    from ..device import VirtualS24

log = logging.getLogger(__name__)

SH = "/system/bin/sh"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
RESERVED = {
    "while",
    "until",
    "do",
    "done",
    "for",
    "in",
    "if",
    "then",
    "elif",
    "else",
    "fi",
    "{",
    "}",
    "!",
}
_TERMINATORS = {"do", "done", "then", "elif", "else", "fi", "}"}
SYSTEM_BIN_DIRS = (
    "/system/bin",
    "/system/xbin",
    "/vendor/bin",
    "/product/bin",
    "/apex/com.android.runtime/bin",
)


class ShellSyntaxError(VirtualAndroidError):
    pass


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


# --------------------------------------------------------------------------------------
# Command context: what every emulated command (builtin or extension) receives.
# --------------------------------------------------------------------------------------
class CommandContext:
    """Everything an emulated command may use.

    argv, env and cwd describe the invocation; stdin is an `Input` (read, readline,
    lines, read_chunk), stdout/stderr are `Output`s whose write() accepts str or bytes
    and streams at once. `cancelled` is set when the client closes the stream or the
    process is killed: long-running handlers must poll it (or use sleep(), which raises
    ShellCancelled). Writes after cancellation raise ShellCancelled too.
    """

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        stdin: Input,
        stdout: Output,
        stderr: Output,
        cancelled: CancelToken,
        device: VirtualS24,
        shell: Interpreter,
    ) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.cancelled = cancelled
        self.device = device
        self.shell = shell
        self.pid = 0

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


# --------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    kind: str  # lit | qlit | var | qvar | arith
    text: str
    op: str = ""  # for ${NAME<op>arg}
    arg: str = ""


@dataclass
class Word:
    parts: list[Part] = field(default_factory=list)

    def plain(self) -> str | None:
        """The text if the word is one unquoted literal (keywords, names)."""
        if len(self.parts) == 1 and self.parts[0].kind == "lit":
            return self.parts[0].text
        return None

    def literal_text(self) -> str:
        return "".join(p.text for p in self.parts if p.kind in ("lit", "qlit"))


@dataclass(frozen=True)
class Token:
    kind: str  # WORD | OP | REDIR | EOF
    value: str = ""
    word: Word | None = None
    fd: int = -1


_SPECIAL_VARS = set("?$#!@*-0123456789")
_BRACED_RE = r"([A-Za-z_][A-Za-z0-9_]*|[?$#!0-9])(?:(:?[-=+?])(.*))?"


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    n = len(text)
    word: Word | None = None
    lit = ""

    def flush_lit() -> None:
        nonlocal lit
        if lit:
            assert word is not None
            word.parts.append(Part("lit", lit))
            lit = ""

    def end_word() -> None:
        nonlocal word
        flush_lit()
        if word is not None:
            tokens.append(Token("WORD", word=word))
            word = None

    def start_word() -> Word:
        nonlocal word
        if word is None:
            word = Word()
        return word

    def read_var(pos: int, quoted: bool) -> tuple[Part | None, int]:
        """Parse after a `$` at text[pos]; returns (part or None for a literal $, new pos)."""
        kind = "qvar" if quoted else "var"
        if pos >= n:
            return None, pos
        ch = text[pos]
        if ch == "{":
            end = text.find("}", pos + 1)
            if end < 0:
                raise ShellSyntaxError("missing '}'")
            inner = text[pos + 1 : end]
            match = re.fullmatch(_BRACED_RE, inner, re.S)
            if not match:
                raise ShellSyntaxError(f"${{{inner}}}: bad substitution")
            return Part(kind, match.group(1), match.group(2) or "", match.group(3) or ""), end + 1
        if ch == "(":
            if text.startswith("((", pos) and not quoted:
                depth = 0
                j = pos
                while j < n:
                    if text[j] == "(":
                        depth += 1
                    elif text[j] == ")":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                if j >= n or not text.startswith("))", j - 1) or text[j - 1] != ")":
                    raise ShellSyntaxError("unterminated $((")
                return Part("arith", text[pos + 2 : j - 1]), j + 1
            if quoted:
                return None, pos
            raise ShellSyntaxError("'$(' unexpected (command substitution is not supported)")
        if ch in _SPECIAL_VARS:
            return Part(kind, ch), pos + 1
        match = _NAME_RE.match(text, pos)
        if match:
            return Part(kind, match.group(0)), match.end()
        return None, pos

    while i < n:
        ch = text[i]
        if ch in " \t":
            end_word()
            i += 1
            continue
        if ch == "\\":
            if i + 1 < n and text[i + 1] == "\n":
                i += 2
                continue
            start_word()
            flush_lit()
            if i + 1 < n:
                assert word is not None
                word.parts.append(Part("qlit", text[i + 1]))
                i += 2
            else:
                lit += "\\"
                i += 1
            continue
        if ch == "#" and word is None:
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch == "\n":
            end_word()
            tokens.append(Token("OP", "\n"))
            i += 1
            continue
        if ch in ";&|()":
            end_word()
            two = text[i : i + 2]
            if two in ("&&", "||", ";;"):
                if two == ";;":
                    raise ShellSyntaxError("';;' unexpected")
                tokens.append(Token("OP", two))
                i += 2
            elif two == "&>":
                j = i + 2
                append = text.startswith(">", j)
                if append:
                    j += 1
                tokens.append(Token("REDIR", ">>" if append else ">", fd=-2))
                i = j
            else:
                tokens.append(Token("OP", ch))
                i += 1
            continue
        if ch in "<>":
            fd = -1
            if word is not None and len(word.parts) == 0 and lit.isdigit():
                fd = int(lit)
                lit = ""
                word = None
            else:
                end_word()
            two = text[i : i + 2]
            if two == "<<":
                raise ShellSyntaxError("here-documents are not supported")
            if two in (">>", ">&", "<&", ">|", "<>"):
                op = ">" if two == ">|" else two
                i += 2
            else:
                op = ch
                i += 1
            tokens.append(Token("REDIR", op, fd=fd))
            continue
        if ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unterminated quoted string")
            start_word()
            flush_lit()
            assert word is not None
            word.parts.append(Part("qlit", text[i + 1 : end]))
            i = end + 1
            continue
        if ch == '"':
            start_word()
            flush_lit()
            assert word is not None
            j = i + 1
            buf = ""
            quoted_any = False
            while True:
                if j >= n:
                    raise ShellSyntaxError("unterminated quoted string")
                c = text[j]
                if c == '"':
                    j += 1
                    break
                if c == "\\" and j + 1 < n and text[j + 1] in '$`"\\\n':
                    if text[j + 1] != "\n":
                        buf += text[j + 1]
                    j += 2
                    continue
                if c == "$":
                    part, new_j = read_var(j + 1, quoted=True)
                    if part is not None:
                        if buf:
                            word.parts.append(Part("qlit", buf))
                            buf = ""
                        word.parts.append(part)
                        quoted_any = True
                        j = new_j
                        continue
                buf += c
                j += 1
            if buf or not quoted_any:
                word.parts.append(Part("qlit", buf))
            i = j
            continue
        if ch == "`":
            raise ShellSyntaxError("'`' unexpected (command substitution is not supported)")
        if ch == "$":
            part, new_i = read_var(i + 1, quoted=False)
            start_word()
            if part is None:
                lit += "$"
                i += 1
                continue
            flush_lit()
            assert word is not None
            word.parts.append(part)
            i = new_i
            continue
        start_word()
        lit += ch
        i += 1
    end_word()
    tokens.append(Token("EOF"))
    return tokens


# --------------------------------------------------------------------------------------
# AST
# --------------------------------------------------------------------------------------
@dataclass
class Redirect:
    fd: int  # -2 means both stdout and stderr (&>)
    op: str  # > >> < >& <& <>
    target: Word


@dataclass
class Node:
    redirects: list[Redirect] = field(default_factory=list)


@dataclass
class SimpleCommand(Node):
    assigns: list[tuple[str, Word]] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)


@dataclass
class Pipeline(Node):
    commands: list[Node] = field(default_factory=list)
    negate: bool = False


@dataclass
class AndOr(Node):
    first: Node = field(default_factory=Node)
    rest: list[tuple[str, Node]] = field(default_factory=list)


@dataclass
class CommandList(Node):
    items: list[tuple[Node, bool]] = field(default_factory=list)  # (node, background)


@dataclass
class WhileLoop(Node):
    condition: CommandList = field(default_factory=CommandList)
    body: CommandList = field(default_factory=CommandList)
    until: bool = False


@dataclass
class ForLoop(Node):
    var: str = ""
    words: list[Word] | None = None
    body: CommandList = field(default_factory=CommandList)


@dataclass
class IfClause(Node):
    branches: list[tuple[CommandList, CommandList]] = field(default_factory=list)
    otherwise: CommandList | None = None


@dataclass
class Group(Node):
    body: CommandList = field(default_factory=CommandList)
    subshell: bool = False


# --------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------
class Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def next(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind != "EOF":
            self.pos += 1
        return token

    def at_op(self, *ops: str) -> bool:
        token = self.peek()
        return token.kind == "OP" and token.value in ops

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "WORD" and token.word is not None and token.word.plain() in words

    def describe(self, token: Token) -> str:
        if token.kind == "EOF":
            return "end of file"
        if token.kind == "WORD" and token.word is not None:
            return token.word.literal_text() or "word"
        return "newline" if token.value == "\n" else token.value

    def unexpected(self) -> ShellSyntaxError:
        return ShellSyntaxError(f"'{self.describe(self.peek())}' unexpected")

    def expect_word(self, word: str) -> None:
        if not self.at_word(word):
            raise self.unexpected()
        self.next()

    def skip_newlines(self) -> None:
        while self.at_op("\n"):
            self.next()

    def parse_program(self) -> CommandList:
        result = self.parse_list(top=True)
        if self.peek().kind != "EOF":
            raise self.unexpected()
        return result

    def parse_list(self, top: bool = False) -> CommandList:
        items: list[tuple[Node, bool]] = []
        self.skip_newlines()
        while True:
            token = self.peek()
            if token.kind == "EOF":
                break
            if token.kind == "OP" and token.value == ")":
                break
            if self.at_word(*_TERMINATORS):
                break
            node = self.parse_and_or()
            background = False
            if self.at_op(";", "&"):
                background = self.next().value == "&"
            elif self.at_op("\n"):
                pass
            elif not (self.peek().kind == "EOF" or self.at_op(")") or self.at_word(*_TERMINATORS)):
                raise self.unexpected()
            items.append((node, background))
            self.skip_newlines()
        if not items and not top:
            raise self.unexpected()
        return CommandList(items=items)

    def parse_and_or(self) -> Node:
        first = self.parse_pipeline()
        rest: list[tuple[str, Node]] = []
        while self.at_op("&&", "||"):
            op = self.next().value
            self.skip_newlines()
            rest.append((op, self.parse_pipeline()))
        if not rest:
            return first
        return AndOr(first=first, rest=rest)

    def parse_pipeline(self) -> Node:
        negate = False
        if self.at_word("!"):
            self.next()
            negate = True
        commands = [self.parse_command()]
        while self.at_op("|"):
            self.next()
            self.skip_newlines()
            commands.append(self.parse_command())
        if len(commands) == 1 and not negate:
            return commands[0]
        return Pipeline(commands=commands, negate=negate)

    def parse_redirect(self, token: Token) -> Redirect:
        target = self.next()
        if target.kind != "WORD" or target.word is None:
            raise ShellSyntaxError(f"'{self.describe(target)}' unexpected")
        fd = token.fd
        if fd == -1:
            fd = 0 if token.value in ("<", "<&", "<>") else 1
        return Redirect(fd=fd, op=token.value, target=target.word)

    def parse_trailing_redirects(self, node: Node) -> Node:
        while self.peek().kind == "REDIR":
            node.redirects.append(self.parse_redirect(self.next()))
        return node

    def parse_command(self) -> Node:
        token = self.peek()
        if token.kind == "OP" and token.value == "(":
            self.next()
            body = self.parse_list()
            if not self.at_op(")"):
                raise self.unexpected()
            self.next()
            return self.parse_trailing_redirects(Group(body=body, subshell=True))
        if token.kind == "WORD" and token.word is not None:
            keyword = token.word.plain()
            if keyword in ("while", "until"):
                self.next()
                condition = self.parse_list()
                self.expect_word("do")
                body = self.parse_list()
                self.expect_word("done")
                node: Node = WhileLoop(condition=condition, body=body, until=keyword == "until")
                return self.parse_trailing_redirects(node)
            if keyword == "for":
                return self.parse_trailing_redirects(self.parse_for())
            if keyword == "if":
                return self.parse_trailing_redirects(self.parse_if())
            if keyword == "{":
                self.next()
                body = self.parse_list()
                self.expect_word("}")
                return self.parse_trailing_redirects(Group(body=body))
            if keyword in _TERMINATORS or keyword == "in":
                raise self.unexpected()
        return self.parse_simple()

    def parse_for(self) -> ForLoop:
        self.next()
        name_token = self.next()
        name = name_token.word.plain() if name_token.word is not None else None
        if not name or not _NAME_RE.fullmatch(name):
            raise ShellSyntaxError(f"for: '{self.describe(name_token)}': bad identifier")
        words: list[Word] | None = None
        self.skip_newlines()
        if self.at_word("in"):
            self.next()
            words = []
            while self.peek().kind == "WORD":
                word = self.next().word
                assert word is not None
                words.append(word)
        if self.at_op(";", "\n"):
            self.next()
        self.skip_newlines()
        self.expect_word("do")
        body = self.parse_list()
        self.expect_word("done")
        return ForLoop(var=name, words=words, body=body)

    def parse_if(self) -> IfClause:
        self.next()
        branches: list[tuple[CommandList, CommandList]] = []
        condition = self.parse_list()
        self.expect_word("then")
        branches.append((condition, self.parse_list()))
        otherwise: CommandList | None = None
        while True:
            if self.at_word("elif"):
                self.next()
                condition = self.parse_list()
                self.expect_word("then")
                branches.append((condition, self.parse_list()))
                continue
            if self.at_word("else"):
                self.next()
                otherwise = self.parse_list()
            self.expect_word("fi")
            break
        return IfClause(branches=branches, otherwise=otherwise)

    def parse_simple(self) -> SimpleCommand:
        command = SimpleCommand()
        while True:
            token = self.peek()
            if token.kind == "REDIR":
                command.redirects.append(self.parse_redirect(self.next()))
                continue
            if token.kind != "WORD" or token.word is None:
                break
            word = token.word
            if not command.words:
                first = word.parts[0] if word.parts else None
                if first is not None and first.kind == "lit":
                    match = _ASSIGN_RE.match(first.text)
                    if match:
                        value = Word([Part("lit", first.text[match.end() :]), *word.parts[1:]])
                        value.parts = [
                            p for p in value.parts if not (p.kind == "lit" and not p.text)
                        ]
                        command.assigns.append((match.group(1), value))
                        self.next()
                        continue
            command.words.append(word)
            self.next()
        if not command.words and not command.assigns and not command.redirects:
            raise self.unexpected()
        return command


def parse(text: str) -> CommandList:
    return Parser(tokenize(text)).parse_program()


# --------------------------------------------------------------------------------------
# Arithmetic for $((...)): integers only, evaluated by a small recursive-descent parser.
# --------------------------------------------------------------------------------------
_ARITH_TOKEN = re.compile(
    r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(\$\{?[A-Za-z_?#][A-Za-z0-9_]*\}?)|(<=|>=|==|!=|&&|\|\||<<|>>|[-+*/%()<>!]))"
)


def arith_eval(expr: str, lookup: Callable[[str], str]) -> int:
    tokens: list[str] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        match = _ARITH_TOKEN.match(expr, pos)
        if not match or match.end() == pos:
            raise ShellSyntaxError(f"{expr}: syntax error in arithmetic")
        number, name, var, op = match.groups()
        if number is not None:
            tokens.append(number)
        elif name is not None:
            tokens.append(lookup(name) or "0")
        elif var is not None:
            tokens.append(lookup(var.strip("${}")) or "0")
        else:
            tokens.append(op)
        pos = match.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    index = 0

    def peek() -> str:
        return tokens[index] if index < len(tokens) else ""

    def take() -> str:
        nonlocal index
        token = peek()
        index += 1
        return token

    def primary() -> int:
        token = take()
        if token == "(":
            value = logic_or()
            if take() != ")":
                raise ShellSyntaxError("missing ')' in arithmetic")
            return value
        if token == "-":
            return -primary()
        if token == "+":
            return primary()
        if token == "!":
            return int(not primary())
        try:
            return int(token, 0) if token.lower().startswith("0x") else int(token)
        except ValueError:
            raise ShellSyntaxError(f"{token}: bad number") from None

    def mul() -> int:
        value = primary()
        while peek() in ("*", "/", "%"):
            op = take()
            rhs = primary()
            if op == "*":
                value *= rhs
            else:
                if rhs == 0:
                    raise ShellSyntaxError("division by zero")
                quotient = abs(value) // abs(rhs) * (1 if (value >= 0) == (rhs >= 0) else -1)
                value = quotient if op == "/" else value - rhs * quotient
        return value

    def add() -> int:
        value = mul()
        while peek() in ("+", "-"):
            value = value + mul() if take() == "+" else value - mul()
        return value

    def compare() -> int:
        value = add()
        while peek() in ("<", ">", "<=", ">=", "==", "!="):
            op = take()
            rhs = add()
            value = int(
                {
                    "<": value < rhs,
                    ">": value > rhs,
                    "<=": value <= rhs,
                    ">=": value >= rhs,
                    "==": value == rhs,
                    "!=": value != rhs,
                }[op]
            )
        return value

    def logic_and() -> int:
        value = compare()
        while peek() == "&&":
            take()
            rhs = compare()
            value = int(bool(value) and bool(rhs))
        return value

    def logic_or() -> int:
        value = logic_and()
        while peek() == "||":
            take()
            rhs = logic_and()
            value = int(bool(value) or bool(rhs))
        return value

    if not tokens:
        return 0
    result = logic_or()
    if index != len(tokens):
        raise ShellSyntaxError(f"{expr}: syntax error in arithmetic")
    return result


# --------------------------------------------------------------------------------------
# Interpreter
# --------------------------------------------------------------------------------------
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

    def copy(self) -> ShellState:
        return ShellState(
            dict(self.vars), set(self.exported), self.cwd, self.status, self.pid, list(self.args)
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

BuiltinFn = Callable[["Interpreter", list[str], IO, ShellState], int]


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
        self._jobs: list[threading.Thread] = []
        self._last_job_pid = 0
        self._builtins: dict[str, BuiltinFn] = {
            "cd": Interpreter._b_cd,
            "pwd": Interpreter._b_pwd,
            "export": Interpreter._b_export,
            "unset": Interpreter._b_unset,
            "exit": Interpreter._b_exit,
            "read": Interpreter._b_read,
            "break": Interpreter._b_break,
            "continue": Interpreter._b_continue,
            "sh": Interpreter._b_sh,
            "exec": Interpreter._b_exec,
            "command": Interpreter._b_command,
            "type": Interpreter._b_type,
            "which": Interpreter._b_which,
            "set": Interpreter._b_set,
            "shift": Interpreter._b_shift,
            ":": Interpreter._b_colon,
            "wait": Interpreter._b_wait,
            "trap": Interpreter._b_colon,
            "source": Interpreter._b_source,
            ".": Interpreter._b_source,
        }

    @property
    def fs(self) -> VirtualFS:
        return self.device.fs

    # -- entry points ----------------------------------------------------------
    def run(self, script: str, io: IO) -> int:
        """Parse and run a script; returns its exit status."""
        try:
            tree = parse(script)
        except ShellSyntaxError as exc:
            io.stderr.write(f"{SH}: syntax error: {exc}\n")
            self.state.status = 2
            return 2
        try:
            return self.run_list(tree, io, self.state)
        except ExitShell as exc:
            self.state.status = exc.code & 0xFF
            return self.state.status
        except LoopControl:
            return self.state.status

    # -- execution -------------------------------------------------------------
    def run_list(self, node: CommandList, io: IO, state: ShellState) -> int:
        status = 0
        for item, background in node.items:
            self.token.check()
            if background:
                self._spawn_background(item, io, state)
                status = 0
            else:
                status = self.run_node(item, io, state)
            state.status = status
        return status

    def _spawn_background(self, item: Node, io: IO, state: ShellState) -> None:
        child_state = state.copy()
        bg_io = IO(BytesInput(b""), io.stdout, io.stderr)
        # The job is a process of its own: `kill PID` stops it (and only it), closing the
        # session stops it too.
        job_token = self.token.child()
        name = "sh"
        if isinstance(item, SimpleCommand) and item.words:
            name = posixpath.basename(item.words[0].literal_text()) or "sh"
        pid = self.device.register_job(name, state.pid, job_token)
        child_state.pid = pid
        job = Interpreter(self.device, job_token, child_state)

        def runner() -> None:
            try:
                job.run_node(item, bg_io, child_state)
            except (ShellCancelled, BrokenPipe, ExitShell, LoopControl):
                pass
            except Exception:
                log.exception("background job failed")
            finally:
                job_token.detach()
                self.device.unregister_process(pid)

        thread = threading.Thread(target=runner, name="sh-bg", daemon=True)
        self._jobs = [j for j in self._jobs if j.is_alive()]
        self._jobs.append(thread)
        self._last_job_pid = pid
        thread.start()

    def run_node(self, node: Node, io: IO, state: ShellState) -> int:
        self.token.check()
        if node.redirects and not isinstance(node, SimpleCommand):
            try:
                io = self.apply_redirects(node.redirects, io, state)
            except _RedirectError as exc:
                io.stderr.write(f"{SH}: {exc}\n")
                return 1
        if isinstance(node, SimpleCommand):
            return self.run_simple(node, io, state)
        if isinstance(node, Pipeline):
            return self.run_pipeline(node, io, state)
        if isinstance(node, AndOr):
            status = self.run_node(node.first, io, state)
            for op, nxt in node.rest:
                if (op == "&&" and status == 0) or (op == "||" and status != 0):
                    status = self.run_node(nxt, io, state)
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
                if self.run_list(condition, io, state) == 0:
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
        raise AssertionError(f"unknown node {node!r}")

    def run_while(self, node: WhileLoop, io: IO, state: ShellState) -> int:
        status = 0
        while True:
            self.token.check()
            cond = self.run_list(node.condition, io, state)
            if (cond == 0) == node.until:
                break
            try:
                status = self.run_list(node.body, io, state)
            except BreakLoop as exc:
                if exc.levels > 1:
                    raise BreakLoop(exc.levels - 1) from None
                break
            except ContinueLoop as exc:
                if exc.levels > 1:
                    raise ContinueLoop(exc.levels - 1) from None
                continue
        return status

    def run_for(self, node: ForLoop, io: IO, state: ShellState) -> int:
        if node.words is None:
            values = list(state.args)
        else:
            values = []
            for word in node.words:
                values.extend(self.expand_word(word, state))
        status = 0
        for value in values:
            self.token.check()
            state.vars[node.var] = value
            try:
                status = self.run_list(node.body, io, state)
            except BreakLoop as exc:
                if exc.levels > 1:
                    raise BreakLoop(exc.levels - 1) from None
                break
            except ContinueLoop as exc:
                if exc.levels > 1:
                    raise ContinueLoop(exc.levels - 1) from None
                continue
        return status

    def run_pipeline(self, node: Pipeline, io: IO, state: ShellState) -> int:
        commands = node.commands
        if len(commands) == 1:
            status = self.run_node(commands[0], io, state)
        else:
            pipes = [Pipe(self.token) for _ in commands[:-1]]
            threads: list[threading.Thread] = []
            for index, command in enumerate(commands[:-1]):
                stage_io = IO(
                    pipes[index - 1].reader if index > 0 else io.stdin,
                    pipes[index].writer,
                    io.stderr,
                )
                thread = threading.Thread(
                    target=self._run_stage,
                    args=(command, stage_io, state.copy(), index > 0),
                    name="sh-pipe",
                    daemon=True,
                )
                threads.append(thread)
                thread.start()
            last_io = IO(pipes[-1].reader, io.stdout, io.stderr)
            try:
                status = self._stage_status(commands[-1], last_io, state.copy())
            finally:
                pipes[-1].reader.close()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.1)
                    if self.token.is_set():
                        break
            self.token.check()
        if node.negate:
            status = 0 if status else 1
        return status

    def _stage_status(self, command: Node, io: IO, state: ShellState) -> int:
        try:
            return self.run_node(command, io, state)
        except ExitShell as exc:
            return exc.code & 0xFF
        except BrokenPipe:
            return 141
        except LoopControl:
            return 0

    def _run_stage(self, command: Node, io: IO, state: ShellState, close_input: bool) -> None:
        try:
            self._stage_status(command, io, state)
        except ShellCancelled:
            pass
        except Exception:
            log.exception("pipeline stage failed")
        finally:
            io.stdout.close()
            if close_input:
                io.stdin.close()

    # -- simple commands -------------------------------------------------------
    def run_simple(self, node: SimpleCommand, io: IO, state: ShellState) -> int:
        try:
            argv: list[str] = []
            for word in node.words:
                argv.extend(self.expand_word(word, state))
            assigns = [(name, self.expand_string(value, state)) for name, value in node.assigns]
        except ShellSyntaxError as exc:
            io.stderr.write(f"{SH}: {exc}\n")
            return 1
        try:
            cmd_io = self.apply_redirects(node.redirects, io, state) if node.redirects else io
        except _RedirectError as exc:
            io.stderr.write(f"{SH}: {exc}\n")
            return 1
        except ShellSyntaxError as exc:
            io.stderr.write(f"{SH}: {exc}\n")
            return 1
        if not argv:
            for name, value in assigns:
                state.vars[name] = value
            return 0
        return self.execute(argv, cmd_io, state, dict(assigns))

    def execute(
        self, argv: list[str], io: IO, state: ShellState, assigns: dict[str, str] | None = None
    ) -> int:
        """Run one command (builtin, emulated or script) with its arguments."""
        self.token.check()
        name = argv[0]
        builtin = self._builtins.get(name)
        if builtin is not None:
            return builtin(self, argv, io, state)
        handler, problem = self.resolve(name, state)
        if handler is None:
            if problem == "script":
                return self._run_script_file(name, argv, io, state)
            io.stderr.write(f"{SH}: {name}: {problem}\n")
            # mksh: a missing file is 127 whatever the wording; 126 is "found, can't run".
            return 127 if problem in ("not found", "inaccessible or not found") else 126
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
            return None, "not found"
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
        if base in registry:
            return registry[base], ""
        try:
            head = self.fs.read(path)[:2]
        except FsError:
            head = b""
        if head == b"#!":
            return None, "script"
        return None, "can't execute: Exec format error"

    def _run_script_file(self, name: str, argv: list[str], io: IO, state: ShellState) -> int:
        try:
            text = self.fs.read(name, state.cwd).decode("utf-8", "surrogateescape")
        except FsError as exc:
            io.stderr.write(f"{SH}: {name}: {exc}\n")
            return 127
        sub = state.copy()
        sub.args = argv[1:]
        child = Interpreter(self.device, self.token, sub)
        return child.run(text, io)

    # -- redirections ----------------------------------------------------------
    def apply_redirects(self, redirects: list[Redirect], io: IO, state: ShellState) -> IO:
        result = io.copy()
        for redirect in redirects:
            target = self.expand_string(redirect.target, state)
            op = redirect.op
            if op in (">&", "<&"):
                if target == "-":
                    if redirect.fd == 0:
                        result.stdin = BytesInput(b"")
                    else:
                        self._set_out(result, redirect.fd, NullOutput())
                    continue
                if target.isdigit():
                    source = int(target)
                    if redirect.fd == 0:
                        continue
                    chosen = result.stderr if source == 2 else result.stdout
                    self._set_out(result, redirect.fd, chosen)
                    continue
                op = ">"
            if op in (">", ">>"):
                output = self._open_output(target, op == ">>", state)
                if redirect.fd == -2:
                    result.stdout = output
                    result.stderr = output
                else:
                    self._set_out(result, redirect.fd, output)
            elif op in ("<", "<>"):
                if redirect.fd != 0:
                    continue
                if target == "/dev/null":
                    result.stdin = BytesInput(b"")
                    continue
                try:
                    result.stdin = BytesInput(self.fs.read(target, state.cwd))
                except FsError as exc:
                    raise _RedirectError(f"can't open {target}: {exc}") from None
        return result

    @staticmethod
    def _set_out(io: IO, fd: int, output: Output) -> None:
        if fd == 1:
            io.stdout = output
        elif fd == 2:
            io.stderr = output

    def _open_output(self, target: str, append: bool, state: ShellState) -> Output:
        if target in ("/dev/null", "/dev/zero"):
            return NullOutput()
        if target == "/dev/stderr":
            return NullOutput()
        try:
            if not append or not self.fs.exists(target, state.cwd):
                self.fs.write(target, b"", cwd=state.cwd)
        except FsError as exc:
            raise _RedirectError(f"can't create {target}: {exc}") from None
        return _FileOutput(self.fs, self.fs.normpath(target, state.cwd), self.token)

    # -- expansion -------------------------------------------------------------
    def lookup_var(self, name: str, state: ShellState) -> str | None:
        if name == "?":
            return str(state.status)
        if name == "$":
            return str(state.pid)
        if name == "#":
            return str(len(state.args))
        if name == "0":
            return SH
        if name in ("@", "*"):
            return " ".join(state.args)
        if name == "!":
            return str(self._last_job_pid) if self._last_job_pid else ""
        if name == "-":
            return "hi"
        if name.isdigit():
            index = int(name)
            return state.args[index - 1] if 0 < index <= len(state.args) else None
        if name == "RANDOM":
            return str(int(time.monotonic_ns() // 1000) % 32768)
        if name == "PWD":
            return state.cwd
        return state.vars.get(name)

    def _var_value(self, part: Part, state: ShellState) -> str:
        value = self.lookup_var(part.text, state)
        op = part.op
        if not op:
            return value or ""
        unset = value is None or (op.startswith(":") and value == "")
        kind = op[-1]
        if kind == "-":
            return part.arg if unset else value or ""
        if kind == "=":
            if unset:
                state.vars[part.text] = part.arg
                return part.arg
            return value or ""
        if kind == "+":
            return "" if unset else part.arg
        if kind == "?":
            if unset:
                raise ShellSyntaxError(f"{part.text}: {part.arg or 'parameter null or not set'}")
            return value or ""
        return value or ""

    def arith(self, text: str, state: ShellState) -> int:
        """$((...)): parameter expansions first (${n:-0}, $x), then integer arithmetic."""

        def braced(match: re.Match[str]) -> str:
            inner = re.fullmatch(_BRACED_RE, match.group(1), re.S)
            if inner is None:
                raise ShellSyntaxError(f"${{{match.group(1)}}}: bad substitution")
            part = Part("qvar", inner.group(1), inner.group(2) or "", inner.group(3) or "")
            return self._var_value(part, state)

        def simple(match: re.Match[str]) -> str:
            return self.lookup_var(match.group(1), state) or "0"

        text = re.sub(r"\$\{([^}]*)\}", braced, text)
        text = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*|[?$#])", simple, text)
        return arith_eval(text, lambda n: self.lookup_var(n, state) or "")

    def expand_word(self, word: Word, state: ShellState, glob: bool = True) -> list[str]:
        """Expand into fields: variables, field splitting of unquoted results, globs."""
        parts = word.parts
        if parts and all(part.kind == "lit" for part in parts):
            # Plain unquoted text (most words): one field, or its glob matches.
            text = parts[0].text if len(parts) == 1 else "".join(p.text for p in parts)
            if glob and VirtualFS.has_magic(text):
                matches = self.fs.glob(text, state.cwd)
                if matches:
                    return matches
            return [text]
        fields: list[list[tuple[str, bool]]] = [[]]
        quoted = [False]

        for part in word.parts:
            if part.kind == "lit":
                fields[-1].append((part.text, True))
            elif part.kind == "qlit":
                fields[-1].append((part.text, False))
                quoted[-1] = True
            elif part.kind == "qvar":
                fields[-1].append((self._var_value(part, state), False))
                quoted[-1] = True
            elif part.kind == "arith":
                number = self.arith(part.text, state)
                fields[-1].append((str(number), False))
            elif part.kind == "var":
                value = self._var_value(part, state)
                if not value:
                    continue
                pieces = value.split()
                if value[0].isspace() and (fields[-1] or quoted[-1]):
                    fields.append([])
                    quoted.append(False)
                for index, piece in enumerate(pieces):
                    if index > 0:
                        fields.append([])
                        quoted.append(False)
                    fields[-1].append((piece, True))
                if value[-1].isspace() and pieces:
                    fields.append([])
                    quoted.append(False)

        result: list[str] = []
        for segments, was_quoted in zip(fields, quoted, strict=True):
            if not segments and not was_quoted:
                continue
            text = "".join(s for s, _ in segments)
            magic = any(g and VirtualFS.has_magic(s) for s, g in segments)
            if glob and magic:
                pattern = "".join(s if g else _glob_escape(s) for s, g in segments)
                matches = self.fs.glob(pattern, state.cwd)
                if matches:
                    result.extend(matches)
                    continue
            result.append(text)
        return result

    def expand_string(self, word: Word, state: ShellState) -> str:
        """Expand without splitting or globbing (assignments, redirect targets)."""
        out: list[str] = []
        for part in word.parts:
            if part.kind in ("lit", "qlit"):
                out.append(part.text)
            elif part.kind in ("var", "qvar"):
                out.append(self._var_value(part, state))
            elif part.kind == "arith":
                out.append(str(self.arith(part.text, state)))
        return "".join(out)

    # -- builtins that need the shell's state -----------------------------------
    def _b_cd(self, argv: list[str], io: IO, state: ShellState) -> int:
        target = argv[1] if len(argv) > 1 else state.vars.get("HOME", "/")
        path = self.fs.normpath(target, state.cwd)
        if not self.fs.is_dir(path):
            problem = "No such file or directory" if not self.fs.exists(path) else "Not a directory"
            io.stderr.write(f"{SH}: cd: {target}: {problem}\n")
            return 2
        state.cwd = path
        return 0

    def _b_pwd(self, argv: list[str], io: IO, state: ShellState) -> int:
        io.stdout.write(state.cwd + "\n")
        return 0

    def _b_export(self, argv: list[str], io: IO, state: ShellState) -> int:
        if len(argv) == 1 or argv[1:] == ["-p"]:
            for key in sorted(state.exported):
                if key in state.vars:
                    io.stdout.write(f"export {key}={_sh_quote(state.vars[key])}\n")
            return 0
        for item in argv[1:]:
            name, eq, value = item.partition("=")
            if not _NAME_RE.fullmatch(name):
                io.stderr.write(f"{SH}: export: {item}: is not an identifier\n")
                return 1
            if eq:
                state.vars[name] = value
            state.exported.add(name)
        return 0

    def _b_unset(self, argv: list[str], io: IO, state: ShellState) -> int:
        for name in argv[1:]:
            if name in ("-v", "-f"):
                continue
            state.vars.pop(name, None)
            state.exported.discard(name)
        return 0

    def _b_exit(self, argv: list[str], io: IO, state: ShellState) -> int:
        code = state.status
        if len(argv) > 1:
            try:
                code = int(argv[1])
            except ValueError:
                io.stderr.write(f"{SH}: exit: {argv[1]}: bad number\n")
                code = 1
        raise ExitShell(code & 0xFF)

    def _b_read(self, argv: list[str], io: IO, state: ShellState) -> int:
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

    def _b_break(self, argv: list[str], io: IO, state: ShellState) -> int:
        raise BreakLoop(int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 1)

    def _b_continue(self, argv: list[str], io: IO, state: ShellState) -> int:
        raise ContinueLoop(int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 1)

    def _b_sh(self, argv: list[str], io: IO, state: ShellState) -> int:
        args = argv[1:]
        while args and args[0] in ("-e", "-x", "-u", "-l", "-i"):
            args = args[1:]
        sub = state.copy()
        child = Interpreter(self.device, self.token, sub)
        if args and args[0] == "-c":
            if len(args) < 2:
                io.stderr.write(f"{SH}: -c: option requires an argument\n")
                return 1
            sub.args = args[3:] if len(args) > 3 else []
            return child.run(args[1], io)
        if args:
            try:
                text = self.fs.read(args[0], state.cwd).decode("utf-8", "surrogateescape")
            except FsError as exc:
                io.stderr.write(f"{SH}: {args[0]}: {exc}\n")
                return 127
            sub.args = args[1:]
            return child.run(text, io)
        script = io.stdin.read().decode("utf-8", "surrogateescape")
        return child.run(script, io)

    def _b_exec(self, argv: list[str], io: IO, state: ShellState) -> int:
        if len(argv) == 1:
            return 0
        raise ExitShell(self.execute(argv[1:], io, state))

    def _b_command(self, argv: list[str], io: IO, state: ShellState) -> int:
        args = argv[1:]
        if args and args[0] in ("-v", "-V"):
            return self._b_which(["which", *args[1:]], io, state)
        if not args:
            return 0
        return self.execute(args, io, state)

    def _b_type(self, argv: list[str], io: IO, state: ShellState) -> int:
        status = 0
        for name in argv[1:]:
            if name in self._builtins:
                io.stdout.write(f"{name} is a shell builtin\n")
            elif self.resolve(name, state)[0] is not None:
                io.stdout.write(f"{name} is {self._where(name)}\n")
            else:
                io.stderr.write(f"{name} not found\n")
                status = 1
        return status

    def _where(self, name: str) -> str:
        return name if "/" in name else f"/system/bin/{name}"

    def _b_which(self, argv: list[str], io: IO, state: ShellState) -> int:
        status = 0
        for name in argv[1:]:
            if name in self._builtins and argv[0] != "which":
                io.stdout.write(name + "\n")
            elif self.resolve(name, state)[0] is not None:
                io.stdout.write(self._where(name) + "\n")
            else:
                status = 1
        return status

    def _b_set(self, argv: list[str], io: IO, state: ShellState) -> int:
        if len(argv) == 1:
            for key in sorted(state.vars):
                io.stdout.write(f"{key}={_sh_quote(state.vars[key])}\n")
            return 0
        if "--" in argv:
            state.args = argv[argv.index("--") + 1 :]
        return 0

    def _b_shift(self, argv: list[str], io: IO, state: ShellState) -> int:
        count = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 1
        state.args = state.args[count:]
        return 0

    def _b_colon(self, argv: list[str], io: IO, state: ShellState) -> int:
        return 0

    def _b_wait(self, argv: list[str], io: IO, state: ShellState) -> int:
        for job in list(self._jobs):
            while job.is_alive():
                self.token.check()
                job.join(0.05)
        self._jobs = []
        return 0

    def _b_source(self, argv: list[str], io: IO, state: ShellState) -> int:
        if len(argv) < 2:
            return 0
        try:
            text = self.fs.read(argv[1], state.cwd).decode("utf-8", "surrogateescape")
        except FsError as exc:
            io.stderr.write(f"{SH}: {argv[1]}: {exc}\n")
            return 1
        tree = parse(text)
        return self.run_list(tree, io, state)

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
                if "unterminated" in str(exc) or "end of file" in str(exc):
                    if prompt:
                        io.stdout.write("> ")
                    continue
                io.stderr.write(f"{SH}: syntax error: {exc}\n")
                pending = ""
                status = 2
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


class _RedirectError(VirtualAndroidError):
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


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _sh_quote(value: str) -> str:
    if value and re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"
