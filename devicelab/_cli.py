"""The ``devicelab`` command line.

Exit codes: 0 all trials ok; 1 some trials failed (results still written); 2 bad input;
130 interrupted (every finished trial kept). ``devicelab gate``: 0 all checks pass,
1 regression, 3 inconclusive (and no regression), 2 bad input. A
:class:`~devicelab.UsageError` becomes one paragraph on stderr, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import _advise as advice
from . import _compare as comparing
from . import _export as exporting
from . import _gates as gates
from . import _hooks as hooks
from . import _metrics as metrics
from . import _noise as noise
from . import _plugins as plugin_manager
from . import _report as reporting
from ._corpus import validate_corpus
from ._engines import open_engine
from ._errors import DevicelabError, UsageError
from ._executor import Reporter, RunOutcome
from ._prefill import run_notes
from ._provenance import report as provenance_report
from ._record import RUN_KEY, TrialRecord, cell_title, hidden_keys
from ._rundir import TRIALS, RunData, RunDir, default_run_dir, load_run
from ._runtime.materialise import materialise
from ._runtime.resolve import load_and_resolve
from ._runtime.schedule import Schedule
from ._scenario import Scenario
from ._stopping import Stop, with_stops
from ._table import (
    Column,
    key_columns,
    quality_table,
    stopping_table,
    summary_table,
    to_rich,
)
from ._table import Table as TableModel

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# markup=False: scenario keys like "[context] lengths" must print as written.
# Piped or logged output gets a wide table rather than rich's 80-column default.
err = Console(stderr=True, highlight=False, markup=False)
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 150)


@click.group()
@click.version_option(package_name="devicelab")
def cli() -> None:
    """devicelab: benchmark small language models on phones (and on this host)."""


@cli.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--device", help="Device name or profile path; overrides the scenario's [device].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue a run in --out, skipping recorded trials.")
@click.option(
    "--executor",
    "executor_name",
    metavar="NAME",
    help="Who runs the trials: local (default) or a plugin's, e.g. ray; overrides [scenario].",
)
@click.option(
    "--address",
    metavar="HEAD:PORT|auto",
    help="The cluster of a cluster executor (ray: the head's address, or auto).",
)
@click.option(
    "--db",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[PATH]",
    help="Store each trial in the results database as it finishes: PATH, else [store] db, "
    "$DEVICELAB_DB or the default (docs/store.md). Overrides [store].",
)
def run(
    scenario: Path,
    device: str | None,
    out_dir: Path | None,
    resume: bool,
    executor_name: str | None,
    address: str | None,
    db: str | None,
) -> None:
    """Run every trial of SCENARIO and print a summary table."""
    registry = plugin_manager.get_registry()
    plan = load_and_resolve(scenario, registry, device)
    if executor_name is None:
        where = f"{plan.scenario.source}: [scenario] executor"
        executor_cls = registry.executor(plan.scenario.executor, where)
    else:
        executor_cls = registry.executor(executor_name)
    # Built before anything is made or written: a bad --address or a missing Ray is bad input.
    executor = executor_cls(address)
    executor.check(plan)
    if resume and out_dir is None:
        raise UsageError("--resume needs --out DIR: the run directory to continue.")
    reporter = ProgressReporter()
    plan = materialise(plan, registry, reporter)
    path = out_dir or default_run_dir(plan.scenario)
    rundir = RunDir.open(path, plan.scenario, resume=resume)
    err.print(f"devicelab: run {rundir.run_id} -> {path}")
    run_hooks = hooks.RunHooks(
        lambda text: err.print(f"devicelab: warning: {text}", soft_wrap=True)
    )
    run_hooks.started(rundir, plan.scenario, store_target(plan.scenario, db))
    outcome: RunOutcome | None = None
    try:
        outcome = executor.run(plan, rundir, reporter)
    except KeyboardInterrupt:
        reporter.finish()
        kept = len(rundir.done_trial_ids())
        err.print(
            f"devicelab: interrupted. {kept} finished trials are kept in {path}; continue with "
            f"`devicelab run {scenario} --out {path} --resume`."
        )
        sys.exit(EXIT_INTERRUPTED)
    finally:
        rundir.close()
        # Also when the run stopped on an error: what listens gets the run as it stands.
        run_hooks.finished(rundir, outcome)
    done = load_run(path)
    records = done.records
    # Read back as every view reads it (the run's scenario.toml), so summary.json and a later
    # report agree, also after a --resume with another max_cv.
    rows = metrics.summarize(records, done.max_cv)
    stops = Schedule(plan, records).stops()
    if plan.scenario.adaptive:
        rows = with_stops(rows, stops)
    rundir.write_summary(rows)
    print_summary(rows)
    gaps = comparing.gap_table(comparing.engine_gaps(done))
    if gaps is not None:
        out.print(to_rich(gaps))
    if stops:
        err.print(f"devicelab: {stops_note(plan.scenario, stops.values())}", soft_wrap=True)
    notes = run_notes(records)
    if (noisy := noise.run_note(records)) is not None:
        notes.append(noisy)
    for note in notes:
        err.print(f"devicelab: {note}", soft_wrap=True)
    if outcome.skipped:
        err.print(f"devicelab: {outcome.skipped} trials were already recorded and were skipped.")
    if outcome.failed:
        err.print(
            f"devicelab: {outcome.failed} of {len(outcome.records)} trials failed; their errors "
            f"are in {path / TRIALS} (field 'error')."
        )
    # The last word: whether the numbers above can be trusted.
    if rows:
        err.print(f"devicelab: {metrics.unstable_line(rows, done.max_cv)}", soft_wrap=True)
    if outcome.failed:
        sys.exit(EXIT_FAILED)


def store_target(scenario: Scenario, db: str | None) -> str | None:
    """Where the run stores its trials: ``--db PATH``; ``--db`` alone or ``[store] ingest``:
    ``[store] db`` else ``""`` (the store's default); ``None``: nowhere."""
    if db:
        return db
    if db is None and not scenario.store_ingest:
        return None
    return scenario.store_db or ""


class ProgressReporter(Reporter):
    """A progress bar on a terminal; one line per trial when stderr is not a terminal."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task: Any = None
        self.done = 0
        self.total = 0

    def start(self, total: int, skipped: int) -> None:
        self.total = total
        if err.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("starting", total=total)

    def status(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text)
        else:
            # One line per status, however long: logs are read (and grepped) line by line.
            err.print(f"devicelab: {text}", soft_wrap=True)

    def trial_done(self, record: TrialRecord) -> None:
        self.done += 1
        who = record.identity
        label = f"{who.task} L={who.context_tokens} {who.doc_id}"
        label += " warm-up" if who.warmup else f" rep {who.repetition}"
        if self.progress is not None:
            self.progress.update(self.task, advance=1, description=label)
        else:
            state = record.status
            ttft = record.measures.ttft_s
            extra = f" ttft={ttft:.2f}s" if isinstance(ttft, float) else ""
            err.print(f"[{self.done}/{self.total}] {label}: {state}{extra}")

    def expect(self, total: int) -> None:
        self.total = total
        if self.progress is not None:
            self.progress.update(self.task, total=total)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_summary(rows: list[dict[str, Any]]) -> None:
    """The summary rows (devicelab._metrics.summarize) as the tables shown after a run."""
    if not rows:
        out.print("No measured trials finished ok; nothing to summarise.")
        return
    # The quartiles too when the terminal is wide enough for them on one line per cell;
    # the CV alone otherwise (summary.json and the report always have both).
    table = to_rich(summary_table(rows, iqr=True))
    if out.measure(table, options=out.options.update_width(10_000)).maximum > out.width:
        table = to_rich(summary_table(rows))
    out.print(table)
    quality = quality_table(rows)
    if quality is not None:
        out.print(to_rich(quality))
    stopping = stopping_table(rows)
    if stopping is not None:
        out.print(to_rich(stopping))


def stops_note(scenario: Scenario, stops: Iterable[Stop]) -> str:
    """One line on how adaptive repetitions ended: cells that reached the target, and not."""
    stops = list(stops)
    met = sorted(s.repetitions for s in stops if s.converged)
    text = (
        f'repetitions = "auto": {len(met)} of {len(stops)} cells reached a 95% interval of '
        f"±{scenario.target_ci_pct:g}% of the median"
    )
    if met:
        span = f"{met[0]}" if met[0] == met[-1] else f"{met[0]}-{met[-1]}"
        text += f" after {span} repetitions"
    short = sum(1 for s in stops if s.why == "max")
    if short:
        text += (
            f"; {short} ran to max_repetitions {scenario.max_repetitions} without (see "
            "'stopped'): raise max_repetitions, or quiet the device, to narrow them"
        )
    failed = sum(1 for s in stops if s.why == "failed")
    if failed:
        text += f"; {failed} stopped at min_repetitions because every trial failed"
    return text + "."


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """The plugins loaded and what each registered."""
    rows = plugin_manager.get_registry().summary()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        out.print(row["name"], style="bold")
        if "error" in row:
            out.print(f"  broken: {row['error']}", style="red")
        for what, names in sorted(row["registered"].items()):
            out.print(f"  {what}: {', '.join(names)}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devices(as_json: bool) -> None:
    """The devices that can be used now."""
    registry = plugin_manager.get_registry()
    found = []
    for _, (plugin, dtype) in sorted(registry.devices.items()):
        for info in dtype.discover():
            found.append(
                {
                    "name": info.name,
                    "kind": info.kind,
                    "plugin": plugin,
                    "description": info.description,
                    "details": dict(info.details),
                }
            )
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        out.print("No devices found.")
    for d in found:
        out.print(f"{d['name']} ({d['kind']}): {d['description']}")


@cli.command()
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path), metavar="BASELINE CANDIDATE")
@click.option(
    "--fail",
    "specs",
    multiple=True,
    required=True,
    metavar="METRIC:STAT:THRESHOLD",
    help="A check, e.g. otps:median:5% or peak_mem_mb:max:50 (repeatable).",
)
@click.option(
    "--alpha",
    type=float,
    default=gates.DEFAULT_ALPHA,
    show_default=True,
    help="Significance level of the one-sided Mann-Whitney U test.",
)
@click.option(
    "--baseline-from-db",
    is_flag=True,
    help="Take as BASELINE the last --last accepted runs in the results database with "
    "CANDIDATE's device fingerprint, per cell; give only CANDIDATE.",
)
@click.option(
    "--db",
    default=None,
    metavar="PATH",
    help="The results database (default: $DEVICELAB_DB, else the default).",
)
@click.option(
    "--last",
    type=int,
    default=5,
    show_default=True,
    help="How many accepted runs per cell make the baseline (with --baseline-from-db).",
)
def gate(
    runs: tuple[Path, ...],
    specs: tuple[str, ...],
    alpha: float,
    baseline_from_db: bool,
    db: str | None,
    last: int,
) -> None:
    """Fail when CANDIDATE is significantly worse than BASELINE (a run directory, or the
    accepted runs of the results database with --baseline-from-db: then give CANDIDATE only).

    Exit 0 all checks pass; 1 a regression; 3 inconclusive (too few repetitions) and no
    regression; 2 bad input.
    """
    checks = [gates.parse_check(s) for s in specs]
    gates.check_alpha(alpha)
    base, cand, baseline_name = _gate_runs(runs, baseline_from_db, db, last)
    candidate = cand.path
    comp = gates.compare(base, cand, checks, alpha)
    for warning in comp.warnings:
        err.print(f"devicelab: warning: {warning}", soft_wrap=True)
    for line in comp.provenance:
        err.print(line, soft_wrap=True)
    hide = hidden_keys(r.key.cell for r in comp.results)
    key = [k for k in RUN_KEY if k not in hide]
    cells = [
        [c for k, c in zip(RUN_KEY, r.key.cell, strict=True) if k not in hide] for r in comp.results
    ]
    columns = [
        *key_columns(key, cells),
        Column("check", "left"),
        *(Column(c) for c in ("n", "baseline", "candidate", "change", "p")),
        Column("result", "left"),
    ]
    rows = [
        (
            *(str(v) or "-" for v in cell),
            r.check.spec,
            f"{r.n_baseline}/{r.n_candidate}",
            _fmt(r.baseline, 3),
            _fmt(r.candidate, 3),
            "-" if r.change_pct is None else f"{r.change_pct:+.1f}%",
            "-" if r.p_value is None else f"{r.p_value:.3g}",
            r.status.upper(),
        )
        for r, cell in zip(comp.results, cells, strict=True)
    ]
    title = f"Gate: {candidate} against {baseline_name} (alpha {alpha:g})"
    table = to_rich(TableModel(title, tuple(columns), tuple(rows)))
    out.print(table)
    for r in comp.results:
        if r.status != gates.PASS or r.noisy_baseline or r.noisy_candidate:
            out.print(f"{r.status.upper()} {r.name}: {r.reason}", soft_wrap=True)
    code = comp.exit_code
    summary = {0: "all checks pass", 1: "regression", 3: "inconclusive, no regression"}
    err.print(f"devicelab: gate: {summary[code]}.")
    if code:
        sys.exit(code)


def _gate_runs(
    runs: tuple[Path, ...], from_db: bool, db: str | None, last: int
) -> tuple[RunData, RunData, str]:
    """(baseline, candidate, how the baseline is named) from gate's arguments."""
    if from_db:
        if len(runs) != 1:
            raise UsageError(
                "with --baseline-from-db, give only the CANDIDATE run directory (the baseline "
                f"comes from the results database), not {len(runs)} paths."
            )
        cand = load_run(runs[0])
        base = hooks.baseline_from_db(cand, db, last)
        n = len(base.meta.get("runs", []))
        return base, cand, f"{n} accepted runs in {base.path} (last {last} per cell)"
    if db is not None:
        raise UsageError("--db is for --baseline-from-db: add it, or drop --db.")
    if len(runs) != 2:
        raise UsageError(
            f"give BASELINE and CANDIDATE run directories (got {len(runs)}), or CANDIDATE "
            "with --baseline-from-db."
        )
    return load_run(runs[0]), load_run(runs[1]), str(runs[0])


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--max-ttft", type=float, metavar="S", help="Largest acceptable median TTFT (s).")
@click.option("--max-mem", type=float, metavar="MB", help="Largest acceptable peak memory (MB).")
@click.option(
    "--quality",
    metavar="METRIC",
    help="The quality metric to rank by (default: the mean of all quality metrics).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def advise(
    run_dir: Path,
    max_ttft: float | None,
    max_mem: float | None,
    quality: str | None,
    as_json: bool,
) -> None:
    """Per task and context length: the Pareto front of quality, TTFT and memory across
    models and quants, and the recommended choice within --max-ttft and --max-mem."""
    groups = advice.advise(load_run(run_dir), max_ttft, max_mem, quality)
    if as_json:
        click.echo(json.dumps([g.to_json() for g in groups], indent=2))
        return
    qname = f"quality.{quality.removeprefix('quality.')}" if quality else "quality (mean)"
    lat, mem = advice.LATENCY, advice.MEMORY
    for g in groups:
        table = Table(title=f"{g.task} at L={g.context_tokens}")
        # The engine and variant columns only where a candidate has one (a sweep, two engines).
        extra = [k for k in ("engine", "variant") if any(getattr(c, k) for c in g.candidates)]
        names = ("", "model", "quant", *extra)
        for col in (*names, "n", qname, f"{lat.header} ({lat.stat})", mem.header):
            table.add_column(col, justify="left" if col in names else "right")
        table.add_column("note", justify="left")
        for c in g.candidates:
            mark = ("*" if c.on_front else " ") + (">" if c.name == g.recommended else " ")
            if c.excluded_by:
                note = "; ".join(c.excluded_by)
            elif not c.on_front:
                note = "dominated by " + ", ".join(c.dominated_by)
            else:
                note = ""
            table.add_row(
                mark,
                c.model,
                c.quant,
                *(getattr(c, k) or "-" for k in extra),
                str(c.n),
                _fmt(c.quality, 3) if g.uses_quality else "-",
                lat.format(c.ttft_s),
                mem.format(c.peak_mem_mb),
                note,
            )
        out.print(table)
        if not g.uses_quality:
            out.print("No trial here has quality: the front is over TTFT and memory only.")
        out.print(f"{g.message}.", soft_wrap=True)
    out.print("* on the Pareto front   > recommended")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), help="Report directory [RUN_DIR/report]."
)
@click.option(
    "--history",
    is_flag=True,
    help="Add the run's cells over the stored runs: median and spread per run, change points.",
)
@click.option(
    "--db",
    default=None,
    metavar="PATH",
    help="The results database for --history (default: $DEVICELAB_DB, else the default).",
)
def report(run_dir: Path, out_dir: Path | None, history: bool, db: str | None) -> None:
    """Write a self-contained HTML report (report.html) and its PNG figures for RUN_DIR."""
    if db is not None and not history:
        raise UsageError("--db is where --history reads the stored runs: add --history.")
    added: list[reporting.Figure] = []

    def more(run: RunData) -> list[reporting.Figure]:
        added.extend(hooks.report_figures(run, history, db))
        return added

    rep = reporting.build_report(run_dir, out_dir, more=more)
    if history and not added:
        err.print(
            "devicelab: warning: --history added no figure: no plugin keeps a results "
            "database, or it holds none of this run's cells (see `devicelab plugins`).",
            soft_wrap=True,
        )
    for f in rep.figures:
        err.print(f"devicelab: wrote {rep.html_path.parent / f.name}")
    out.print(f"devicelab: report written to {rep.html_path}", soft_wrap=True)


@cli.command()
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path), required=False)
@click.option(
    "--by",
    "by",
    metavar="KEYS",
    help="Record keys, comma-separated (engine, variant, ...). With one run: compare its "
    "trials side by side by their values (the app-vs-CLI gap: --by engine); with two: also "
    "match cells by them.",
)
@click.option(
    "--base",
    metavar="VALUE",
    help="With one run and --by: the side called A (default: the first met in the run).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def compare(
    run_a: Path, run_b: Path | None, by: str | None, base: str | None, as_json: bool
) -> None:
    """Medians of RUN_A and RUN_B per key and metric with their spread (±CV, p25–p75), the
    change and its significance (one-sided Mann-Whitney U, alpha 0.01; n<5 when a side has
    fewer than 5 values); ! marks a side where the cell is unstable. With one run and --by
    KEYS: its sides compared the same way."""
    keys = [k.strip() for k in (by or "").split(",") if k.strip()]
    data_a = load_run(run_a)
    data_b = None if run_b is None else load_run(run_b)
    if data_b is None:
        rows = comparing.compare_by(data_a, keys, base)
    else:
        if base is not None:
            raise UsageError("--base names a side within one run; give one run with --by.")
        rows = comparing.compare_runs(data_a, data_b, by=keys)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    by_key: dict[Any, list[comparing.CompareRow]] = {}
    noisy_seen = False
    for r in rows:
        by_key.setdefault((r.a, r.b, r.key), []).append(r)
    names = list(rows[0].cell) if rows else []
    hide = hidden_keys([r.key for r in rows], names)
    cols = (
        "metric", "n A/B", "median A ±CV", "median B ±CV", "A p25–p75", "B p25–p75",
        "delta", "delta %", "B is", "p",
    )  # fmt: skip
    any_unstable = False
    for (side_a, side_b, key), krows in by_key.items():
        a, b = (f"{side_a} ({run_a})", side_b) if run_b is None else (run_a, run_b)
        table = Table(title=f"{cell_title(key, names, hide)}: B={b} vs A={a}")
        for col in cols:
            table.add_column(col, justify="left" if col in ("metric", "B is") else "right")
        for r in krows:
            n = f"{r.n_a}/{r.n_b}"
            if r.noisy_a or r.noisy_b:
                n += f" ({r.noisy_a}/{r.noisy_b} noisy)"
                noisy_seen = True
            p = "-" if r.p_value is None else f"{r.p_value:.3g}"
            if r.note:
                p += f" ({r.note})"
            elif r.significant:
                p += " *"
            any_unstable = any_unstable or bool(r.unstable_a or r.unstable_b)
            table.add_row(
                r.metric,
                n,
                _median_cv(r.median_a, r.cv_pct_a, r.unstable_a),
                _median_cv(r.median_b, r.cv_pct_b, r.unstable_b),
                _range(r.p25_a, r.p75_a),
                _range(r.p25_b, r.p75_b),
                "-" if r.delta is None else f"{r.delta:+.3f}",
                "-" if r.delta_pct is None else f"{r.delta_pct:+.1f}%",
                r.verdict,
                p,
            )
        out.print(table)
    out.print("* significant at p < 0.01 (one-sided, in the direction of the change)")
    if any_unstable:
        out.print(
            "! unstable in that run: CV above its [scenario] max_cv, or noisy trials in the "
            "cell (--json gives the reasons); its change may be noise",
            soft_wrap=True,
        )
    if noisy_seen:
        out.print(
            "noisy: trials during which other processes used the device's CPU beyond [noise] "
            "max_other_cpu_pct; their figures may reflect the machine, not the change"
        )
    if data_b is not None:  # within one run, both sides share the run's provenance
        for line in provenance_report(data_a.meta, data_b.meta, "A", "B"):
            out.print(line, soft_wrap=True)


def _median_cv(median: float | None, cv_pct: float | None, unstable: list[str]) -> str:
    text = _fmt(median, 3)
    if cv_pct is not None:
        text += f" ±{cv_pct:.1f}%"
    return text + " !" if unstable else text


def _range(lo: float | None, hi: float | None) -> str:
    return "-" if lo is None or hi is None else f"{lo:.3f}–{hi:.3f}"


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(exporting.FORMATS), required=True, help="File format."
)
@click.option(
    "--out", "out_file", type=click.Path(path_type=Path), help="File [RUN_DIR/trials.FORMAT]."
)
@click.option("--with-text", is_flag=True, help="Include output_text.")
def export(run_dir: Path, fmt: str, out_file: Path | None, with_text: bool) -> None:
    """Write every trial record of RUN_DIR as a CSV or Parquet table (nested fields
    flattened as device_info.*, engine_timings.*, quality.*)."""
    path, n = exporting.export(run_dir, fmt, out_file, with_text)
    out.print(f"devicelab: {n} trials written to {path}", soft_wrap=True)


@cli.group()
def corpus() -> None:
    """Document corpora (JSONL): check one before running on it."""


@corpus.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--min-questions", default=3, show_default=True, help="Reference questions.")
@click.option("--min-qa", default=3, show_default=True, help="Question-answer pairs.")
@click.option(
    "--model",
    metavar="NAME",
    help="Count each text's tokens with this registered model's tokenizer (on the host).",
)
@click.option("--min-tokens", default=1100, show_default=True, help="Tokens per text (--model).")
def corpus_validate(
    path: Path, min_questions: int, min_qa: int, model: str | None, min_tokens: int
) -> None:
    """Check the corpus at PATH and name each problem with its line (exit 1 if any)."""
    if model is None:
        docs, problems = validate_corpus(path, min_questions=min_questions, min_qa=min_qa)
    else:
        with open_engine(plugin_manager.get_registry(), model) as engine:
            docs, problems = validate_corpus(
                path,
                min_questions=min_questions,
                min_qa=min_qa,
                min_tokens=min_tokens,
                count_tokens=lambda text: len(engine.tokenize(text)),
            )
    for problem in problems:
        out.print(f"{path}:{problem}" if problem.line else str(problem), soft_wrap=True)
    lengths = f" and {min_tokens}+ tokens in {model}'s tokenizer" if model else ""
    if problems:
        out.print(f"devicelab: {len(problems)} problems; {len(docs)} documents are fine.")
        sys.exit(EXIT_FAILED)
    out.print(
        f"devicelab: {path}: {len(docs)} documents, each with a summary, {min_questions}+ "
        f"questions and {min_qa}+ qa pairs{lengths}.",
        soft_wrap=True,
    )
    if model is None:
        out.print("(text lengths not checked: give --model to count tokens)")


@cli.command()
@click.argument("model")
@click.option("--to", "qtype", required=True, metavar="TYPE", help="q4_0, Q8_0, f16, q4f16_1, ...")
@click.option("--out", "out_path", type=click.Path(path_type=Path), help="Output file or dir.")
@click.option("--backend", help="Quantiser backend (gguf, mlc, ...), when several make TYPE.")
def quantize(model: str, qtype: str, out_path: Path | None, backend: str | None) -> None:
    """Quantise MODEL (a registered model's name or a model path) to TYPE.

    TYPE is spelled as the backend spells it, in any case. The output goes to the user's cache
    ($DEVICELAB_CACHE, else ~/.cache/devicelab/models) unless --out says otherwise.
    """
    from . import _quantize as quantizing

    registry = plugin_manager.get_registry()
    quantizer, canonical = quantizing.find_quantizer(registry, qtype, backend)
    source = quantizing.resolve_source(registry, model)
    target = out_path or quantizing.default_out(source, quantizer, canonical)
    err.print(
        f"devicelab: quantising {source.path} to {canonical} with {quantizer.backend}",
        soft_wrap=True,
    )
    result = quantizing.make(
        quantizer,
        source.path,
        canonical,
        target,
        lambda text: err.print(f"devicelab:   {text}", soft_wrap=True),
    )
    out.print(f"{result.path}", soft_wrap=True)
    out.print(f"  size on disk: {result.size_bytes / 1e6:.1f} MB ({result.size_bytes} bytes)")
    if result.bits_per_weight is not None:
        whole = result.details.get("file_bits_per_weight")
        extra = f"; whole file: {whole:.2f}" if isinstance(whole, float | int) else ""
        out.print(f"  bits per weight: {result.bits_per_weight:.2f} (weight matrices{extra})")
    types = result.details.get("tensor_types")
    if result.params and isinstance(types, Mapping):
        mix = ", ".join(
            f"{name} {100 * n / result.params:.1f}%"
            for name, n in sorted(types.items(), key=lambda kv: -kv[1])
        )
        out.print(f"  weights: {result.params / 1e6:.1f}M ({mix})")
    out.print(f"  took {result.seconds:.1f} s")


def _add_plugin_commands() -> None:
    try:
        pm = plugin_manager.get_plugin_manager()
    except DevicelabError:
        return  # the error shows again, readably, when a command needs the plugins
    pm.hook.devicelab_register_commands(cli=cli)


def main(argv: list[str] | None = None) -> None:
    """The console script: run the CLI, turning devicelab errors into exit codes."""
    _add_plugin_commands()
    try:
        cli.main(args=argv, prog_name="devicelab", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("devicelab: aborted.")
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except UsageError as exc:
        err.print(f"devicelab: error: {exc}", soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        err.print("devicelab: interrupted.")
        sys.exit(EXIT_INTERRUPTED)
    except DevicelabError as exc:
        err.print(f"devicelab: error: {exc}", soft_wrap=True)
        sys.exit(EXIT_FAILED)
