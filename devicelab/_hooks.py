"""Calling the hooks that are not registrations: a run as it goes, a baseline from the
results database, figures for the report.

The run hooks are called once per plugin, each in a guard: a plugin that raises (a results
database that is locked, full or gone) is reported as one warning per plugin and hook in a
run, and the run goes on. Every record is on disk before any plugin hears of it, so nothing
measured is lost; the run directory stays the source of truth (``devicelab db ingest`` makes
up later).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import _plugins as plugin_manager
from ._errors import UsageError

if TYPE_CHECKING:
    import pluggy

    from ._executor import RunOutcome
    from ._record import TrialRecord
    from ._report import Figure
    from ._rundir import RunData, RunDir
    from ._scenario import Scenario

Warn = Callable[[str], None]


def _call_each(pm: pluggy.PluginManager, hook: str, kwargs: dict[str, Any]) -> list[Any]:
    """(plugin name, result or exception) for every implementation of ``hook``, in pluggy's
    order (last registered first, ``tryfirst``/``trylast`` honoured)."""
    out = []
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        try:
            result: Any = impl.function(**{a: kwargs[a] for a in impl.argnames})
        except Exception as exc:  # a plugin's failure must not fail the run
            result = exc
        out.append((impl.plugin_name, result))
    return out


class RunHooks:
    """The run hooks of one run: started, each trial finished (as a run directory listener),
    finished."""

    def __init__(self, warn: Warn, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or plugin_manager.get_plugin_manager()
        self.warn = warn
        self._warned: set[tuple[str, str]] = set()

    def _report(self, hook: str, results: list[tuple[str, Any]]) -> list[Any]:
        ok = []
        for plugin, result in results:
            if not isinstance(result, Exception):
                ok.append(result)
            elif (plugin, hook) not in self._warned:
                self._warned.add((plugin, hook))
                self.warn(
                    f"plugin {plugin!r} failed in {hook} ({type(result).__name__}: {result}); "
                    "the run goes on and the run directory keeps every trial. Further failures "
                    "of this plugin in this hook are not shown."
                )
        return ok

    def started(self, run: RunDir, scenario: Scenario, db: str | None) -> None:
        hook = "devicelab_run_started"
        kwargs = {"run": run, "scenario": scenario, "db": db}
        taken = self._report(hook, _call_each(self.pm, hook, kwargs))
        if db is not None and True not in taken:
            self.warn(
                f"a results database was asked for ({db or 'the default'}) but no plugin "
                "stores results, so none is written. Enable the built-in store plugin (check "
                "DEVICELAB_PLUGINS / DEVICELAB_DISABLE_PLUGINS and `devicelab plugins`)."
            )
        run.on_trial(lambda record, samples: self.trial(run, record, samples))

    def trial(self, run: RunDir, record: TrialRecord, samples: Sequence[dict[str, Any]]) -> None:
        hook = "devicelab_trial_finished"
        kwargs = {"run": run, "record": record, "samples": samples}
        self._report(hook, _call_each(self.pm, hook, kwargs))

    def finished(self, run: RunDir, outcome: RunOutcome | None) -> None:
        hook = "devicelab_run_finished"
        self._report(hook, _call_each(self.pm, hook, {"run": run, "outcome": outcome}))


def baseline_from_db(candidate: RunData, db: str | None, last: int) -> RunData:
    """The baseline the results database holds for ``candidate`` (see the hook)."""
    if last < 1:
        raise UsageError(f"--last must be at least 1, not {last}: the accepted runs to take.")
    pm = plugin_manager.get_plugin_manager()
    found: RunData | None = pm.hook.devicelab_baseline_from_db(
        candidate=candidate, db=db, last=last
    )
    if found is None:
        raise UsageError(
            "--baseline-from-db needs a plugin that keeps a results database, and none is "
            "loaded. Enable the built-in store plugin (see `devicelab plugins`), or give a "
            "baseline run directory instead."
        )
    return found


def report_figures(run: RunData, history: bool, db: str | None) -> list[Figure]:
    """The figures plugins add to the report of ``run``, in plugin order."""
    pm = plugin_manager.get_plugin_manager()
    lists: list[list[Figure]] = pm.hook.devicelab_report_figures(run=run, history=history, db=db)
    return [f for figures in reversed(lists) for f in figures or []]
