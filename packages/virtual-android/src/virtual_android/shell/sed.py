"""sed, as toybox runs the part of it scripts on a phone use: addresses (N, $, /RE/, ranges,
!), the commands s (with g, p, N and I), p, d, q, =, y, a and i, and -n, -e, -E/-r, -i."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import VirtualAndroidError
from ..fs.filesystem import FsError
from .options import parse_options

if TYPE_CHECKING:
    from .interpreter import CommandContext

Address = int | str | re.Pattern[str]  # a line number, "$" or a regular expression


class SedError(VirtualAndroidError):
    pass


def bre_to_python(pattern: str, extended: bool) -> str:
    if extended:
        return pattern

    # Basic regular expressions: \| \( \) \{ \} \+ \? are the operators; the bare
    # characters are literals.
    def swap(match: re.Match[str]) -> str:
        text = match.group(0)
        if text.startswith("\\"):
            return text[1] if text[1] in "|(){}+?" else text
        return "\\" + text

    return re.sub(r"\\.|[|(){}+?]", swap, pattern, flags=re.S)


@dataclass
class _Command:
    name: str
    first: Address | None = None
    last: Address | None = None
    negate: bool = False
    text: str = ""  # a, i: the line; y: the source characters
    regex: re.Pattern[str] | None = None  # s
    replacement: str = ""  # s; y: the target characters
    occurrence: int = 1  # s: which match (0 = every one, the g flag)
    print_after: bool = False  # s: the p flag
    active: bool = field(default=False, compare=False)  # inside its range


class _Script:
    """Parses a sed script: commands separated by `;` or newlines."""

    def __init__(self, text: str, extended: bool) -> None:
        self.text = text
        self.pos = 0
        self.extended = extended

    def fail(self) -> SedError:
        return SedError(f"bad pattern '{self.text}'@{self.pos + 1}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def delimited(self, delimiter: str) -> str:
        """The text up to an unescaped delimiter (which is consumed); `\\delimiter` is
        the delimiter itself, other escapes stay for the regular expression."""
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.fail()
            ch = self.text[self.pos]
            self.pos += 1
            if ch == delimiter:
                return "".join(out)
            if ch == "\\" and self.pos < len(self.text):
                nxt = self.text[self.pos]
                self.pos += 1
                out.append(nxt if nxt == delimiter else "\\n" if nxt == "n" else "\\" + nxt)
                continue
            out.append(ch)

    def regex(self, source: str, flags: int = 0) -> re.Pattern[str]:
        try:
            return re.compile(bre_to_python(source, self.extended), flags)
        except re.error:
            raise self.fail() from None

    def address(self) -> Address | None:
        ch = self.peek()
        if ch.isdigit():
            match = re.compile(r"\d+").match(self.text, self.pos)
            assert match is not None
            self.pos = match.end()
            return int(match.group(0))
        if ch == "$":
            self.pos += 1
            return "$"
        if ch in ("/", "\\"):
            self.pos += 1
            delimiter = "/" if ch == "/" else self.text[self.pos : self.pos + 1]
            if ch == "\\":
                self.pos += 1
            return self.regex(self.delimited(delimiter))
        return None

    def commands(self) -> list[_Command]:
        result: list[_Command] = []
        while True:
            while self.peek() and self.peek() in " \t\n;":
                self.pos += 1
            if not self.peek():
                return result
            command = _Command(name="")
            command.first = self.address()
            if command.first is not None and self.peek() == ",":
                self.pos += 1
                command.last = self.address()
                if command.last is None:
                    raise self.fail()
            while self.peek() in (" ", "!"):
                command.negate = command.negate or self.peek() == "!"
                self.pos += 1
            command.name = self.peek()
            self.pos += 1
            self.arguments(command)
            result.append(command)

    def arguments(self, command: _Command) -> None:
        name = command.name
        if name in ("p", "d", "q", "="):
            return
        if name in ("a", "i"):
            # `a text`, or POSIX's `a\` with the text on the next line.
            while self.peek() in (" ", "\t"):
                self.pos += 1
            if self.peek() == "\\":
                self.pos += 1
                if self.peek() == "\n":
                    self.pos += 1
            end = self.text.find("\n", self.pos)
            end = len(self.text) if end < 0 else end
            command.text = self.text[self.pos : end]
            self.pos = end
            return
        if name in ("s", "y"):
            delimiter = self.peek()
            if not delimiter or delimiter in "\\\n":
                raise self.fail()
            self.pos += 1
            source = self.delimited(delimiter)
            target = self.delimited(delimiter)
            if name == "y":
                source, target = _unescape(source), _unescape(target)
                if len(source) != len(target):
                    raise self.fail()
                command.text, command.replacement = source, target
                return
            flags = 0
            while self.peek() and self.peek() in "gpiI0123456789":
                ch = self.peek()
                self.pos += 1
                if ch == "g":
                    command.occurrence = 0
                elif ch == "p":
                    command.print_after = True
                elif ch in "iI":
                    flags |= re.IGNORECASE
                else:
                    digits = re.compile(r"\d+").match(self.text, self.pos - 1)
                    assert digits is not None
                    command.occurrence = int(digits.group(0))
                    self.pos = digits.end()
            command.regex = self.regex(source, flags)
            command.replacement = target
            return
        raise self.fail()


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\\\", "\\")


def _expand(replacement: str, match: re.Match[str]) -> str:
    """s's replacement: & is the match, \\1..\\9 its groups, \\n a newline."""

    def piece(part: re.Match[str]) -> str:
        text = part.group(0)
        if text == "&":
            return match.group(0)
        if text[1].isdigit():
            return match.group(int(text[1])) or ""
        return "\n" if text[1] == "n" else text[1]

    return re.sub(r"\\.|&", piece, replacement, flags=re.S)


def _substitute(command: _Command, line: str) -> tuple[str, bool]:
    assert command.regex is not None
    seen = 0
    changed = False
    previous_end = -1

    def replace(match: re.Match[str]) -> str:
        nonlocal seen, changed, previous_end
        # sed never matches empty right where the previous match ended (Python's re does).
        if match.start() == match.end() == previous_end:
            return ""
        previous_end = match.end()
        seen += 1
        if command.occurrence in (0, seen):
            changed = True
            return _expand(command.replacement, match)
        return match.group(0)

    return command.regex.sub(replace, line), changed


def _matches(address: Address, number: int, line: str, is_last: bool) -> bool:
    if isinstance(address, int):
        return number == address
    if address == "$":
        return is_last
    assert isinstance(address, re.Pattern)
    return address.search(line) is not None


def _selected(command: _Command, number: int, line: str, is_last: bool) -> bool:
    if command.first is None:
        return not command.negate
    if command.last is None:
        hit = _matches(command.first, number, line, is_last)
    elif command.active:
        hit = True
        last = command.last
        ended = number >= last if isinstance(last, int) else _matches(last, number, line, is_last)
        command.active = not ended
    else:
        hit = _matches(command.first, number, line, is_last)
        if hit:
            last = command.last
            # A numbered end at or before the start line ends the range at once.
            command.active = not (isinstance(last, int) and last <= number)
    return hit != command.negate


def _run(
    commands: list[_Command],
    lines: list[str],
    quiet: bool,
    write: Callable[[str], None],
    final_newline: bool = True,
) -> None:
    """Runs the script over the lines. A last line without a newline is printed without
    one, as toybox does."""
    for index, line in enumerate(lines):
        number = index + 1
        is_last = index == len(lines) - 1
        end = "\n" if final_newline or not is_last else ""
        after: list[str] = []
        deleted = False
        for command in commands:
            if not _selected(command, number, line, is_last):
                continue
            name = command.name
            if name == "s":
                line, changed = _substitute(command, line)
                if changed and command.print_after:
                    write(line + end)
            elif name == "p":
                write(line + end)
            elif name == "d":
                deleted = True
                break
            elif name == "=":
                write(f"{number}\n")
            elif name == "y":
                line = line.translate(str.maketrans(command.text, command.replacement))
            elif name == "i":
                write(command.text + "\n")
            elif name == "a":
                after.append(command.text + "\n")
            elif name == "q":
                if not quiet:
                    write(line + end)
                for text in after:
                    write(text)
                return
        if not deleted and not quiet:
            write(line + end)
        for text in after:
            write(text)


def cmd_sed(ctx: CommandContext) -> int:
    opts, values, operands = parse_options(ctx.argv[1:], "nErsi", "e")
    scripts = [value for _, value in values]
    quiet, extended, in_place = "n" in opts, bool(opts & {"E", "r"}), "i" in opts
    if not scripts:
        if not operands:
            ctx.error("sed: no pattern\n")
            return 1
        scripts.append(operands.pop(0))
    try:
        commands = _Script("\n".join(scripts), extended).commands()
    except SedError as exc:
        ctx.error(f"sed: {exc}\n")
        return 1
    status = 0
    streams: list[tuple[str, list[str], bool]] = []
    for name in operands or ["-"]:
        try:
            data = ctx.stdin.read() if name == "-" else ctx.fs.read(name, ctx.cwd)
        except FsError as exc:
            ctx.error(f"sed: {name}: {exc}\n")
            status = 1
            continue
        text = data.decode("utf-8", "surrogateescape")
        lines = text.split("\n")
        if text.endswith("\n") or not text:
            lines.pop()
        streams.append((name, lines, text.endswith("\n") or not text))
    if in_place:
        for name, lines, newline in streams:
            out: list[str] = []
            _run(commands, lines, quiet, out.append, newline)
            ctx.fs.write(name, "".join(out).encode("utf-8", "surrogateescape"), cwd=ctx.cwd)
        return status
    # Without -i the files are one stream: line numbers and $ run across them.
    every = [line for _, lines, _ in streams for line in lines]
    _run(commands, every, quiet, ctx.write, not streams or streams[-1][2])
    return status
