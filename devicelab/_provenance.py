"""Provenance: what made a run's numbers, written to ``run.json`` (key ``provenance``).

Two levels, each computed once:

- the run's, by the driver when the run directory is made: devicelab (version, and the git
  commit and dirty flag when it runs from a checkout), every plugin's distribution and
  version, the host (CPU model, cores, frequency governor, kernel, Python) and the scenario
  file's sha256;
- a load's, by the :class:`~devicelab.DeviceSession` that loaded a model, on whatever host ran
  it (a Ray worker's included): the device and its fingerprint (a phone's build), the engine's
  build (:meth:`Engine.build_info`) and the model file (path, size, sha256). It also holds
  the session's own host, devicelab and plugins; run.json keeps those only where they differ
  from the run's (a worker elsewhere).

A trial record's ``provenance`` is the digest of its load's entry, the key of
``run.json["provenance"]["loads"]``: equal builds share one entry, and records made before
and after a change (another phone, a resumed run with a newer engine) stay apart.

Hashing a model file costs about a second per 100 MB, so its sha256 is cached in the user's
cache directory by path, size and modification time, and recomputed only when one changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import threading
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from ._api import cache_dir

# Keys a load entry shares with the run's provenance: kept in a load only where they differ.
SESSION_KEYS = ("host", "devicelab", "plugins")
HASH_CACHE = "sha256-cache.json"
_CHUNK = 1 << 20
_LOCK = threading.Lock()


# --- files -----------------------------------------------------------------------------------


def _hash_cache_file() -> Path:
    return cache_dir() / HASH_CACHE


def _read_hash_cache(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def sha256_file(path: Path) -> str:
    """The sha256 of ``path``, from the cache when its size and mtime are unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    key = str(path)
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    file = _hash_cache_file()
    with _LOCK:
        hit = _read_hash_cache(file).get(key)
    if isinstance(hit, dict) and {k: hit.get(k) for k in stamp} == stamp:
        return str(hit["sha256"])
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    with _LOCK, contextlib.suppress(OSError):
        # Re-read: another run may have added entries meanwhile. Written whole and renamed, so
        # a reader never sees half a file; two writers at once lose an entry, never the file.
        entries = _read_hash_cache(file)
        entries[key] = {**stamp, "sha256": digest}
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, file)
    return digest


def file_info(path: Path) -> dict[str, Any]:
    """``path``, ``size_bytes`` and ``sha256`` of a model file; for a directory (an MLC model),
    the total size and the sha256 of its files' relative paths and sha256s, in path order."""
    p = Path(path)
    if p.is_file():
        return {"path": str(p), "size_bytes": p.stat().st_size, "sha256": sha256_file(p)}
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.relative_to(p).as_posix()} {sha256_file(f)}\n".encode())
        return {
            "path": str(p),
            "size_bytes": sum(f.stat().st_size for f in files),
            "sha256": h.hexdigest(),
            "files": len(files),
        }
    return {"path": str(p), "size_bytes": None, "sha256": None}


# --- software --------------------------------------------------------------------------------


def git_info(directory: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` when ``directory`` is the top of a git checkout; None when it is
    not, or git is not installed. Untracked files do not count as dirty (run outputs would)."""
    git = shutil.which("git")
    if git is None:
        return None
    d = Path(directory)

    def run(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                [git, "-C", str(d), *args],
                capture_output=True,
                text=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout if proc.returncode == 0 else None

    top = run("rev-parse", "--show-toplevel", "HEAD")
    if top is None:
        return None
    lines = top.split()
    if len(lines) != 2 or Path(lines[0]).resolve() != d.resolve():
        return None  # an installed copy inside some other repository is not a checkout
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": lines[1], "dirty": None if status is None else bool(status.strip())}


@cache
def devicelab_info() -> dict[str, Any]:
    """devicelab's version, and its git commit when it runs from a checkout (else null)."""
    try:
        version: str | None = importlib.metadata.version("devicelab")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"version": version, "git": git_info(Path(__file__).resolve().parents[1])}


def plugin_info() -> dict[str, Any]:
    """Every selected plugin (entry point name) -> its distribution and version."""
    from ._plugins import plugin_distributions

    return plugin_distributions()


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            # x86 says "model name"; arm64 kernels say "Hardware" or nothing at all.
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    return platform.processor() or None


def _governor() -> str | None:
    gov = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        return gov.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


@cache
def host_info() -> dict[str, Any]:
    """The machine this process runs on."""
    import psutil

    return {
        "cpu_model": _cpu_model(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_logical": psutil.cpu_count(logical=True),
        "governor": _governor(),
        "machine": platform.machine(),
        "os": platform.system(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def scenario_info(source: Path) -> dict[str, Any]:
    p = Path(source)
    try:
        digest: str | None = hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError:
        digest = None  # a scenario made in code, with no file
    return {"path": str(p), "sha256": digest}


def session_info() -> dict[str, Any]:
    """What a session shares with the run: host, devicelab and plugins of this process."""
    return {"host": host_info(), "devicelab": devicelab_info(), "plugins": plugin_info()}


def run_provenance(scenario_source: Path) -> dict[str, Any]:
    """The run's provenance, as run.json holds it when the run starts (no loads yet)."""
    return {**session_info(), "scenario": scenario_info(scenario_source), "loads": {}}


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
