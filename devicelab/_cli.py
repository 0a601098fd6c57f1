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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import _compare as comparing
from . import _export as exporting
from . import _hooks as hooks
from . import _metrics as metrics
from . import _noise as noise
from . import _plugins as plugin_manager
from . import _report as reporting
from ._cli_predict import calibrate, predict
from ._cli_views import advise, compare, gate, models
from ._console import err, out
from ._corpus import validate_corpus
from ._engines import open_engine
from ._errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    DevicelabError,
    UsageError,
    exit_code,
)
from ._executor import Reporter
from ._predictrun import outside_note
from ._prefill import run_notes
from ._record import TrialRecord
from ._rundir import TRIALS, RunData
from ._runtime.pipeline import RunInterrupted, run_pipeline
from ._scenario import Scenario
from ._stopping import Stop
from ._sustained import sustained_table
from ._table import (
    prediction_table,
    quality_table,
    stopping_table,
    summary_table,
    to_rich,
)


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
    try:
        result = run_pipeline(
            scenario,
            plugin_manager.get_registry(),
            device=device,
            out=out_dir,
            resume=resume,
            executor=executor_name,
            address=address,
            db=db,
            reporter=ProgressReporter(),
            warn=lambda text: err.print(f"devicelab: warning: {text}", soft_wrap=True),
        )
    except RunInterrupted as stop:
        err.print(
            f"devicelab: interrupted. {stop.kept} finished trials are kept in {stop.path}; "
            f"continue with `devicelab run {scenario} --out {stop.path} --resume`."
        )
        sys.exit(EXIT_INTERRUPTED)
    rows, records, outcome, path = result.rows, result.data.records, result.outcome, result.path
    print_summary(rows)
    gaps = comparing.gap_table(comparing.engine_gaps(result.data))
    if gaps is not None:
        out.print(to_rich(gaps))
    if result.stops:
        note = stops_note(result.plan.scenario, result.stops.values())
        err.print(f"devicelab: {note}", soft_wrap=True)
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
    if (predicted := outside_note(rows, result.plan.scenario.prediction_band_pct)) is not None:
        err.print(f"devicelab: {predicted}", soft_wrap=True)
    # The last word: whether the numbers above can be trusted.
    if rows:
        err.print(f"devicelab: {metrics.unstable_line(rows, result.data.max_cv)}", soft_wrap=True)
    if outcome.failed:
        sys.exit(EXIT_FAILED)


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


def print_summary(rows: list[dict[str, Any]]) -> None:
    """The summary rows (devicelab._metrics.summarize) as the tables shown after a run."""
    if not rows:
        out.print("No measured trials finished ok; nothing to summarise.")
        return
    # The quartiles too when the terminal is wide enough for them on one line per cell;
    # the CV alone otherwise (summary.json and the report always have both).
    table = to_rich(summary_table(rows, iqr=True, terminal=True))
    if out.measure(table, options=out.options.update_width(10_000)).maximum > out.width:
        table = to_rich(summary_table(rows, terminal=True))
    out.print(table)
    quality = quality_table(rows)
    if quality is not None:
        out.print(to_rich(quality))
    stopping = stopping_table(rows)
    if stopping is not None:
        out.print(to_rich(stopping))
    held = sustained_table(rows)
    if held is not None:
        out.print(to_rich(held))
    forecast = prediction_table(rows)
    if forecast is not None:
        out.print(to_rich(forecast))


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


for command in (gate, advise, compare, models, calibrate, predict):
    cli.add_command(command)


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
    except KeyboardInterrupt:
        err.print("devicelab: interrupted.")
        sys.exit(EXIT_INTERRUPTED)
    except DevicelabError as exc:
        err.print(f"devicelab: error: {exc}", soft_wrap=True)
        sys.exit(exit_code(exc))
