"""What the loaded plugins registered: the :class:`Registry` every part of devicelab reads,
and the lookups that name what exists when a name is wrong."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
from ._errors import ModelError, ScenarioError
from ._executor import Executor

if TYPE_CHECKING:
    import pluggy

CORE = "devicelab"  # the name devicelab's own plugins are registered under


def closest(name: str, names: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the registered name nearest ``name`` (difflib), else ``""``."""
    import difflib

    found = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    return f" Did you mean {found[0]!r}?" if found else ""


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
    executors: dict[str, tuple[str, type[Executor]]] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    broken: list[BrokenPlugin] = field(default_factory=list)
    # The plugins behind the registry, whose run hooks a run of it calls (None: the process's).
    plugin_manager: pluggy.PluginManager | None = field(default=None, repr=False, compare=False)

    def broken_note(self) -> str:
        if not self.broken:
            return ""
        names = ", ".join(f"{b.name} ({b.error})" for b in self.broken)
        return f" Note: these plugins failed to load: {names}; see `devicelab plugins`."

    def unknown(self, what: str, name: str, registered: Iterable[str]) -> str:
        """The sentence for ``name``, not among the ``registered`` names of its kind:
        ``unknown task 'X'. Registered tasks: A, B.``, and the plugins that failed to load
        (one of them may be what registers it)."""
        known = ", ".join(sorted(registered)) or "none"
        return f"unknown {what} {name!r}. Registered {what}s: {known}.{self.broken_note()}"

    def model(self, name: str) -> ModelSpec:
        """The registered model ``name``; a :class:`ModelError` naming the registered ones."""
        found = self.models.get(name)
        if found:
            return found[1]
        known = ", ".join(sorted(self.models)) or "none"
        raise ModelError(
            f"model {name!r} is not registered (registered models: {known})."
            f"{closest(name, self.models)} Name a registered model (`devicelab models` lists "
            f"them).{self.broken_note()}"
        )

    def executor(self, name: str, where: str = "--executor") -> type[Executor]:
        """The executor class registered as ``name``; a clear error naming the known ones."""
        found = self.executors.get(name)
        if found is None:
            known = ", ".join(sorted(self.executors))
            raise ScenarioError(
                f"{where}: unknown executor {name!r}. Registered executors: {known}. Install "
                "the plugin that provides it (for ray: pip install 'devicelab[ray]') or fix the "
                f"name.{self.broken_note()}"
            )
        return found[1]

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
            if p != CORE:
                add(p, "executors", name)
        for b in self.broken:
            rows[b.name] = {
                "name": b.name,
                "registered": {},
                "error": f"failed to load entry point {b.entry_point}: {b.error}",
            }
        return list(rows.values())
