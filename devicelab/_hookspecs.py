"""Every hook devicelab calls, in one place.

A plugin is a module (or object) whose functions are marked with ``@devicelab.hookimpl`` and
named like the specs below; it is found through the ``devicelab`` entry-point group. Each
``register`` hook receives a callable; call it once per thing the plugin offers. Names must
be unique across plugins: a second registration of the same name is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

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
    from ._executor import Executor, RunOutcome
    from ._record import TrialRecord
    from ._registry import Registry
    from ._report import Figure
    from ._rundir import RunData, RunDir
    from ._scenario import Scenario

hookspec = pluggy.HookspecMarker("devicelab")
hookimpl = pluggy.HookimplMarker("devicelab")


@hookspec
def devicelab_register_devices(register: Callable[[DeviceType], None], registry: Registry) -> None:
    """Register device types.

    :param register: call with a :class:`~devicelab.DeviceType` instance; its ``kind``
        (``"host"``, ``"android"``, ...) must be unique.
    :param registry: the registry being built (optional: take it only if you need it). Keep
        it to reach other plugins' models, engines or device kinds once the run starts; it is
        complete after every plugin has registered.
    """


@hookspec
def devicelab_register_engines(register: Callable[[type[Engine]], None]) -> None:
    """Register engines.

    :param register: call with an :class:`~devicelab.Engine` subclass; the pair of its
        ``name`` and each of its ``device_kinds`` must be unique, so one engine name (say
        ``"llama.cpp"``) can have one implementation per kind of device.
    """


@hookspec
def devicelab_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register models by name. ``devicelab models`` lists them, with what their GGUF file
    says about itself; a file made on first use gets an ``ensure`` (never called while
    planning or listing).

    :param register: call with a :class:`~devicelab.ModelSpec`; ``name`` must be unique.
    """


@hookspec
def devicelab_register_tasks(register: Callable[[Task], None]) -> None:
    """Register tasks.

    :param register: call with a :class:`~devicelab.Task` instance; ``kind`` must be
        unique (``"SUMM"``, ``"QS"``, ``"QA"``, ...).
    """


@hookspec
def devicelab_register_corpora(register: Callable[[CorpusSpec], None]) -> None:
    """Register document corpora by name.

    :param register: call with a :class:`~devicelab.CorpusSpec`; ``name`` must be unique.
    """


@hookspec
def devicelab_register_collectors(register: Callable[[str, CollectorFactory], None]) -> None:
    """Register telemetry collectors that work beside any device's own.

    :param register: call with a unique name and a factory ``factory(device)`` returning a
        :class:`~devicelab.Collector`, or ``None`` where it does not apply to that device.
    """


@hookspec
def devicelab_register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Register quality metrics.

    :param register: call with a :class:`~devicelab.Metric` subclass; its ``name`` (what
        a scenario lists in ``[quality] metrics``) must be unique.
    """


@hookspec
def devicelab_register_quantizers(register: Callable[[Quantizer], None]) -> None:
    """Register quantisers: tools that make quantised model files for some engines.

    :param register: call with a :class:`~devicelab.Quantizer` instance; its ``backend``
        (``"gguf"``, ``"mlc"``, ...) must be unique. ``devicelab quantize`` and scenarios that
        ask a registered model for a quantisation it does not ship use it.
    """


@hookspec
def devicelab_register_executors(register: Callable[[type[Executor]], None]) -> None:
    """Register executors: what runs a scenario's trials, and where (``--executor NAME``).

    :param register: call with an :class:`~devicelab.Executor` subclass; its
        ``name`` must be unique (``"local"``, the default, is devicelab's own).
    """


@hookspec
def devicelab_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``devicelab`` command line.

    :param cli: the top-level click group; add commands with ``@cli.command()``.
    """


# --- a run as it goes, and the results database ---------------------------------------------
#
# devicelab's core names where results are kept (`devicelab run --db`, the scenario's [store]
# table, `report --history`, `gate --baseline-from-db`) but keeps none itself: a plugin does
# (the built-in `store`, DuckDB). A hook below that raises is reported as a warning, once per
# plugin and run; it never fails a trial or loses a record.


@hookspec
def devicelab_run_started(run: RunDir, scenario: Scenario, db: str | None) -> bool | None:
    """A run starts writing its run directory (also when it resumes one).

    :param run: the open run directory (``run.path``, ``run.run_id``).
    :param scenario: the scenario as resolved.
    :param db: where the run's trials are to be stored as they finish: the value of
        ``devicelab run --db`` or of the scenario's ``[store] db``; ``""`` means the store's
        default database; ``None`` means no database was asked for.
    :return: ``True`` from the plugin that will store the trials in ``db``; devicelab warns
        when a database was asked for and no plugin said so.
    """


@hookspec
def devicelab_trial_finished(
    run: RunDir, record: TrialRecord, samples: Sequence[dict[str, Any]]
) -> None:
    """A trial's record (and its telemetry samples) has just been appended to the run
    directory, by whichever executor ran it; the record is on disk already.

    :param run: the run directory it was written to.
    :param record: the trial's record.
    :param samples: the trial's telemetry samples, as written to ``telemetry.jsonl``.
    """


@hookspec
def devicelab_run_finished(run: RunDir, outcome: RunOutcome | None) -> None:
    """A run has stopped writing its run directory (finished, interrupted, or stopped by an
    error).

    :param run: the run directory, closed: read it with :func:`devicelab.load_run`.
    :param outcome: what the executor ran; ``None`` when the run did not finish.
    """


@hookspec(firstresult=True)
def devicelab_baseline_from_db(candidate: RunData, db: str | None, last: int) -> RunData | None:
    """The baseline ``devicelab gate --baseline-from-db`` (and the pytest option) compares
    ``candidate`` with, taken from the results database.

    :param candidate: the run to gate.
    :param db: the database (``--db``); ``None``: the store's default.
    :param last: how many of the last accepted runs to take per cell (``--last``).
    :return: the baseline: trial records of the last ``last`` accepted runs that have the
        candidate's device fingerprint and cell; ``None`` when this plugin keeps no database
        (the first plugin to return one wins).
    """


@hookspec
def devicelab_report_figures(run: RunData, history: bool, db: str | None) -> list[Figure] | None:
    """Figures to add to ``devicelab report``'s HTML, after its own.

    :param run: the run being reported.
    :param history: ``report --history`` was given: add the run's cells over the stored runs.
    :param db: the results database (``report --db``); ``None``: the store's default.
    :return: :class:`~devicelab.ReportFigure` objects (``None`` or an empty list: none).
    """
