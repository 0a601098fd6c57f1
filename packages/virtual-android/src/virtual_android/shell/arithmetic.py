"""$((...)): integers only, evaluated by a small recursive-descent parser."""

from __future__ import annotations

import re
from collections.abc import Callable

from .lexer import ShellSyntaxError

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
