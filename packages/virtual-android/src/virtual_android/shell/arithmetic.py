"""$((...)): mksh's integer arithmetic (32-bit, C's operators and precedence, assignment),
evaluated by a small precedence-climbing parser."""

from __future__ import annotations

import re
from collections.abc import Callable

from .lexer import ShellSyntaxError

_TOKEN = re.compile(
    r"\s*(?:(0[xX][0-9a-fA-F]+|\d+)|([A-Za-z_][A-Za-z0-9_]*)|(\$\{?[A-Za-z_?#][A-Za-z0-9_]*\}?)"
    r"|(<<=|>>=|\+=|-=|\*=|/=|%=|&=|\^=|\|=|<=|>=|==|!=|&&|\|\||<<|>>|[-+*/%()<>!~&^|?:=,]))"
)
# Binary operators from the loosest to the tightest, as in C.
_LEVELS = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">=")]
_LEVELS += [("<<", ">>"), ("+", "-"), ("*", "/", "%")]
_ASSIGNMENTS = {"=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>=", "&=", "^=", "|="}


def _int32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


def _binary(op: str, left: int, right: int, expr: str) -> int:
    if op in ("/", "%"):
        if right == 0:
            raise ShellSyntaxError(f"{expr}: zero divisor")
        # C truncates toward zero; Python's // floors.
        quotient = abs(left) // abs(right) * (1 if (left >= 0) == (right >= 0) else -1)
        return quotient if op == "/" else left - right * quotient
    if op in ("<<", ">>"):
        return left << (right & 31) if op == "<<" else left >> (right & 31)
    table: dict[str, Callable[[int, int], int | bool]] = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "&": lambda a, b: a & b,
        "^": lambda a, b: a ^ b,
        "|": lambda a, b: a | b,
        "&&": lambda a, b: bool(a) and bool(b),
        "||": lambda a, b: bool(a) or bool(b),
    }
    return _int32(int(table[op](left, right)))


def arith_eval(
    expr: str,
    lookup: Callable[[str], str],
    assign: Callable[[str, str], None] | None = None,
) -> int:
    """The value of expr; names are read with lookup (unset or not a number is 0) and
    written with assign (`X+=2`)."""
    tokens: list[str] = []
    kinds: list[str] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if not match or match.end() == pos:
            raise ShellSyntaxError(f"{expr}: unexpected '{expr[pos:].split()[0][:1]}'")
        number, name, var, op = match.groups()
        if var is not None:
            name = var.strip("${}")
        tokens.append(number or name or op)
        kinds.append("number" if number else "name" if name else "op")
        pos = match.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    index = 0

    def peek() -> str:
        return tokens[index] if index < len(tokens) and kinds[index] == "op" else ""

    def unexpected() -> ShellSyntaxError:
        found = tokens[index] if index < len(tokens) else "end of expression"
        return ShellSyntaxError(f"{expr}: unexpected '{found}'")

    def value_of(name: str) -> int:
        text = lookup(name).strip()
        try:
            return _int32(int(text, 16) if text.lower().startswith("0x") else int(text or "0"))
        except ValueError:
            return 0

    def comma() -> int:
        nonlocal index
        value = assignment()
        while peek() == ",":
            index += 1
            value = assignment()
        return value

    def assignment() -> int:
        nonlocal index
        if (
            index + 1 < len(tokens)
            and kinds[index] == "name"
            and kinds[index + 1] == "op"
            and tokens[index + 1] in _ASSIGNMENTS
        ):
            name, op = tokens[index], tokens[index + 1]
            index += 2
            value = assignment()
            if op != "=":
                value = _binary(op[:-1], value_of(name), value, expr)
            if assign is not None:
                assign(name, str(value))
            return value
        return conditional()

    def conditional() -> int:
        nonlocal index
        condition = binary(0)
        if peek() != "?":
            return condition
        index += 1
        when_true = assignment()
        if peek() != ":":
            raise unexpected()
        index += 1
        when_false = assignment()
        return when_true if condition else when_false

    def binary(level: int) -> int:
        nonlocal index
        if level == len(_LEVELS):
            return unary()
        value = binary(level + 1)
        while peek() in _LEVELS[level]:
            op = tokens[index]
            index += 1
            value = _binary(op, value, binary(level + 1), expr)
        return value

    def unary() -> int:
        nonlocal index
        op = peek()
        if op in ("-", "+", "!", "~"):
            index += 1
            operand = unary()
            return _int32({"-": -operand, "+": operand, "!": int(not operand), "~": ~operand}[op])
        return primary()

    def primary() -> int:
        nonlocal index
        if index >= len(tokens):
            raise unexpected()
        token, kind = tokens[index], kinds[index]
        if kind == "number":
            index += 1
            return _int32(int(token, 16) if token[:2].lower() == "0x" else int(token))
        if kind == "name":
            index += 1
            return value_of(token)
        if token == "(":
            index += 1
            value = comma()
            if peek() != ")":
                raise unexpected()
            index += 1
            return value
        raise unexpected()

    if not tokens:
        return 0
    result = comma()
    if index != len(tokens):
        raise unexpected()
    return result
