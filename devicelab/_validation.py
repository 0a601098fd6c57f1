"""Validation shared by scenario files and plugin ``Options``: one strict pydantic setup and
the words our messages use for types.

pydantic v2 rather than msgspec or hand-written checks: each of its errors is structured
(kind, location, input, the limit that failed), so :mod:`devicelab._scenario` and
:func:`devicelab.parse_options` turn every one into our own message naming the file, table,
key and fix; msgspec reports a single preformatted string. Strict mode keeps TOML's types
honest (no ``"3"`` for 3, no ``true`` for 1), while an integer is still accepted as a number.
Annotations of every kind (``Literal``, lists, optionals, nested dataclasses) are understood
without code of ours.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Literal

from pydantic import ConfigDict, TypeAdapter
from typing_extensions import NotRequired, Required, TypedDict

STRICT = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)

_NAMES: dict[type, str] = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    tuple: "a list",
    dict: "a table",
}


def type_name(t: type) -> str:
    """How a message names a TOML value's type: ``an integer``, ``a table``, ..."""
    return _NAMES.get(t, t.__name__)


def as_toml(value: Any) -> Any:
    """A value as TOML writes it: tuples as lists, tables copied."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: as_toml(v) for k, v in value.items()}
    return value


def expected(annotation: Any) -> str:
    """What a value of ``annotation`` must be, in a message's words (``an integer``, ...)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return expected(args[0])
    if origin is Literal:
        return " or ".join(sorted({type_name(type(a)) for a in args}))
    if args and origin not in (list, tuple, dict):  # X | None, X | Y
        return " or ".join(expected(a) for a in args)
    if annotation is float:  # an integer is accepted where a number is asked for
        return "an integer or a number"
    return type_name(origin or annotation)


_ADAPTERS: dict[type[Any], TypeAdapter[dict[str, Any]]] = {}


def options_adapter(options_type: type[Any]) -> TypeAdapter[dict[str, Any]]:
    """A strict validator of an options dataclass's fields, from their annotations.

    Built once per class. A TypedDict rather than a model: option names such as ``model``
    or ``json`` would clash with a model's own attributes.
    """
    if options_type in _ADAPTERS:
        return _ADAPTERS[options_type]
    try:
        hints = typing.get_type_hints(options_type, include_extras=True)
    except Exception:  # names the annotations use are out of reach: check keys, not types
        hints = {}
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(options_type):
        kind = hints.get(f.name, Any)
        no_default = f.default is dataclasses.MISSING
        no_default = no_default and f.default_factory is dataclasses.MISSING
        fields[f.name] = Required[kind] if no_default else NotRequired[kind]
    # Built at run time from the dataclass, so a type checker cannot follow it.
    shape = typing.cast(Any, TypedDict)(options_type.__name__, fields)
    shape.__pydantic_config__ = STRICT
    adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(shape)
    return _ADAPTERS.setdefault(options_type, adapter)


def validate_options(options_type: type[Any], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` checked against the dataclass's annotations; raises ValidationError.

    Values are read as JSON would be (TOML's arrays fill tuples, its tables fill nested
    dataclasses) and strictly; values JSON cannot hold are checked as Python objects.
    """
    adapter = options_adapter(options_type)
    try:
        text = json.dumps(values)
    except (TypeError, ValueError):
        return adapter.validate_python(values)
    return adapter.validate_json(text)
