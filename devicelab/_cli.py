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
from . import _metrics as metrics
from . import _plugins as plugin_manager
from . import _report as reporting
from ._corpus import validate_corpus
from ._engines import open_engine
from ._errors import DevicelabError, UsageError
from ._executor import Reporter
from ._prefill import run_notes
from ._record import RUN_KEY, TrialRecord, cell_title
from ._rundir import TRIALS, RunDir, default_run_dir, load_run
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
def run(
    scenario: Path,
    device: str | None,
    out_dir: Path | None,
    resume: bool,
    executor_name: str | None,
    address: str | None,
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
    try:
        outcome = executor.run(plan, rundir, reporter)
    except KeyboardInterrupt:
        reporter.finish()
        kept = len(rundir.done_trial_ids())
        rundir.close()
        err.print(
            f"devicelab: interrupted. {kept} finished trials are kept in {path}; continue with "
            f"`devicelab run {scenario} --out {path} --resume`."
        )
        sys.exit(EXIT_INTERRUPTED)
    finally:
        rundir.close()
    records = load_run(path).records
    rows = metrics.summarize(records)
    stops = Schedule(plan, records).stops()
    if plan.scenario.adaptive:
        rows = with_stops(rows, stops)
    rundir.write_summary(rows)
    print_summary(rows)
    if stops:
        err.print(f"devicelab: {stops_note(plan.scenario, stops.values())}", soft_wrap=True)
    for note in run_notes(records):
        err.print(f"devicelab: {note}", soft_wrap=True)
    if outcome.skipped:
        err.print(f"devicelab: {outcome.skipped} trials were already recorded and were skipped.")
    if outcome.failed:
        err.print(
            f"devicelab: {outcome.failed} of {len(outcome.records)} trials failed; their errors "
            f"are in {path / TRIALS} (field 'error')."
        )
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


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_summary(rows: list[dict[str, Any]]) -> None:
    """The summary rows (devicelab._metrics.summarize) as the tables shown after a run."""
    if not rows:
        out.print("No measured trials finished ok; nothing to summarise.")
        return
    out.print(to_rich(summary_table(rows)))
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
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
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
def gate(baseline: Path, candidate: Path, specs: tuple[str, ...], alpha: float) -> None:
    """Fail when CANDIDATE is significantly worse than BASELINE.

    Exit 0 all checks pass; 1 a regression; 3 inconclusive (too few repetitions) and no
    regression; 2 bad input.
    """
    checks = [gates.parse_check(s) for s in specs]
    gates.check_alpha(alpha)
    comp = gates.compare(load_run(baseline), load_run(candidate), checks, alpha)
    for warning in comp.warnings:
        err.print(f"devicelab: warning: {warning}", soft_wrap=True)
    cells = [r.key.cell for r in comp.results]
    columns = [
        *key_columns(RUN_KEY, cells),
        Column("check", "left"),
        *(Column(c) for c in ("n", "baseline", "candidate", "change", "p")),
        Column("result", "left"),
    ]
    rows = [
        (
            *(str(v) for v in r.key.cell),
            r.check.spec,
            f"{r.n_baseline}/{r.n_candidate}",
            _fmt(r.baseline, 3),
            _fmt(r.candidate, 3),
            "-" if r.change_pct is None else f"{r.change_pct:+.1f}%",
            "-" if r.p_value is None else f"{r.p_value:.3g}",
            r.status.upper(),
        )
        for r in comp.results
    ]
    title = f"Gate: {candidate} against {baseline} (alpha {alpha:g})"
    table = to_rich(TableModel(title, tuple(columns), tuple(rows)))
    out.print(table)
    for r in comp.results:
        if r.status != gates.PASS:
            out.print(f"{r.status.upper()} {r.name}: {r.reason}", soft_wrap=True)
    code = comp.exit_code
    summary = {0: "all checks pass", 1: "regression", 3: "inconclusive, no regression"}
    err.print(f"devicelab: gate: {summary[code]}.")
    if code:
        sys.exit(code)


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
        for col in ("", "model", "quant", "n", qname, f"{lat.header} ({lat.stat})", mem.header):
            table.add_column(col, justify="left" if col in ("", "model", "quant") else "right")
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
def report(run_dir: Path, out_dir: Path | None) -> None:
    """Write a self-contained HTML report (report.html) and its PNG figures for RUN_DIR."""
    rep = reporting.build_report(run_dir, out_dir)
    for f in rep.figures:
        err.print(f"devicelab: wrote {rep.html_path.parent / f.name}")
    out.print(f"devicelab: report written to {rep.html_path}", soft_wrap=True)


@cli.command()
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def compare(run_a: Path, run_b: Path, as_json: bool) -> None:
    """Medians of RUN_A and RUN_B per key and metric, the change and its significance
    (one-sided Mann-Whitney U, alpha 0.01; n<5 when a side has fewer than 5 values)."""
    rows = comparing.compare_runs(load_run(run_a), load_run(run_b))
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    by_key: dict[Any, list[comparing.CompareRow]] = {}
    for r in rows:
        by_key.setdefault(r.key, []).append(r)
    for key, krows in by_key.items():
        table = Table(title=f"{cell_title(key)}: B={run_b} vs A={run_a}")
        for col in ("metric", "n A/B", "median A", "median B", "delta", "delta %", "B is", "p"):
            table.add_column(col, justify="left" if col in ("metric", "B is") else "right")
        for r in krows:
            p = "-" if r.p_value is None else f"{r.p_value:.3g}"
            if r.note:
                p += f" ({r.note})"
            elif r.significant:
                p += " *"
            table.add_row(
                r.metric,
                f"{r.n_a}/{r.n_b}",
                _fmt(r.median_a, 3),
                _fmt(r.median_b, 3),
                "-" if r.delta is None else f"{r.delta:+.3f}",
                "-" if r.delta_pct is None else f"{r.delta_pct:+.1f}%",
                r.verdict,
                p,
            )
        out.print(table)
    out.print("* significant at p < 0.01 (one-sided, in the direction of the change)")


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
