"""Command-line options as toybox reads them: short flags clustered (`-rf`) anywhere
before `--`, options that take a value (`-e X`, `-eX`), optionally long options kept whole."""

from __future__ import annotations


def parse_options(
    args: list[str], flags: str, valued: str = "", long: bool = False
) -> tuple[set[str], list[tuple[str, str]], list[str]]:
    """(flags seen, (option, value) pairs in order, operands). An argument that is not a
    cluster of known flags (`-5`, `-`) is an operand; with long, `--name` is a flag."""
    opts: set[str] = set()
    values: list[tuple[str, str]] = []
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands.extend(args[i:])
            break
        if long and arg.startswith("--"):
            opts.add(arg)
            continue
        cluster = arg[1:]
        end = next((j for j, ch in enumerate(cluster) if ch in valued), len(cluster))
        if not arg.startswith("-") or not cluster or any(c not in flags for c in cluster[:end]):
            operands.append(arg)
            continue
        opts.update(cluster[:end])
        if end < len(cluster):
            value = cluster[end + 1 :]
            if not value and i < len(args):
                value = args[i]
                i += 1
            values.append((cluster[end], value))
    return opts, values, operands
