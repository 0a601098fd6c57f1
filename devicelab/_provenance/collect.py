"""Collecting provenance (impure: files, git, the host, the loaded plugins).

What is collected and how it is keyed is told in :mod:`devicelab._provenance`. Hashing a
model file costs about a second per 100 MB, so its sha256 is cached in the user's cache
directory by path, size and modification time, and recomputed only when one changes.
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
from functools import cache
from pathlib import Path
from typing import Any

from .._api import cache_dir

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
    return {"version": version, "git": git_info(Path(__file__).resolve().parents[2])}


def plugin_info() -> dict[str, Any]:
    """Every selected plugin (entry point name) -> its distribution and version."""
    from .._plugins import plugin_distributions

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
