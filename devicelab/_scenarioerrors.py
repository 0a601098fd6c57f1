"""A scenario file's validation errors as our messages: each names the file's table and key,
what is wrong and the fix. pydantic reports structured errors (:mod:`devicelab._validation`
says why pydantic); this turns one into a sentence.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails, PydanticCustomError

from ._validation import expected, type_name


@dataclass(frozen=True)
class As:
    """The :class:`~devicelab._scenario.Scenario` attribute a key fills, where it is not the
    key's own name."""

    attr: str


@dataclass(frozen=True)
class Each:
    """What a list's entries must be; said, with the whole list, when one is not."""

    says: str


def fail(why: str, key: str | None = None, table: str | None = None) -> PydanticCustomError:
    """A check of ours, reported like pydantic's own. ``table``/``key`` name the place where
    pydantic's location is not the one to name; ``table=""`` says the message stands alone."""
    return PydanticCustomError("devicelab", "{why}", {"why": why, "key": key, "table": table})


def explain(err: ErrorDetails, data: dict[str, Any], tables: Mapping[str, type[BaseModel]]) -> str:
    """One of pydantic's errors on the scenario file ``data`` (whose tables are declared by
    ``tables``) as our message: ``[table] key: what is wrong. The fix.``"""
    loc, kind, value = err["loc"], err["type"], err["input"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind == "devicelab" and ctx["table"] == "":
        return str(ctx["why"])
    if not loc:
        return f"must be a table of tables, not {type_name(type(value))}."
    table = str(loc[0])
    if len(loc) == 1 and kind == "extra_forbidden":
        return f"[{table}] is not a known table (known: {', '.join(sorted(tables))}). {_RESPELL}"
    if len(loc) == 1 and kind == "missing":
        if table == "models":
            return (
                "[[models]] is missing. Add at least one, for example:\n[[models]]\n"
                'name = "smollm2-135m-instruct"\nengine = "llama.cpp"\nquant = "q4_1"'
            )
        return f"the [{table}] table is missing. Add it (see scenarios/smoke.toml)."
    rest = loc[1:]
    if table == "models":
        if not rest or kind == "too_short":
            return "[[models]] must be an array of tables with at least one."
        table, rest = f"models.{rest[0]}", rest[1:]
    key = str(rest[0]) if rest else None
    if kind == "devicelab":
        table = ctx["table"] or table
        key = ctx["key"] or key
        why = str(ctx["why"])
    elif key is None:
        why = f"must be a table, not {type_name(type(value))} ({value!r})."
    else:
        whole = _raw(data, loc[: len(loc) - len(rest) + 1])
        why = _why(tables[str(loc[0])], table, key, err, whole)
    return f"[{table}]" + (f" {key}" if key else "") + f": {why}"


_RESPELL = "Remove it or fix its spelling."


def _raw(data: Any, loc: tuple[int | str, ...]) -> Any:
    """The value the user wrote at ``loc`` (None where there is none)."""
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _why(table: type[BaseModel], shown: str, key: str, err: ErrorDetails, whole: Any) -> str:
    kind, value = err["type"], err["input"]
    if kind == "extra_forbidden":
        known = ", ".join(sorted(table.model_fields))
        return f"is not a known key (known keys in [{shown}]: {known}). {_RESPELL}"
    if kind == "missing":
        return "is required but missing. Add it."
    info = table.model_fields[key]
    each = next((m.says for m in info.metadata if isinstance(m, Each)), None)
    if each and kind != "list_type":
        return f"{each}, not {whole!r}."
    if kind == "greater_than_equal":
        return f"must be at least {err['ctx']['ge']:g}, not {value!r}."
    if kind == "greater_than":
        return f"must be above {err['ctx']['gt']:g}, not {value!r}."
    if kind == "literal_error" and isinstance(value, str):
        allowed = " or ".join(f'"{a}"' for a in typing.get_args(info.annotation))
        return f"must be {allowed}, not {value!r}."
    return f"must be {expected(info.annotation)}, not {type_name(type(value))} ({value!r})."
