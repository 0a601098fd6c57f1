"""What toybox's applets share: how they read options and operands, report a failing
operand and go on, and read their inputs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from ..fs.filesystem import FsError, StatResult
from .interpreter import CommandContext
from .options import parse_options
from .shellio import BytesInput, Input


def err(ctx: CommandContext, message: str) -> None:
    ctx.error(f"{ctx.name}: {message}\n")


def split_opts(args: list[str], flags: str) -> tuple[set[str], list[str]]:
    """Split short boolean flags (clustered, like -rf) from operands."""
    opts, _, operands = parse_options(args, flags)
    return opts, operands


def at_least(ctx: CommandContext, count: int, flags: str) -> list[str] | None:
    """The operands (flags ignored), or None once `Needs N arguments` is said."""
    _opts, operands = split_opts(ctx.argv[1:], flags)
    if len(operands) >= count:
        return operands
    err(ctx, f"Needs {count} argument{'s' if count > 1 else ''}")
    return None


def stat_each(
    ctx: CommandContext, names: list[str], follow: bool
) -> Iterator[tuple[str, StatResult | None]]:
    """(name, its stat) for each operand, or (name, None) once `NAME: why` is said."""
    for name in names:
        try:
            yield name, ctx.fs.stat(name, ctx.cwd, follow=follow)
        except FsError as exc:
            err(ctx, f"{name}: {exc}")
            yield name, None


def each(
    ctx: CommandContext, names: list[str], change: Callable[[str], None], quote: bool = False
) -> int:
    """change(name) for each operand; a failure is reported (`NAME: why`, toybox quotes the
    name for mkdir and touch) and the command goes on to the next, ending with status 1."""
    status = 0
    for name in names:
        try:
            change(name)
        except FsError as exc:
            err(ctx, f"'{name}': {exc}" if quote else f"{name}: {exc}")
            status = 1
    return status


def echo_escapes(text: str) -> tuple[str, bool]:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            mapping = {
                "n": "\n",
                "t": "\t",
                "\\": "\\",
                "r": "\r",
                "a": "\a",
                "b": "\b",
                "e": "\x1b",
                "f": "\f",
                "v": "\v",
            }
            if nxt == "c":
                return "".join(out), True
            if nxt in mapping:
                out.append(mapping[nxt])
                i += 2
                continue
            if nxt == "0":
                match = re.match(r"0([0-7]{0,3})", text[i + 1 :])
                assert match
                out.append(chr(int(match.group(1) or "0", 8)))
                i += 1 + len(match.group(0))
                continue
        out.append(ch)
        i += 1
    return "".join(out), False


def read_inputs(ctx: CommandContext, operands: list[str]) -> Iterator[tuple[str, Input | None]]:
    """Yield (name, input) per operand; stdin for none or '-'; input None after an error."""
    if not operands:
        yield "-", ctx.stdin
        return
    for name in operands:
        if name == "-":
            yield name, ctx.stdin
            continue
        try:
            yield name, BytesInput(ctx.fs.read(name, ctx.cwd))
        except FsError as exc:
            err(ctx, f"{name}: {exc}")
            yield name, None
