"""The hook reference (docs/hooks.md), generated from :mod:`devicelab._hookspecs`.

Regenerate it after changing a hook::

    python -m devicelab._hookdoc > docs/hooks.md

tests/test_hookdoc.py fails while docs/hooks.md differs from :func:`render`.
"""

from __future__ import annotations

import inspect
import re
import sys

from . import _hookspecs as hookspecs

COMMAND = "python -m devicelab._hookdoc > docs/hooks.md"


def hook_names() -> list[str]:
    """The hooks devicelab has, in the order :mod:`devicelab._hookspecs` defines them."""
    functions = inspect.getmembers(hookspecs, inspect.isfunction)
    specs = [f for name, f in functions if name.startswith("devicelab_")]
    return [f.__name__ for f in sorted(specs, key=lambda f: f.__code__.co_firstlineno)]


def _markdown(doc: str) -> str:
    """reST roles and literals as Markdown: :class:`~a.B` -> `B`, :mod:`a.b` -> `a.b`,
    ``x`` -> `x`, :param x: -> **`x`**:."""
    doc = re.sub(r":(?:class|func|meth|mod|exc|data):`~[^`]*?([^.`]+)`", r"`\1`", doc)
    doc = re.sub(r":(?:class|func|meth|mod|exc|data):`([^`]+)`", r"`\1`", doc)
    doc = re.sub(r":param (\w+):", r"**`\1`**:", doc)
    return doc.replace("``", "`")


LINE = 100  # pyproject's line-length


def render() -> str:
    """docs/hooks.md: each hook's signature (as written in _hookspecs.py) and docstring."""
    lines = [
        "# Hook reference",
        "",
        f"Generated from `devicelab/_hookspecs.py` by `{COMMAND}`; do not edit by hand.",
        "A plugin implements a hook with a function of the same name marked",
        "`@devicelab.hookimpl`, taking the arguments below by name (a subset is allowed).",
        "",
        _markdown(inspect.cleandoc(hookspecs.__doc__ or "")),
        "",
    ]
    for name in hook_names():
        func = getattr(hookspecs, name)
        params = ", ".join(
            f"{p.name}: {p.annotation}" if p.annotation is not p.empty else p.name
            for p in inspect.signature(func).parameters.values()
        )
        returns = inspect.signature(func).return_annotation
        signature = f"def {name}({params}) -> {returns}: ..."
        if len(signature) > LINE:  # wrapped as ruff format wraps it (it checks the docs too)
            signature = f"def {name}(\n    {params}\n) -> {returns}: ..."
        lines += [
            f"## `{name}`",
            "",
            "```python",
            "@devicelab.hookimpl",
            signature,
            "```",
            "",
            _markdown(inspect.cleandoc(func.__doc__ or "(not documented)")),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
