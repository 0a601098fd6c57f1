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

from .api import Engine, parse_options
from .plugin_manager import Registry
from .scenario import Scenario
from .scheduler import resolve_device


@contextmanager
def open_engine(
    registry: Registry,
    model: str,
    device: str = "host",
    options: Mapping[str, Any] | None = None,
    scenario_source: Path | None = None,
) -> Iterator[Engine]:
    """A loaded engine for the registered ``model`` on ``device``; closed (with the device)
    when the block ends. ``options`` are the engine's options, as in ``[models.options]``;
    device profiles are looked up beside ``scenario_source``, as a scenario's are."""
    spec = registry.model(model)
    source = scenario_source or Path.cwd() / "(devicelab)"
    where = Scenario(source=source, name="open_engine", device=device)
    device_type, name, profile = resolve_device(where, registry)
    engine_cls = registry.engine_for(spec.engine, device_type.engine_kind)
    engine_options = parse_options(engine_cls.Options, dict(options or {}), f"model {model!r}")
    engine_cls.check_model(spec)
    opened = device_type.open(name, profile)
    try:
        opened.open()
        engine = engine_cls(opened, spec, engine_options)
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
