"""``devicelab db ingest|query|runs``."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

import devicelab
from devicelab import RunDirError, UsageError

from .factory import ENV_DB, default_db, open_store
from .rundir import torn_note
from .store import FewerTrialsError, QueryResult

DB_OPTION = click.option(
    "--db",
    "db",
    default=None,
    metavar="PATH",
    help=f"The results database (default: ${ENV_DB}, else ~/.local/share/devicelab/lab.duckdb).",
)


@click.group()
def db() -> None:
    """Keep runs in a results database and query them with SQL."""


@db.command()
@click.argument(
    "run_dirs",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--replace",
    is_flag=True,
    help="Keep only the trials a run directory has, even when the database holds more of it.",
)
@DB_OPTION
def ingest(run_dirs: tuple[Path, ...], replace: bool, db: str | None) -> None:
    """Load RUN_DIRS (records, run.json, telemetry summaries); re-ingesting replaces a run,
    but never with fewer trials than are stored of it unless --replace."""
    target = db or default_db()
    failed: list[str] = []
    stored: list[str] = []
    with open_store(target) as store:
        for i, run_dir in enumerate(run_dirs):
            start = time.perf_counter()
            try:
                result = store.ingest(run_dir, replace=replace)
            except (RunDirError, FewerTrialsError) as exc:
                # The fault is this directory's: the others are still worth storing.
                failed.append(f"{run_dir} was not ingested: {exc}")
                continue
            except UsageError as exc:
                # The database's fault (locked, damaged): every later run would fail alike.
                rest = [str(d) for d in run_dirs[i:]]
                raise UsageError(_ingest_summary([str(exc)], stored, rest)) from None
            stored.append(str(run_dir))
            verb = "replaced" if result.replaced else "added"
            click.echo(
                f"{verb} run {result.run_id}: {result.trials} trials from {run_dir} "
                f"({time.perf_counter() - start:.2f} s)"
            )
            if result.torn:
                click.echo(f"warning: {torn_note(run_dir, result.torn)}", err=True)
    click.echo(f"database: {target}")
    if failed:
        raise UsageError(_ingest_summary(failed, stored, []))


def _ingest_summary(errors: list[str], stored: list[str], skipped: list[str]) -> str:
    text = " ".join(errors)
    text += f" Ingested: {', '.join(stored)}." if stored else " No run was ingested."
    if skipped:
        text += f" Not ingested: {', '.join(skipped)}."
    return text


@db.command()
@click.argument("sql")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of objects.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV with a header line.")
@DB_OPTION
def query(sql: str, as_json: bool, as_csv: bool, db: str | None) -> None:
    """Run SQL against the results database (tables: runs, trials, telemetry; see docs/store.md)."""
    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    with open_store(db) as store:
        result = store.query(sql)
    if as_json:
        click.echo(
            json.dumps(
                [dict(zip(result.columns, r, strict=True)) for r in result.rows], default=str
            )
        )
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        print_table(result)


@db.command()
@DB_OPTION
def runs(db: str | None) -> None:
    """List the stored runs, oldest first, with their verdicts."""
    with open_store(db) as store:
        rows = store.runs()
    print_table(
        QueryResult(
            ["run_id", "created_at", "scenario", "trials", "verdict", "path"],
            [(r.run_id, r.created_at, r.scenario_name, r.trials, r.verdict, r.path) for r in rows],
        )
    )


def _verdict(run_ids: tuple[str, ...], verdict: str, note: str | None, db: str | None) -> None:
    with open_store(db) as store:
        marked = [r for r in run_ids if store.set_verdict(r, verdict, note)]
    for run_id in marked:
        click.echo(f"{verdict} run {run_id}")
    missing = [r for r in run_ids if r not in marked]
    if missing:
        done = f"marked {verdict}: {', '.join(marked)}" if marked else "nothing was marked"
        raise UsageError(
            f"no stored run {', '.join(map(repr, missing))} in {db or default_db()}; {done}. "
            "`devicelab db runs` lists the stored runs (ingest a run first)."
        )


def _verdict_command(name: str, verdict: str, help: str) -> click.Command:
    """``devicelab db NAME RUN_ID... [--note TEXT]``: give the runs ``verdict``."""

    @db.command(name=name, help=help)
    @click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
    @click.option("--note", default=None, help="Why (kept with the verdict).")
    @DB_OPTION
    def command(run_ids: tuple[str, ...], note: str | None, db: str | None) -> None:
        _verdict(run_ids, verdict, note, db)

    return command


accept = _verdict_command(
    "accept",
    "accepted",
    "Mark RUN_IDS accepted: baselines for `devicelab gate --baseline-from-db`.",
)
reject = _verdict_command(
    "reject",
    "rejected",
    "Mark RUN_IDS rejected: never a baseline (a run on a hot phone, a broken build).",
)


def print_table(result: QueryResult, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in result.columns:
        # A run id is what `db accept` takes: never cut or wrapped; a long path folds instead.
        whole = col == "run_id"
        table.add_column(col, no_wrap=whole, min_width=_widest(result, col) if whole else None)
    for row in result.rows:
        table.add_row(*(_cell(v) for v in row))
    Console().print(table)


def _widest(result: QueryResult, col: str) -> int:
    i = result.columns.index(col)
    return max((len(_cell(r[i])) for r in result.rows), default=len(col))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@click.command("history")
@click.argument("metric")
@click.option(
    "--by",
    default=",".join(devicelab.CELL_KEY),
    show_default=True,
    help="Trial columns that make a cell (comma-separated; default: devicelab's cell key).",
)
@click.option("--since", default=None, metavar="ISO", help="Only runs created at or after this.")
@click.option(
    "--where", default=None, metavar="SQL", help="A condition on trials t and runs r, in SQL."
)
@click.option(
    "--verdict",
    type=click.Choice(["not-rejected", "accepted", "all"]),
    default="not-rejected",
    show_default=True,
    help="Which runs count: all but those marked rejected, only accepted ones, or all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the cells and runs as JSON.")
@DB_OPTION
def history_command(
    metric: str,
    by: str,
    since: str | None,
    where: str | None,
    verdict: str,
    as_json: bool,
    db: str | None,
) -> None:
    """METRIC per cell over the stored runs: median and IQR per run, and the change points
    (provisional while fewer than 5 runs follow one). Runs marked rejected are left out."""
    from .history import change_note, history

    by_cols = [b.strip() for b in by.split(",") if b.strip()]
    with open_store(db) as store:
        found = history(store, metric, by_cols, since=since, where=where, verdict=verdict)
    cells = found.cells
    if as_json:
        out = [
            {
                "cell": dict(zip(by_cols, c.cell, strict=True)),
                "runs": [
                    {k: v for k, v in dataclasses.asdict(p).items() if k != "meta"}
                    for p in c.points
                ],
            }
            for c in cells
        ]
        click.echo(json.dumps(out, default=str))
    elif not cells:
        click.echo(f"no ok, measured trials with {metric} in the store match.")
    for cell in [] if as_json else cells:
        title = " / ".join(f"{b}={v}" for b, v in zip(by_cols, cell.cell, strict=True))
        print_table(
            QueryResult(
                ["run_id", "created_at", "n", "median", "IQR", "change point"],
                [
                    (p.run_id, p.created_at, p.n, p.median, p.q3 - p.q1, change_note(p))
                    for p in cell.points
                ],
            ),
            title=f"{metric}: {title}" if title else metric,
        )
    if found.left_out:
        n = len(found.left_out)
        why = "marked rejected" if verdict == "not-rejected" else "not marked accepted"
        click.echo(
            f"{n} run{'s' if n > 1 else ''} {why} left out ({', '.join(found.left_out)}); "
            "--verdict all shows them.",
            err=True,
        )
