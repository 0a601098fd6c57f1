"""Loads plugins, once and lazily, and collects what they register into a :class:`Registry`.

Built-in and third-party plugins come through the same door: the ``devicelab`` entry-point
group. Two environment variables choose which load:

- ``DEVICELAB_PLUGINS=a,b``: load only these entry points (an empty value loads none);
- ``DEVICELAB_DISABLE_PLUGINS=a,b``: load all but these.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .api import (
    CollectorFactory,
    CorpusSpec,
    DeviceType,
    Engine,
    Metric,
    ModelSpec,
    Quantizer,
    Task,
)
from .errors import ModelError, PluginError, ScenarioError
from .executor import DEFAULT as DEFAULT_EXECUTOR
from .executor import Executor, LocalExecutor

ENTRY_POINT_GROUP = "devicelab"


@dataclass
class BrokenPlugin:
    name: str
    entry_point: str
    error: str


@dataclass
class Registry:
    """Everything the loaded plugins registered, each entry tagged with its plugin's name."""

    devices: dict[str, tuple[str, DeviceType]] = field(default_factory=dict)
    engines: dict[tuple[str, str], tuple[str, type[Engine]]] = field(default_factory=dict)
    models: dict[str, tuple[str, ModelSpec]] = field(default_factory=dict)
    tasks: dict[str, tuple[str, Task]] = field(default_factory=dict)
    corpora: dict[str, tuple[str, CorpusSpec]] = field(default_factory=dict)
    collectors: dict[str, tuple[str, CollectorFactory]] = field(default_factory=dict)
    metrics: dict[str, tuple[str, type[Metric]]] = field(default_factory=dict)
    quantizers: dict[str, tuple[str, Quantizer]] = field(default_factory=dict)
    # The local executor is devicelab's own, so it is there even with no plugin loaded.
    executors: dict[str, tuple[str, type[Executor]]] = field(
        default_factory=lambda: {DEFAULT_EXECUTOR: ("devicelab", LocalExecutor)}
    )
    plugins: list[str] = field(default_factory=list)
    broken: list[BrokenPlugin] = field(default_factory=list)

    def broken_note(self) -> str:
        if not self.broken:
            return ""
        names = ", ".join(f"{b.name} ({b.error})" for b in self.broken)
        return f" Note: these plugins failed to load: {names}; see `devicelab plugins`."

    def model(self, name: str) -> ModelSpec:
        """The registered model ``name``; a :class:`ModelError` naming the registered ones."""
        found = self.models.get(name)
        if found:
            return found[1]
        known = ", ".join(sorted(self.models)) or "none"
        raise ModelError(
            f"model {name!r} is not registered (registered models: {known}). Name a "
            f"registered model.{self.broken_note()}"
        )

    def engine_for(self, name: str, device_kind: str) -> type[Engine]:
        found = self.engines.get((name, device_kind))
        if found:
            return found[1]
        kinds = sorted(k for (n, k) in self.engines if n == name)
        if kinds:
            raise ScenarioError(
                f"engine {name!r} does not run on {device_kind!r} devices (it runs on: "
                f"{', '.join(kinds)}). Pick another device or engine."
            )
        known = sorted({n for (n, _) in self.engines})
        raise ScenarioError(
            f"unknown engine {name!r}. Registered engines: {', '.join(known) or 'none'}. "
            f"Install the plugin that provides it, or fix the name.{self.broken_note()}"
        )

    def summary(self) -> list[dict[str, Any]]:
        """Per plugin, what it registered: the data behind ``devicelab plugins``."""
        rows: dict[str, dict[str, Any]] = {p: {"name": p, "registered": {}} for p in self.plugins}

        def add(plugin: str, what: str, name: str) -> None:
            row = rows.setdefault(plugin, {"name": plugin, "registered": {}})
            row["registered"].setdefault(what, []).append(name)

        for kind, (p, _) in self.devices.items():
            add(p, "devices", kind)
        for (name, kind), (p, _) in self.engines.items():
            add(p, "engines", f"{name} ({kind})")
        for name, (p, _) in self.models.items():
            add(p, "models", name)
        for kind, (p, _) in self.tasks.items():
            add(p, "tasks", kind)
        for name, (p, _) in self.corpora.items():
            add(p, "corpora", name)
        for name, (p, _) in self.collectors.items():
            add(p, "collectors", name)
        for name, (p, _) in self.metrics.items():
            add(p, "metrics", name)
        for name, (p, q) in self.quantizers.items():
            add(p, "quantizers", f"{name} ({', '.join(q.types)})")
        for name, (p, _) in self.executors.items():
            if p != "devicelab":
                add(p, "executors", name)
        for b in self.broken:
            rows[b.name] = {
                "name": b.name,
                "registered": {},
                "error": f"failed to load entry point {b.entry_point}: {b.error}",
            }
        return list(rows.values())


def _selected(names: Iterable[str]) -> set[str]:
    allow = os.environ.get("DEVICELAB_PLUGINS")
    block = {n.strip() for n in os.environ.get("DEVICELAB_DISABLE_PLUGINS", "").split(",")}
    chosen = set(names)
    if allow is not None:
        chosen &= {n.strip() for n in allow.split(",") if n.strip()}
    return chosen - block


def new_plugin_manager() -> tuple[pluggy.PluginManager, list[BrokenPlugin]]:
    """A plugin manager with every selected entry point registered and checked."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    broken: list[BrokenPlugin] = []
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    chosen = _selected(ep.name for ep in eps)
    seen: dict[str, str] = {}
    for ep in sorted(eps, key=lambda e: e.name):
        if ep.name not in chosen:
            continue
        if ep.name in seen:
            if seen[ep.name] == ep.value:
                continue  # the same distribution seen twice on sys.path
            raise PluginError(
                f"two installed plugins use the entry-point name {ep.name!r} "
                f"({seen[ep.name]} and {ep.value}). Uninstall one of them."
            )
        seen[ep.name] = ep.value
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not take devicelab down with it
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            broken.append(BrokenPlugin(ep.name, ep.value, last))
            continue
        register_plugin(pm, module, ep.name)
    return pm, broken


def register_plugin(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register one plugin object, turning pluggy's validation errors into PluginError."""
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=name)
        known = sorted(h for h in dir(hookspecs) if h.startswith("devicelab_"))
        raise PluginError(
            f"plugin {name!r} does not match devicelab's hooks: {' '.join(str(exc).split())} "
            f"{_fix_hint(plugin, known)}Check the hook's name and arguments against the hooks "
            f"devicelab has: {', '.join(known)} (docs/hooks.md)."
        ) from None


def _fix_hint(plugin: object, known: list[str]) -> str:
    """What to change: the hook a misspelled name was meant to be, the arguments a hook takes."""
    hints = []
    for attr in sorted(a for a in dir(plugin) if a.startswith("devicelab_")):
        func = getattr(plugin, attr, None)
        if not callable(func):
            continue
        spec = getattr(hookspecs, attr, None)
        if spec is None:
            close = difflib.get_close_matches(attr, known, n=1)
            if close:
                hints.append(f"Rename {attr} to {close[0]}.")
            continue
        want = list(inspect.signature(spec).parameters)
        try:
            got = [a for a in inspect.signature(func).parameters if a != "self"]
        except (TypeError, ValueError):
            continue
        if any(a not in want for a in got):
            hints.append(f"{attr} takes ({', '.join(want)}), not ({', '.join(got)}).")
    return " ".join(hints) + " " if hints else ""


def build_registry(pm: pluggy.PluginManager, broken: list[BrokenPlugin] | None = None) -> Registry:
    """Call every ``register`` hook, one plugin at a time, so each entry knows its plugin."""
    reg = Registry(plugins=[name for name, _ in pm.list_name_plugin()], broken=list(broken or []))

    def collect(hook_name: str, adder: Callable[[str], Callable[..., None]]) -> None:
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            arg = impl.argnames[0] if impl.argnames else "register"
            try:
                impl.function(**{arg: adder(impl.plugin_name)})
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                    f"{type(exc).__name__}: {exc}. Fix or disable the plugin "
                    f"(DEVICELAB_DISABLE_PLUGINS={impl.plugin_name})."
                ) from exc

    def unique(
        table: dict[Any, tuple[str, Any]], key: Any, plugin: str, value: Any, what: str
    ) -> None:
        if key in table:
            raise PluginError(
                f"{what} {key!r} is registered twice: by plugin {table[key][0]!r} and by "
                f"plugin {plugin!r}. Names must be unique; rename one or disable a plugin "
                f"with DEVICELAB_DISABLE_PLUGINS."
            )
        table[key] = (plugin, value)

    def devices(plugin: str) -> Callable[[DeviceType], None]:
        return lambda dt: unique(reg.devices, dt.kind, plugin, dt, "device kind")

    def engines(plugin: str) -> Callable[[type[Engine]], None]:
        def add(cls: type[Engine]) -> None:
            for kind in cls.device_kinds:
                unique(reg.engines, (cls.name, kind), plugin, cls, "engine")

        return add

    def models(plugin: str) -> Callable[[ModelSpec], None]:
        return lambda m: unique(reg.models, m.name, plugin, m, "model")

    def tasks(plugin: str) -> Callable[[Task], None]:
        return lambda t: unique(reg.tasks, t.kind, plugin, t, "task")

    def corpora(plugin: str) -> Callable[[CorpusSpec], None]:
        return lambda c: unique(reg.corpora, c.name, plugin, c, "corpus")

    def collectors(plugin: str) -> Callable[[str, CollectorFactory], None]:
        return lambda name, f: unique(reg.collectors, name, plugin, f, "collector")

    collect("devicelab_register_devices", devices)
    collect("devicelab_register_engines", engines)
    collect("devicelab_register_models", models)
    collect("devicelab_register_tasks", tasks)
    collect("devicelab_register_corpora", corpora)

    def metrics(plugin: str) -> Callable[[type[Metric]], None]:
        return lambda cls: unique(reg.metrics, cls.name, plugin, cls, "metric")

    collect("devicelab_register_collectors", collectors)
    collect("devicelab_register_metrics", metrics)

    def quantizers(plugin: str) -> Callable[[Quantizer], None]:
        return lambda q: unique(reg.quantizers, q.backend, plugin, q, "quantizer")

    collect("devicelab_register_quantizers", quantizers)

    def executors(plugin: str) -> Callable[[type[Executor]], None]:
        return lambda cls: unique(reg.executors, cls.name, plugin, cls, "executor")

    collect("devicelab_register_executors", executors)
    return reg


_cache: tuple[pluggy.PluginManager, Registry] | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    return _load()[0]


def get_registry() -> Registry:
    """The registry of the plugins selected for this process, built on first use."""
    return _load()[1]


def _load() -> tuple[pluggy.PluginManager, Registry]:
    global _cache
    if _cache is None:
        pm, broken = new_plugin_manager()
        _cache = (pm, build_registry(pm, broken))
    return _cache


def reset() -> None:
    """Forget the loaded plugins (tests use this after changing the environment)."""
    global _cache
    _cache = None
