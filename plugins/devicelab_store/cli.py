"""``devicelab db ingest|query|runs``."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from .factory import ENV_DB, default_db, open_store
from .store import QueryResult

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
@DB_OPTION
def ingest(run_dirs: tuple[Path, ...], db: str | None) -> None:
    """Load RUN_DIRS (records, run.json, telemetry summaries); re-ingesting replaces a run."""
    target = db or default_db()
    with open_store(target) as store:
        for run_dir in run_dirs:
            start = time.perf_counter()
            result = store.ingest(run_dir)
            verb = "replaced" if result.replaced else "added"
            click.echo(
                f"{verb} run {result.run_id}: {result.trials} trials from {run_dir} "
                f"({time.perf_counter() - start:.2f} s)"
            )
    click.echo(f"database: {target}")


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
    """List the stored runs, oldest first."""
    with open_store(db) as store:
        rows = store.runs()
    print_table(
        QueryResult(
            ["run_id", "created_at", "scenario", "trials", "path"],
            [(r.run_id, r.created_at, r.scenario_name, r.trials, r.path) for r in rows],
        )
    )


def print_table(result: QueryResult, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in result.columns:
        table.add_column(col)
    for row in result.rows:
        table.add_row(*(_cell(v) for v in row))
    Console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
