"""Engine, metric and collector options: a plugin's ``Options`` dataclass filled from a
scenario's table, each value checked against its annotation, every mistake named in a
sentence that says where it is and how to fix it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ._errors import ScenarioError
from ._validation import type_name, validate_options


def parse_options(options_type: type[Any], values: Mapping[str, Any], where: str) -> Any:
    """Build an options dataclass, its values checked against its annotations (any type:
    ``Literal``, lists, optionals, nested dataclasses); unknown and wrong values are named."""
    accepted = {f.name: f for f in dataclasses.fields(options_type)}
    unknown = sorted(set(values) - set(accepted))
    if unknown:
        known = ", ".join(sorted(accepted)) or "none"
        raise ScenarioError(
            f"{where}: unknown option {', '.join(map(repr, unknown))}. "
            f"Options accepted here: {known}."
        )
    try:
        checked = validate_options(options_type, dict(values))
    except ValidationError as exc:
        raise ScenarioError(f"{where}: {_option_error(exc, accepted, values)}") from None
    return options_type(**checked)


def _option_error(
    exc: Any, accepted: Mapping[str, dataclasses.Field[Any]], values: Mapping[str, Any]
) -> str:
    """The first of pydantic's errors as our sentence: the option, what it must be, and what
    it is."""
    err = exc.errors()[0]
    key, *inner = err["loc"]
    declared = accepted[str(key)].type
    wanted = declared if isinstance(declared, str) else getattr(declared, "__name__", declared)
    if err["type"] == "missing" and not inner:
        return f"option {key!r} is required but missing. Add it ({key} = ...)."
    value = values[str(key)]
    if err["type"] == "literal_error" and not inner:
        wanted = err["ctx"]["expected"]
    said = f"must be {wanted}, not {type(value).__name__} ({value!r})."
    if not inner:
        return f"option {key!r} {said}"
    at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in inner)
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"option {key!r}: {key}{at} is not a known key. Remove it or fix its spelling."
    got = err["input"]
    why = err["msg"][:1].lower() + err["msg"][1:]
    return (
        f"option {key!r} must be {wanted}: at {key}{at}, {why}, "
        f"not {type_name(type(got))} ({got!r})."
    )
