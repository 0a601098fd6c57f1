"""toybox's text filters: grep, head, tail, wc, sort, uniq, cut, tr, basename, dirname."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Iterator

from ..fs.filesystem import FsError
from .applet import echo_escapes, err, read_inputs, split_opts
from .interpreter import CommandContext
from .options import parse_options
from .sed import bre_to_python
from .shellio import BytesInput, Input, Output


def cmd_grep(ctx: CommandContext) -> int:
    opts, values, operands = parse_options(ctx.argv[1:], "viclnqEFwoHhsx", "em", long=True)
    patterns = [value for option, value in values if option == "e"]
    counts = [int(value) for option, value in values if option == "m" and value.isdigit()]
    max_count = counts[-1] if counts else None
    if not patterns:
        if not operands:
            err(ctx, "Needs 1 argument")
            return 2
        patterns = [operands.pop(0)]
    flags = re.IGNORECASE if "i" in opts else 0
    compiled = []
    for pattern in patterns:
        regex = re.escape(pattern) if "F" in opts else bre_to_python(pattern, "E" in opts)
        if "w" in opts:
            regex = rf"\b(?:{regex})\b"
        if "x" in opts:
            regex = rf"^(?:{regex})$"
        try:
            compiled.append(re.compile(regex, flags))
        except re.error:
            err(ctx, f"bad regex '{pattern}'")
            return 2
    show_names = (len(operands) > 1 and "h" not in opts) or "H" in opts
    invert = "v" in opts
    number_lines = "n" in opts
    list_lines = "c" not in opts and "l" not in opts
    only_matching = "o" in opts and not invert
    # Output lines are batched and written at once: before anything goes to stderr, before
    # a read that may block (a pipe, the session's stdin) and at the end, so the bytes and
    # their order stay the same while a grep over files costs one write, not one a line.
    pending: list[str] = []
    stdout, stderr = ctx.stdout, ctx.stderr

    def flush() -> None:
        if pending:
            data = "".join(pending)
            pending.clear()
            stdout.write(data)

    ctx.stderr = _FlushFirst(stderr, flush)
    search = compiled[0].search if len(compiled) == 1 else None
    found = False
    missing = False
    try:
        for name in operands or ["-"]:
            # What _read_inputs does, without wrapping each file in a BytesInput.
            lines: Iterable[str]
            if name == "-":
                lines = _input_lines(ctx.stdin, flush)
            else:
                try:
                    lines = _text_lines(ctx.fs.read(name, ctx.cwd))
                except FsError as exc:
                    err(ctx, f"{name}: {exc}")
                    missing = True
                    continue
            count = 0
            number = 0
            name_prefix = f"{name}:" if show_names else ""
            for line in lines:
                number += 1
                hit = bool(search(line)) if search else any(p.search(line) for p in compiled)
                if hit == invert:
                    continue
                found = True
                count += 1
                if "q" in opts:
                    flush()
                    return 0
                if list_lines:
                    prefix = name_prefix + (f"{number}:" if number_lines else "")
                    if only_matching:
                        for expression in compiled:
                            for match in expression.finditer(line):
                                pending.append(prefix + match.group(0) + "\n")
                    else:
                        pending.append(prefix + line + "\n")
                if max_count is not None and count >= max_count:
                    break
            if "c" in opts:
                pending.append(name_prefix + f"{count}\n")
            elif "l" in opts and count:
                pending.append(f"{name if name != '-' else '(standard input)'}\n")
        flush()
    finally:
        ctx.stderr = stderr
    return 2 if missing else 0 if found else 1


class _FlushFirst(Output):
    """An output that calls flush() before each write (keeps stdout/stderr in order)."""

    def __init__(self, target: Output, flush: Callable[[], None]) -> None:
        self._target = target
        self._flush = flush

    def write_bytes(self, data: bytes) -> None:
        self._flush()
        self._target.write_bytes(data)

    def close(self) -> None:
        self._target.close()


def _text_lines(data: bytes) -> list[str]:
    """What Input.lines() yields for data, decoded and without the newlines."""
    text = data.decode("utf-8", "surrogateescape")
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


def _input_lines(source: Input, before_read: Callable[[], None]) -> Iterator[str]:
    """The lines of source.lines(), decoded and without their newline.

    A BytesInput never blocks: it is split at once. Otherwise before_read() is called
    whenever the next read may block (a pipe, the session's stdin).
    """
    if isinstance(source, BytesInput):
        yield from _text_lines(source.read())
        return
    while True:
        if not source.has_buffered_line():
            before_read()
        raw = source.readline()
        if not raw:
            return
        yield raw.decode("utf-8", "surrogateescape").rstrip("\n")


def _count_arg(args: list[str], default: int) -> tuple[int, bool, list[str]]:
    """Parse -n N / -N / -n +N for head and tail; returns (count, from_start, rest)."""
    count = default
    from_start = False
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        value: str | None = None
        if arg in ("-n", "-c") and i + 1 < len(args):
            value = args[i + 1]
            i += 1
        elif re.fullmatch(r"-n[+-]?\d+", arg):
            value = arg[2:]
        elif re.fullmatch(r"-\d+", arg):
            value = arg[1:]
        else:
            rest.append(arg)
        if value is not None:
            from_start = value.startswith("+")
            count = abs(int(value))
        i += 1
    return count, from_start, rest


def cmd_head(ctx: CommandContext) -> int:
    count, _, operands = _count_arg(ctx.argv[1:], 10)
    return _head_or_tail(ctx, operands, lambda source: _head(source, count, "-c" in ctx.argv))


def _head(source: Input, count: int, in_bytes: bool) -> Iterator[bytes]:
    if in_bytes:
        yield source.read()[:count]
        return
    for index, line in enumerate(source.lines()):
        if index >= count:
            break
        yield line


def cmd_tail(ctx: CommandContext) -> int:
    count, from_start, operands = _count_arg(ctx.argv[1:], 10)
    operands = [o for o in operands if o not in ("-f", "-F")]

    def tail(source: Input) -> list[bytes]:
        lines = list(source.lines())
        return lines[max(0, count - 1) :] if from_start else lines[-count:] if count else []

    return _head_or_tail(ctx, operands, tail)


def _head_or_tail(
    ctx: CommandContext, operands: list[str], select: Callable[[Input], Iterable[bytes]]
) -> int:
    """Each input's selected part; with several files each under a `==> NAME <==` header,
    a blank line between them, as toybox prints them."""
    status = 0
    for index, (name, source) in enumerate(read_inputs(ctx, operands)):
        if source is None:
            status = 1
            continue
        if len(operands) > 1:
            ctx.write(("\n" if index else "") + f"==> {name} <==\n")
        for piece in select(source):
            ctx.write(piece)
    return status


def cmd_wc(ctx: CommandContext) -> int:
    opts, operands = split_opts(ctx.argv[1:], "lwcm")
    if not opts:
        opts = {"l", "w", "c"}
    status = 0
    rows: list[tuple[list[int], str]] = []
    for name, source in read_inputs(ctx, operands):
        if source is None:
            status = 1
            continue
        data = source.read()
        counts: list[int] = []
        if "l" in opts:
            counts.append(data.count(b"\n"))
        if "w" in opts:
            counts.append(len(data.split()))
        if "c" in opts or "m" in opts:
            counts.append(len(data))
        rows.append((counts, "" if name == "-" else f" {name}"))
    if len(operands) > 1:
        rows.append(([sum(c) for c in zip(*(r[0] for r in rows), strict=True)], " total"))
    # toybox pads the counts to 7 columns for several files (then adds a total) and for
    # several counts of stdin; one file's counts are bare.
    pad = len(operands) > 1 or (not operands and len(opts) > 1)
    for counts, label in rows:
        ctx.write(" ".join(f"{c:>7}" if pad else str(c) for c in counts) + label + "\n")
    return status


def cmd_sort(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    separator: str | None = None
    fields: tuple[int, int | None] | None = None
    numeric_key = False
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg[:2] in ("-t", "-k") and (len(arg) > 2 or i + 1 < len(args)):
            value = arg[2:] or args[i + 1]
            i += 1 if arg[2:] else 2
            if arg[:2] == "-t":
                separator = value
                continue
            match = re.fullmatch(r"(\d+)(?:\.\d+)?(?:,(\d+)(?:\.\d+)?)?([nr]*)", value)
            if match is None:
                err(ctx, f"bad -k '{value}'")
                return 1
            fields = (int(match.group(1)), int(match.group(2)) if match.group(2) else None)
            numeric_key = "n" in match.group(3)
            continue
        rest.append(arg)
        i += 1
    opts, operands = split_opts(rest, "rnu")
    lines: list[str] = []
    for _name, source in read_inputs(ctx, operands):
        if source is not None:
            lines.extend(
                line.decode("utf-8", "surrogateescape").rstrip("\n") for line in source.lines()
            )

    def field_text(line: str) -> str:
        if fields is None:
            return line
        parts = line.split(separator) if separator is not None else line.split()
        first, last = fields
        return (separator or " ").join(parts[first - 1 : last])

    def number(text: str) -> float:
        match = re.match(r"\s*(-?\d+(?:\.\d+)?)", text)
        return float(match.group(1)) if match else 0.0

    if "n" in opts or numeric_key:
        # Equal numbers fall back to the whole line, as toybox orders them.
        lines.sort(key=lambda line: (number(field_text(line)), line), reverse="r" in opts)
    else:
        lines.sort(key=lambda line: (field_text(line), line), reverse="r" in opts)
    if "u" in opts:
        lines = list(dict.fromkeys(lines))
    for line in lines:
        ctx.write(line + "\n")
    return 0


def cmd_uniq(ctx: CommandContext) -> int:
    opts, operands = split_opts(ctx.argv[1:], "cdu")
    sources = list(read_inputs(ctx, operands[:1]))
    if sources[0][1] is None:
        return 1
    runs: list[list[bytes]] = []
    for line in sources[0][1].lines():
        if runs and runs[-1][0].rstrip(b"\n") == line.rstrip(b"\n"):
            runs[-1].append(line)
        else:
            runs.append([line])
    for run in runs:
        if ("d" in opts and len(run) < 2) or ("u" in opts and len(run) > 1):
            continue
        text = run[0] if run[0].endswith(b"\n") else run[0] + b"\n"
        ctx.write(f"{len(run):>7} ".encode() + text if "c" in opts else text)
    return 0


def cmd_cut(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    delim = "\t"
    spec = ""
    chars = False
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-d"):
            delim = arg[2:] or args[i + 1]
            i += 1 if arg[2:] else 2
            continue
        if arg[:2] in ("-f", "-c"):
            chars = arg[:2] == "-c"
            spec = arg[2:] or args[i + 1]
            i += 1 if arg[2:] else 2
            continue
        operands.append(arg)
        i += 1
    wanted: set[int] = set()
    for piece in spec.split(","):
        if "-" in piece:
            lo, _, hi = piece.partition("-")
            wanted.update(range(int(lo or 1), int(hi or 4096) + 1))
        elif piece:
            wanted.add(int(piece))
    for _name, source in read_inputs(ctx, operands):
        if source is None:
            continue
        for raw in source.lines():
            line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
            if chars:
                ctx.write("".join(c for n, c in enumerate(line, 1) if n in wanted) + "\n")
                continue
            parts = line.split(delim)
            if len(parts) == 1:
                ctx.write(line + "\n")
                continue
            ctx.write(delim.join(p for n, p in enumerate(parts, 1) if n in wanted) + "\n")
    return 0


def cmd_tr(ctx: CommandContext) -> int:
    opts, operands = split_opts(ctx.argv[1:], "d")
    data = ctx.stdin.read().decode("utf-8", "surrogateescape")

    def expand(spec: str) -> str:
        spec, _ = echo_escapes(spec)
        return re.sub(
            r"(.)-(.)",
            lambda m: "".join(chr(c) for c in range(ord(m.group(1)), ord(m.group(2)) + 1)),
            spec,
        )

    if "d" in opts and operands:
        drop = set(expand(operands[0]))
        ctx.write("".join(c for c in data if c not in drop))
        return 0
    if len(operands) < 2:
        err(ctx, "Needs 2 arguments")
        return 1
    src, dst = expand(operands[0]), expand(operands[1])
    dst = dst + dst[-1:] * max(0, len(src) - len(dst))
    ctx.write(data.translate(str.maketrans(src, dst[: len(src)])))
    return 0


def cmd_basename(ctx: CommandContext) -> int:
    if len(ctx.argv) < 2:
        return 1
    name = posixpath.basename(ctx.argv[1].rstrip("/")) or "/"
    if len(ctx.argv) > 2 and name.endswith(ctx.argv[2]):
        name = name[: -len(ctx.argv[2])]
    ctx.write(name + "\n")
    return 0


def cmd_dirname(ctx: CommandContext) -> int:
    if len(ctx.argv) < 2:
        return 1
    ctx.write((posixpath.dirname(ctx.argv[1].rstrip("/")) or ".") + "\n")
    return 0
