"""The commands that judge finished runs: ``devicelab gate``, ``advise`` and ``compare``.

Each reads run directories (or the results database, through the hooks) and prints tables;
:mod:`devicelab._cli` adds them to the ``devicelab`` group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from . import _advise as advice
from . import _compare as comparing
from . import _gates as gates
from . import _hooks as hooks
from ._catalogue import Facts, entry, model_title, run_facts, short_params, short_size
from ._console import err, out
from ._errors import UsageError
from ._provenance import report as provenance_report
from ._record import RUN_KEY, cell_title, hidden_keys
from ._rundir import RunData, load_run
from ._table import Column, key_columns, to_rich
from ._table import Table as TableModel


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@click.command()
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


@click.command()
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
    run = load_run(run_dir)
    groups = advice.advise(run, max_ttft, max_mem, quality)
    facts = run_facts(run)
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
                _model_cell(c.model, c.quant, facts),
                c.quant,
                *(getattr(c, k) or "-" for k in extra),
                str(c.n),
                c.quality_text() if g.uses_quality else "-",
                lat.format(c.ttft_s),
                mem.format(c.peak_mem_mb),
                note,
            )
        out.print(table)
        if not g.uses_quality:
            out.print("No trial here has quality: the front is over TTFT and memory only.")
        out.print(f"{g.message}.", soft_wrap=True)
    out.print("* on the Pareto front   > recommended")


def _model_cell(model: str, quant: str, facts: Facts) -> str:
    known = facts.get((model, quant), {})
    return model_title(model, known.get("model_params"), known.get("model_size_bytes"))


@click.command()
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
    one_sided = "" if data_b is None else comparing.one_sided_fields(data_a, data_b)
    if one_sided:
        out.print(one_sided, soft_wrap=True)
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(as_json: bool) -> None:
    """Every registered model: what its file says (family, parameters, quant type, bits per
    weight, size, trained context, layers, heads, KV bytes per token, instruct or base),
    its license and source, and whether the file is present. Nothing is assembled or made."""
    from . import _plugins as plugin_manager

    registry = plugin_manager.get_registry()
    rows = [entry(spec, plugin) for _, (plugin, spec) in sorted(registry.models.items())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print("No models registered.")
        return
    for r in rows:
        out.print(f"{r['name']} ({r['engine']}, {r['quant']}): {r['file']}", style="bold")
        c = r.get("catalogue")
        if c is not None:
            kv = c["kv_bytes_per_token"]
            out.print(
                f"  {c['architecture']}, {short_params(c['params'])} parameters, {c['quant']} "
                f"at {c['bits_per_weight']:.2f} bits per weight, {short_size(c['size_bytes'])}"
            )
            out.print(
                f"  trained context {c['context_length'] or '?'} tokens; {c['layers'] or '?'} "
                f"layers, {c['heads'] or '?'} heads, {c['kv_heads'] or '?'} KV heads"
                + ("" if kv is None else f"; KV cache {kv / 1024:.1f} KiB per token (f16)")
            )
            out.print(
                "  instruct (chat template): chat prompts"
                if c["chat_template"]
                else "  base (no chat template): completion prompts"
            )
        out.print(f"  license: {r['license'] or 'not stated'}", soft_wrap=True)
        if r["source"]:
            out.print(f"  from: {r['source']}", soft_wrap=True)
