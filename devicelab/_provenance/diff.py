"""Comparing provenance (pure: data in, data out): a load entry's digest, how run.json
stores a load beside the run's own entries, and the differences between two runs' builds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Keys a load entry shares with the run's provenance: kept in a load only where they differ.
SESSION_KEYS = ("host", "devicelab", "plugins")


def digest(entry: Mapping[str, Any]) -> str:
    """A short, stable id of a load entry: the first 12 hex digits of its JSON's sha256."""
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def compact_load(entry: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` without the session keys whose value equals the run's."""
    return {k: v for k, v in entry.items() if not (k in SESSION_KEYS and run.get(k) == v)}


def load_entry(load: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """A load entry of run.json with the run's values filled in where it left them out."""
    return {**{k: run[k] for k in SESSION_KEYS if k in run}, **load}


# --- differences -----------------------------------------------------------------------------


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested keys dotted: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; an empty table gives no
    key, so ``{}`` and a table that is not there compare equal."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def comparable(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """A run's provenance as dotted keys, loads keyed by ``models.MODEL/QUANT`` (several loads
    of one model, on several phones, give the list of their distinct values). None when the
    run.json has no provenance (a run made before devicelab recorded it)."""
    prov = meta.get("provenance")
    if not isinstance(prov, Mapping):
        return None
    out = flatten({k: v for k, v in prov.items() if k != "loads"})
    per_model: dict[str, dict[str, list[Any]]] = {}
    for load in (prov.get("loads") or {}).values():
        model = dict(load.get("model") or {})
        key = f"models.{model.pop('name', '?')}/{model.pop('quant', '?')}"
        # The device's name is how this run called it (compare matches cells without it).
        rest = {k: v for k, v in load.items() if k not in ("model", "device")}
        values = per_model.setdefault(key, {})
        for k, v in flatten({**rest, "model": model}, key + ".").items():
            seen = values.setdefault(k, [])
            if v not in seen:
                seen.append(v)
    for values in per_model.values():
        for k, seen in values.items():
            out[k] = seen[0] if len(seen) == 1 else sorted(seen, key=_show)
    return out


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:79] + "…"


def differences(meta_a: Mapping[str, Any], meta_b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, A's value, B's value) for each provenance field that differs; models that
    only one run has are left out (compare reports them apart)."""
    a, b = comparable(meta_a), comparable(meta_b)
    if a is None or b is None:
        return []
    models_a = {k.split(".")[1] for k in a if k.startswith("models.")}
    models_b = {k.split(".")[1] for k in b if k.startswith("models.")}
    shared = models_a & models_b
    out = []
    for key in sorted(set(a) | set(b)):
        if key.startswith("models.") and key.split(".")[1] not in shared:
            continue
        va, vb = a.get(key), b.get(key)
        if va != vb:
            out.append((key, va, vb))
    return out


def report(
    meta_a: Mapping[str, Any], meta_b: Mapping[str, Any], name_a: str, name_b: str, limit: int = 30
) -> list[str]:
    """The compact "provenance differs:" block for two runs' run.json (no lines when nothing
    differs); one line saying so when a run has no provenance."""
    missing = [n for n, m in ((name_a, meta_a), (name_b, meta_b)) if comparable(m) is None]
    if missing:
        return [
            f"provenance: {' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} none "
            "(run.json written before devicelab recorded it), so builds cannot be compared."
        ]
    diffs = differences(meta_a, meta_b)
    if not diffs:
        return []
    lines = [f"provenance differs ({name_a} -> {name_b}):"]
    for key, va, vb in diffs[:limit]:
        lines.append(f"  {key}: {_value(va)} -> {_value(vb)}")
    if len(diffs) > limit:
        lines.append(f"  ... and {len(diffs) - limit} more (see the runs' run.json)")
    return lines


def _value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return _show(v)
