"""Helpers for testing plugins: a registry with your plugin in it, a tiny scenario, a run.

::

    from devicelab.testing import make_scenario, registry_with, run_scenario
    import devicelab_example

    def test_kw_runs(tmp_path):
        registry = registry_with(devicelab_example)
        records = run_scenario(make_scenario(tmp_path, kinds=["KW"]), registry)
        assert records[0]["status"] == "ok"

:func:`installed_plugin` (and the ``devicelab_plugin`` pytest fixture built on it) goes one
step further: it installs a plugin object behind a throwaway ``devicelab`` entry point, so
everything that loads plugins (``devicelab plugins``, ``devicelab run``) sees it.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import types
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import tomli_w

from . import _plugins as plugin_manager
from ._registry import Registry
from ._runtime.pipeline import run_pipeline
from ._runtime.plan import Plan
from ._runtime.resolve import load_and_resolve

__all__ = [
    "installed_plugin",
    "make_scenario",
    "plan_scenario",
    "plugin_name",
    "registry_with",
    "reset_plugins",
    "run_cli",
    "run_scenario",
]


def reset_plugins() -> None:
    """Forget the plugins this process loaded: the next use loads them again, as the
    environment (``DEVICELAB_PLUGINS``, ``DEVICELAB_DISABLE_PLUGINS``) now says."""
    plugin_manager.reset()


def run_cli(args: Sequence[str]) -> int:
    """Run the ``devicelab`` command line in-process with ``args``; its exit code."""
    from ._cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def plan_scenario(path: Path, registry: Registry | None = None, device: str | None = None) -> Plan:
    """The plan ``devicelab run`` would make of the scenario at ``path``: every check a run
    makes before it starts, nothing run or made. Bad input raises the
    :class:`~devicelab.UsageError` the CLI would report."""
    reg = registry if registry is not None else plugin_manager.get_registry()
    return load_and_resolve(path, reg, device)


def plugin_name(plugin: object) -> str:
    """The name a plugin object is registered under: ``devicelab_example`` -> ``example``;
    an instance of ``WordsPlugin`` -> ``wordsplugin``."""
    if isinstance(plugin, types.ModuleType):
        name = plugin.__name__.rsplit(".", 1)[-1]
        return name.removeprefix("devicelab_")
    return type(plugin).__name__.lower()


def registry_with(*plugins: object) -> Registry:
    """A :class:`Registry` of the installed plugins selected by the environment
    (``DEVICELAB_PLUGINS``, ``DEVICELAB_DISABLE_PLUGINS``) plus ``plugins`` (modules or
    objects with ``@devicelab.hookimpl`` functions), each named by :func:`plugin_name`.

    Loaded exactly as ``devicelab`` loads plugins, so a misspelled hook or a duplicate name
    raises :class:`~devicelab.PluginError` here too. A plugin that is already loaded
    through its entry point is not added twice.
    """
    pm, broken = plugin_manager.new_plugin_manager()
    for plugin in plugins:
        if not pm.is_registered(plugin):
            plugin_manager.register_plugin(pm, plugin, plugin_name(plugin))
    return plugin_manager.build_registry(pm, broken)


def make_scenario(
    tmp_path: Path,
    *,
    kinds: Sequence[str],
    model: str = "smollm2-135m-instruct",
    lengths: Sequence[int] = (100,),
    sections: int = 1,
    max_output_tokens: int = 8,
    documents: str = "docassist-mini",
    max_documents: int = 1,
    repetitions: int | Literal["auto"] | None = 1,
    warmup: int = 0,
    device: str = "host",
    model_options: Mapping[str, Any] | None = None,
    model_keys: Mapping[str, Any] | None = None,
    name: str = "plugin-test",
    extra: str = "",
    scenario_keys: Mapping[str, Any] | None = None,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write a tiny scenario file into ``tmp_path`` and return its path.

    The defaults run one trial per task kind on the host: the first document of
    ``docassist-mini``, cut into one section of 100 tokens, 8 output tokens, SmolLM2-135M.
    ``repetitions=None`` leaves the key out (a ``[sustained]`` scenario has none).
    ``model_keys`` are more keys of the model's entry (``{"engine": "llama.cpp", "quant":
    "q4_1"}``; without them, the catalogue's).
    ``scenario_keys`` are more ``[scenario]`` keys (``{"max_repetitions": 6}``); ``tables``
    are more tables, or more keys of a table already written (``{"device": {"options":
    {...}}, "telemetry": {"interval_s": 1.0}}``); ``extra`` is TOML text appended as is.
    """
    model_entry: dict[str, Any] = {"name": model, **(model_keys or {})}
    if model_options:
        model_entry["options"] = dict(model_options)
    data: dict[str, Any] = {
        "scenario": {
            "name": name,
            "warmup": warmup,
            "timeout_s": 120,
            **(scenario_keys or {}),
        },
        "device": {"name": device},
        "models": [model_entry],
        "tasks": {
            "kinds": list(kinds),
            "documents": documents,
            "max_documents": max_documents,
            "max_output_tokens": max_output_tokens,
        },
        "context": {"sections": sections, "lengths": list(lengths)},
    }
    if repetitions is not None:
        data["scenario"]["repetitions"] = repetitions
    for table, keys in (tables or {}).items():
        data[table] = {**data.get(table, {}), **keys}
    path = tmp_path / f"{name}.toml"
    text = tomli_w.dumps(data)
    if extra:
        text += "\n" + extra.strip() + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def run_scenario(
    path: Path, registry: Registry | None = None, out: Path | None = None
) -> list[dict[str, Any]]:
    """Run the scenario at ``path`` as ``devicelab run`` does (the same pipeline: the
    executor the scenario names, the run hooks, summary.json) and return its trial records
    (each as its JSON form, the line ``trials.jsonl`` holds).

    ``registry`` defaults to the plugins this process loads (:func:`registry_with` adds
    yours); ``out`` (the run directory) defaults to a new directory beside the scenario.
    Bad input raises the :class:`~devicelab.UsageError` the CLI would report.
    """
    reg = registry if registry is not None else plugin_manager.get_registry()
    if out is None:
        out = Path(tempfile.mkdtemp(prefix=f"{path.stem}-run-", dir=path.parent))
    result = run_pipeline(path, reg, out=out, warn=_warn)
    return [r.to_json() for r in result.data.records]


def _warn(text: str) -> None:
    # A plugin's run hook that failed: the test's run goes on, as a user's does, and pytest
    # shows the warning in its summary.
    warnings.warn(f"devicelab: {text}", RuntimeWarning, stacklevel=3)


@contextmanager
def installed_plugin(plugin: object, name: str | None = None) -> Iterator[Registry]:
    """Install ``plugin`` behind a throwaway ``devicelab`` entry point while the block runs.

    The object is put in a module of its own, a ``devicelab-<name>`` distribution with the
    entry point ``<name> = that module:plugin`` is written to a temporary directory on
    ``sys.path``, and ``DEVICELAB_PLUGINS`` (when set) is extended with ``name``. Yields
    the registry ``devicelab`` now loads; afterwards everything is undone and the loaded
    plugins are forgotten (:func:`devicelab._plugins.reset`).
    """
    name = name or plugin_name(plugin)
    module_name = f"_devicelab_installed_{name.replace('-', '_')}"
    module = types.ModuleType(module_name)
    module.plugin = plugin  # type: ignore[attr-defined]
    saved_env = os.environ.get("DEVICELAB_PLUGINS")
    with tempfile.TemporaryDirectory(prefix="devicelab-plugin-") as site:
        info = Path(site) / f"devicelab_{name.replace('-', '_')}-0.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: devicelab-{name}\nVersion: 0.0\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(
            f"[devicelab]\n{name} = {module_name}:plugin\n", encoding="utf-8"
        )
        sys.modules[module_name] = module
        sys.path.insert(0, site)
        importlib.invalidate_caches()
        if saved_env is not None:
            os.environ["DEVICELAB_PLUGINS"] = f"{saved_env},{name}" if saved_env else name
        plugin_manager.reset()
        try:
            yield plugin_manager.get_registry()
        finally:
            if saved_env is not None:
                os.environ["DEVICELAB_PLUGINS"] = saved_env
            if site in sys.path:
                sys.path.remove(site)
            sys.modules.pop(module_name, None)
            importlib.invalidate_caches()
            plugin_manager.reset()
