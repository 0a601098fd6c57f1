"""Quantised models on demand: pick a registered :class:`~devicelab.Quantizer`, make the
file once and keep it in the user's cache.

``devicelab quantize`` and the scheduler (a scenario asking a registered model for a
quantisation it does not ship) both come through here, so they share one cache: a file made by
the command is reused by a run, and the other way round. Beside each output a small JSON file
records the source it was made from (path, size, mtime), so a changed source is quantised again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._api import ModelSpec, Quantizer, QuantizeResult, cache_dir, is_gguf
from ._catalogue import ensure_file, needs_ensure
from ._errors import ModelError, ScenarioError, UsageError
from ._registry import Registry
from ._runtime.plan import QuantJob

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    """What to quantise: a registered model, or a file or directory the user named."""

    name: str
    path: Path
    engine: str | None
    quant: str | None


def models_dir() -> Path:
    return cache_dir() / "models"


def supported(registry: Registry) -> str:
    """Each backend's types, for error messages: ``gguf: Q4_0, Q8_0; mlc: q4f16_1``."""
    rows = [f"{name}: {', '.join(q.types)}" for name, (_, q) in sorted(registry.quantizers.items())]
    return "; ".join(rows) or "none (no quantiser plugin is loaded)"


def find_quantizer(
    registry: Registry, qtype: str, backend: str | None = None, engine: str | None = None
) -> tuple[Quantizer, str]:
    """The quantiser that makes ``qtype`` (any case) and its canonical spelling of it.

    With several candidates, ``backend`` picks one by name; otherwise the one whose output
    runs on ``engine`` wins. Raises :class:`UsageError` naming what each backend can make.
    """
    if backend is not None:
        if backend not in registry.quantizers:
            known = ", ".join(sorted(registry.quantizers)) or "none"
            raise UsageError(
                f"no quantiser backend called {backend!r}. Registered backends: {known}."
                f"{registry.broken_note()}"
            )
        q = registry.quantizers[backend][1]
        canonical = q.canonical(qtype)
        if canonical is None:
            raise UsageError(
                f"quantiser {backend!r} cannot make {qtype!r}. It makes: {', '.join(q.types)}. "
                f"All backends: {supported(registry)}."
            )
        return q, canonical
    found = [
        (q, c)
        for _, (_, q) in sorted(registry.quantizers.items())
        if (c := q.canonical(qtype)) is not None
    ]
    if not found:
        raise UsageError(
            f"no quantiser can make {qtype!r}. Types each backend supports: "
            f"{supported(registry)}.{registry.broken_note()}"
        )
    if engine is not None:
        for q, c in found:
            if engine in q.engines:
                return q, c
    return found[0]


def resolve_source(registry: Registry, model: str) -> Source:
    """A registered model's name, or a path to a model file or directory."""
    if model in registry.models:
        spec = registry.models[model][1]
        ensure_file(spec)
        if spec.path is None:
            raise ModelError(
                f"model {model!r} has no weights file to quantise (its engine carries it)."
            )
        return Source(model, spec.path, spec.engine, spec.quant)
    path = Path(model).expanduser()
    if path.exists():
        name = path.name if path.is_dir() else path.stem
        return Source(name, path.resolve(), "llama.cpp" if _gguf(path) else None, None)
    known = ", ".join(sorted(registry.models)) or "none"
    raise ModelError(
        f"{model!r} is neither a registered model nor an existing file or directory. "
        f"Registered models: {known}. Or give the path to a GGUF file (or, for MLC, a "
        f"Hugging Face model directory).{registry.broken_note()}"
    )


def _gguf(path: Path) -> bool:
    return path.is_file() and is_gguf(path)


def default_out(source: Source, quantizer: Quantizer, qtype: str) -> Path:
    out = models_dir() / f"{source.name}-{qtype.lower()}{quantizer.suffix}"
    # A shipped file can live in the same cache under the same name (Gemma's assembled
    # Q4_K_M): quantising it to its own type must make a new file, not write over its source.
    if out.resolve() == source.path.resolve():
        out = out.with_name(f"{source.name}-{qtype.lower()}-requantised{quantizer.suffix}")
    return out


def _stamp(source: Path) -> dict[str, Any]:
    st = source.stat()
    return {"source": str(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def cached(out: Path, source: Path, backend: str, qtype: str) -> QuantizeResult | None:
    """The result recorded beside ``out``, if ``out`` was made from ``source`` as it is now."""
    try:
        meta = json.loads(_sidecar(out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not out.exists() or meta.get("made_from") != _stamp(source):
        return None
    if meta.get("backend") != backend or meta.get("qtype") != qtype:
        return None
    r = meta["result"]
    return QuantizeResult(
        path=out,
        size_bytes=int(r["size_bytes"]),
        bits_per_weight=r.get("bits_per_weight"),
        params=r.get("params"),
        backend=backend,
        qtype=qtype,
        seconds=float(r.get("seconds", 0.0)),
        details=r.get("details", {}),
    )


def make(
    quantizer: Quantizer, source: Path, qtype: str, out: Path, progress: Progress
) -> QuantizeResult:
    """Run ``quantizer`` and record what it made beside ``out`` for :func:`cached`."""
    if out.resolve() == source.resolve():
        raise UsageError(
            f"--out {out} is the model file being quantised: writing it would destroy the "
            "source. Give another --out path, or leave --out out (the model cache)."
        )
    quantizer.check()
    out.parent.mkdir(parents=True, exist_ok=True)
    result = quantizer.quantize(source, qtype, out, progress)
    meta = {
        "backend": quantizer.backend,
        "qtype": qtype,
        "made_from": _stamp(source),
        "result": {
            "size_bytes": result.size_bytes,
            "bits_per_weight": result.bits_per_weight,
            "params": result.params,
            "seconds": result.seconds,
            "details": dict(result.details),
        },
    }
    _sidecar(out).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return result


def plan_quant(
    spec: ModelSpec, quant: str, registry: Registry, where: str
) -> tuple[ModelSpec, QuantJob | None]:
    """``spec`` (a registered model) as ``quant``, and the job that makes its file if it is
    not in the cache yet (``None`` when it is). Makes nothing.

    Raises :class:`ScenarioError` listing what can be made when no registered quantiser for
    the engine makes ``quant``.
    """
    usable = [q for _, (_, q) in sorted(registry.quantizers.items()) if spec.engine in q.engines]
    makes = [(q, c) for q in usable if (c := q.canonical(quant)) is not None]
    if spec.path is None or not makes:
        can = "; ".join(f"{q.backend}: {', '.join(q.types)}" for q in usable)
        also = (
            f"A registered quantiser can make for {spec.engine!r}: {can}."
            if can and spec.path is not None
            else f"No registered quantiser makes models for {spec.engine!r}."
        )
        raise ScenarioError(
            f"{where}: quant {quant!r} is not available for this model (it ships as "
            f"{spec.quant!r}). {also} Set quant to one of these, or point path at a model "
            f"file of the quantisation you want.{registry.broken_note()}"
        )
    quantizer, canonical = makes[0]
    source = Source(spec.name, spec.path, spec.engine, spec.quant)
    out = default_out(source, quantizer, canonical)
    made = ModelSpec(
        name=spec.name,
        engine=spec.engine,
        quant=quant,
        path=out,
        description=f"{spec.description} (quantised to {canonical} by devicelab)".strip(),
    )
    # A source still to be assembled has no stamp to match yet: run_job looks again once
    # materialise has assembled it.
    if not needs_ensure(spec) and cached(out, spec.path, quantizer.backend, canonical):
        return made, None
    return made, QuantJob(spec, quantizer.backend, canonical, out, quant)


def run_job(job: QuantJob, registry: Registry, progress: Progress) -> QuantizeResult:
    """Make the file of ``job`` (once: a file another process made meanwhile is reused)."""
    assert job.source.path is not None
    quantizer = registry.quantizers[job.backend][1]
    found = cached(job.out, job.source.path, job.backend, job.qtype)
    if found is not None:
        return found
    quantizer.check()
    progress(f"quantising {job.source.name} to {job.asked} (once, cached in {job.out.parent})")
    return make(quantizer, job.source.path, job.qtype, job.out, lambda text: progress(f"  {text}"))
