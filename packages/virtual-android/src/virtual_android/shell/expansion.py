"""Word expansion: parameters (${NAME:-x} and the rest), arithmetic, field splitting of
unquoted results and globs over the virtual filesystem."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from ..fs.filesystem import VirtualFS
from .arithmetic import arith_eval
from .builtins import SH
from .lexer import BRACED_RE, Part, ShellSyntaxError, Word

if TYPE_CHECKING:
    from .interpreter import Interpreter, ShellState


def lookup_var(sh: Interpreter, name: str, state: ShellState) -> str | None:
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
        return str(sh.last_job_pid) if sh.last_job_pid else ""
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


def var_value(sh: Interpreter, part: Part, state: ShellState) -> str:
    value = lookup_var(sh, part.text, state)
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


def arith(sh: Interpreter, text: str, state: ShellState) -> int:
    """$((...)): parameter expansions first (${n:-0}, $x), then integer arithmetic."""

    def braced(match: re.Match[str]) -> str:
        inner = re.fullmatch(BRACED_RE, match.group(1), re.S)
        if inner is None:
            raise ShellSyntaxError(f"${{{match.group(1)}}}: bad substitution")
        part = Part("qvar", inner.group(1), inner.group(2) or "", inner.group(3) or "")
        return var_value(sh, part, state)

    def simple(match: re.Match[str]) -> str:
        return lookup_var(sh, match.group(1), state) or "0"

    text = re.sub(r"\$\{([^}]*)\}", braced, text)
    text = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*|[?$#])", simple, text)
    return arith_eval(text, lambda n: lookup_var(sh, n, state) or "", state.vars.__setitem__)


def expand_word(sh: Interpreter, word: Word, state: ShellState, glob: bool = True) -> list[str]:
    """Expand into fields: variables, field splitting of unquoted results, globs."""
    parts = word.parts
    if parts and all(part.kind == "lit" for part in parts):
        # Plain unquoted text (most words): one field, or its glob matches.
        text = parts[0].text if len(parts) == 1 else "".join(p.text for p in parts)
        if glob and VirtualFS.has_magic(text):
            matches = sh.fs.glob(text, state.cwd)
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
        elif part.kind in ("qvar", "qcmdsub"):
            fields[-1].append((_value(sh, part, state), False))
            quoted[-1] = True
        elif part.kind == "arith":
            number = arith(sh, part.text, state)
            fields[-1].append((str(number), False))
        elif part.kind in ("var", "cmdsub"):
            value = _value(sh, part, state)
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
            matches = sh.fs.glob(pattern, state.cwd)
            if matches:
                result.extend(matches)
                continue
        result.append(text)
    return result


def expand_string(sh: Interpreter, word: Word, state: ShellState) -> str:
    """Expand without splitting or globbing (assignments, redirect targets)."""
    out: list[str] = []
    for part in word.parts:
        if part.kind in ("lit", "qlit"):
            out.append(part.text)
        elif part.kind in ("var", "qvar", "cmdsub", "qcmdsub"):
            out.append(_value(sh, part, state))
        elif part.kind == "arith":
            out.append(str(arith(sh, part.text, state)))
    return "".join(out)


def expand_pattern(sh: Interpreter, word: Word, state: ShellState) -> str:
    """A `case` pattern: expanded without splitting; quoted text matches only itself."""
    out: list[str] = []
    for part in word.parts:
        if part.kind == "lit":
            out.append(part.text)
        elif part.kind in ("var", "cmdsub"):
            out.append(_value(sh, part, state))
        elif part.kind == "qlit":
            out.append(_glob_escape(part.text))
        elif part.kind in ("qvar", "qcmdsub"):
            out.append(_glob_escape(_value(sh, part, state)))
        elif part.kind == "arith":
            out.append(str(arith(sh, part.text, state)))
    return "".join(out)


def _value(sh: Interpreter, part: Part, state: ShellState) -> str:
    """A parameter's value, or what a command substitution printed without its trailing
    newlines: it runs in a subshell, over the emulated commands like any other."""
    if part.kind in ("cmdsub", "qcmdsub"):
        return sh.substitute(part.text, state).rstrip("\n")
    return var_value(sh, part, state)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
