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
from typing import Any

import pluggy

from . import _hookspecs as hookspecs
from ._api import (
    CollectorFactory,
    CorpusSpec,
    DeviceType,
    Engine,
    Metric,
    ModelSpec,
    Quantizer,
    Task,
)
from ._errors import PluginError
from ._executor import Executor
from ._registry import CORE, BrokenPlugin, Registry

ENTRY_POINT_GROUP = "devicelab"
# devicelab's own plugins, registered by module name before the entry points (as pytest and llm
# load theirs), so that what they provide is there with no plugin installed.
DEFAULT_PLUGINS = ("devicelab._runtime.local",)


def _selected(names: Iterable[str]) -> set[str]:
    allow = os.environ.get("DEVICELAB_PLUGINS")
    block = {n.strip() for n in os.environ.get("DEVICELAB_DISABLE_PLUGINS", "").split(",")}
    chosen = set(names)
    if allow is not None:
        chosen &= {n.strip() for n in allow.split(",") if n.strip()}
    return chosen - block


def plugin_distributions() -> dict[str, dict[str, str | None]]:
    """Each selected plugin's entry-point name -> the distribution that provides it and its
    version (null for an entry point with no installed distribution behind it)."""
    out: dict[str, dict[str, str | None]] = {}
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    chosen = _selected(ep.name for ep in eps)
    for ep in sorted(eps, key=lambda e: e.name):
        if ep.name in chosen and ep.name not in out:
            dist = ep.dist
            out[ep.name] = {
                "distribution": None if dist is None else dist.metadata["Name"],
                "version": None if dist is None else dist.version,
            }
    return out


def new_plugin_manager() -> tuple[pluggy.PluginManager, list[BrokenPlugin]]:
    """A plugin manager with every selected entry point registered and checked."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        register_plugin(pm, importlib.import_module(module_name), CORE)
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
    reg = Registry(
        plugins=[name for name, _ in pm.list_name_plugin() if name != CORE],
        broken=list(broken or []),
        plugin_manager=pm,
    )

    def collect(hook_name: str, adder: Callable[[str], Callable[..., None]]) -> None:
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            arg = impl.argnames[0] if impl.argnames else "register"
            # A plugin that asks for the registry keeps it, to reach other plugins' services
            # later (it is complete once every plugin has registered).
            extra = {"registry": reg} if "registry" in impl.argnames else {}
            try:
                impl.function(**{arg: adder(impl.plugin_name)}, **extra)
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
