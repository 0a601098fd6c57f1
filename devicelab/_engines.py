"""Open a registered model on a device outside a run: for a judge metric, a tokenizer count.

A run opens its device and engines in the scheduler; tools that need a model for something
else (``devicelab corpus validate --model``, a G-Eval judge in the scoring process) use
:func:`open_engine`, which resolves names exactly as a scenario's ``[device]`` and
``[[models]]`` are resolved, so one name means one thing everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._api import Engine, ModelSpec
from ._catalogue import ensure_file
from ._registry import Registry
from ._runtime.resolve import resolve_device, resolve_engine
from ._scenario import Scenario


@contextmanager
def open_engine(
    registry: Registry,
    model: str | ModelSpec,
    device: str = "host",
    options: Mapping[str, Any] | None = None,
    scenario_source: Path | None = None,
) -> Iterator[Engine]:
    """A loaded engine for ``model`` (a registered name or a spec) on ``device``; closed (with
    the device) when the block ends. ``options`` are the engine's options, as in
    ``[models.options]``; device profiles are looked up beside ``scenario_source``, as a
    scenario's are."""
    spec = model if isinstance(model, ModelSpec) else registry.model(model)
    ensure_file(spec)
    source = scenario_source or Path.cwd() / "(devicelab)"
    where = Scenario(source=source, name="open_engine", device=device)
    device_type, name, profile = resolve_device(where, registry)
    resolved = resolve_engine(
        spec, registry, device_type.engine_kind, options or {}, f"model {spec.name!r}"
    )
    opened = device_type.open(name, profile)
    try:
        opened.open()
        engine = resolved.engine_cls(opened, spec, resolved.options)
        try:
            engine.load()
            yield engine
        finally:
            engine.close()
    finally:
        try:
            opened.close()
        finally:
            device_type.release(opened)
