"""The run pipeline: the one path from a scenario file to a finished run directory.

``devicelab run`` and :func:`devicelab.testing.run_scenario` both call :func:`run_pipeline`,
so a plugin's test runs a scenario exactly as a user does: resolve, the executor's checks,
materialise, the run directory (with the run's provenance), the run hooks, the trials, the
summary. The caller only shows what happens (a :class:`~devicelab.Reporter` and a ``warn``
callback) and what came of it (the :class:`RunResult`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _hooks as hooks
from .. import _metrics as metrics
from .. import _sustained as sustained
from .._catalogue import run_facts, with_model_facts
from .._errors import UsageError
from .._executor import Reporter, RunOutcome
from .._predict import find_calibration
from .._predictrun import shapes, with_predictions
from .._provenance import run_provenance
from .._registry import Registry
from .._rundir import RunData, RunDir, default_run_dir, load_run
from .._scenario import Scenario
from .._stopping import Stop, with_stops
from .interrupt import watching
from .materialise import materialise
from .plan import Plan
from .resolve import load_and_resolve
from .schedule import Schedule


@dataclass
class RunResult:
    """A finished run: its plan, where it is, what the executor did, and its summary."""

    plan: Plan
    path: Path
    run_id: str
    outcome: RunOutcome
    data: RunData  # the run directory read back, as every view reads it
    rows: list[dict[str, Any]]  # the summary rows written to summary.json
    stops: dict[tuple[Any, ...], Stop]  # adaptive repetitions: why each cell stopped


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during the trials: the run directory is closed and keeps every finished trial."""

    def __init__(self, path: Path, kept: int) -> None:
        super().__init__(path, kept)
        self.path = path
        self.kept = kept


def store_target(scenario: Scenario, db: str | None) -> str | None:
    """Where the run stores its trials: ``--db PATH``; ``--db`` alone or ``[store] ingest``:
    ``[store] db`` else ``""`` (the store's default); ``None``: nowhere."""
    if db:
        return db
    if db is None and not scenario.store_ingest:
        return None
    return scenario.store_db or ""


def run_pipeline(
    scenario: Path,
    registry: Registry,
    *,
    device: str | None = None,
    out: Path | None = None,
    resume: bool = False,
    executor: str | None = None,
    address: str | None = None,
    db: str | None = None,
    reporter: Reporter | None = None,
    warn: Callable[[str], None] = lambda text: None,
) -> RunResult:
    """Run every trial of the scenario at ``scenario`` not yet in ``out`` and summarise it.

    ``executor`` and ``address`` are ``--executor`` and ``--address`` (``None``: the
    scenario's executor, no address); ``out`` defaults to a new directory under ``runs/``;
    ``db`` is ``--db`` (see :func:`store_target`). Bad input raises a
    :class:`~devicelab.UsageError` before anything is made or written; Ctrl-C during the
    trials raises :class:`RunInterrupted`.
    """
    rep = reporter or Reporter()
    plan = load_and_resolve(scenario, registry, device)
    if executor is None:
        where = f"{plan.scenario.source}: [scenario] executor"
        executor_cls = registry.executor(plan.scenario.executor, where)
    else:
        executor_cls = registry.executor(executor)
    # Built before anything is made or written: a bad --address or a missing Ray is bad input.
    runner = executor_cls(address)
    runner.check(plan)
    if plan.scenario.sustained:
        sustained.require()
    if resume and out is None:
        raise UsageError("--resume needs --out DIR: the run directory to continue.")
    plan = materialise(plan, registry, rep)
    # Read before the trials run: the prediction is the one the device's calibration made
    # before it saw them.
    try:
        calibration = find_calibration(plan.device_name)
    except UsageError as exc:  # a broken calibration costs the run its predictions, no more
        warn(f"no predictions for this run: {exc}")
        calibration = None
    model_shapes = shapes(plan.models) if calibration is not None else {}
    path = out or default_run_dir(plan.scenario)
    rundir = RunDir.open(
        path, plan.scenario, resume=resume, provenance=run_provenance(plan.scenario.source)
    )
    rep.status(f"run {rundir.run_id} -> {path}")
    run_hooks = hooks.RunHooks(warn, registry.plugin_manager)
    run_hooks.started(rundir, plan.scenario, store_target(plan.scenario, db))
    outcome: RunOutcome | None = None
    try:
        with watching():
            outcome = runner.run(plan, rundir, rep)
    except KeyboardInterrupt:
        rep.finish()
        raise RunInterrupted(path, len(rundir.done_trial_ids())) from None
    finally:
        rundir.close()
        # Also when the run stopped on an error: what listens gets the run as it stands.
        run_hooks.finished(rundir, outcome)
    done = load_run(path)
    # Read back as every view reads it (the run's scenario.toml), so summary.json and a later
    # report agree, also after a --resume with another max_cv.
    rows = with_model_facts(metrics.summarize(done.records, done.max_cv), run_facts(done))
    stops = Schedule(plan, done.records).stops()
    if plan.scenario.adaptive:
        rows = with_stops(rows, stops)
    if plan.scenario.sustained:
        rows = sustained.with_sustained(
            rows, done.records, done.telemetry, plan.scenario.sustained_bin_s
        )
    if calibration is not None:
        band = plan.scenario.prediction_band_pct
        rows = with_predictions(rows, done.records, model_shapes, calibration, band)
    rundir.write_summary(rows)
    return RunResult(plan, path, rundir.run_id, outcome, done, rows, stops)
