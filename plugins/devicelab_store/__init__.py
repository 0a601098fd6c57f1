"""Keep results: every run in a database, queried with SQL (``devicelab db ...``).

The built-in store is a DuckDB file; the :class:`~.store.Store` interface lets a plugin add a
server database (docs/store.md). Besides its commands, the plugin answers the core's hooks
for results: it stores each trial of ``devicelab run --db`` as it finishes, gives
``gate --baseline-from-db`` its baseline and ``report --history`` its figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

import devicelab
from devicelab import RunData, RunDir, TrialRecord

from .factory import default_db, open_store
from .store import FewerTrialsError, IngestResult, NoDatabaseError, QueryResult, RunRow, Store

__all__ = [
    "FewerTrialsError",
    "IngestResult",
    "NoDatabaseError",
    "QueryResult",
    "RunRow",
    "Store",
    "default_db",
    "open_store",
]


@devicelab.hookimpl
def devicelab_register_commands(cli: click.Group) -> None:
    from .cli import db, history_command

    cli.add_command(db)
    cli.add_command(history_command)


@devicelab.hookimpl
def devicelab_run_started(run: RunDir, db: str | None) -> bool | None:
    if db is None:
        return None
    from .live import start

    start(run, db)
    return True


@devicelab.hookimpl
def devicelab_trial_finished(
    run: RunDir, record: TrialRecord, samples: Sequence[dict[str, Any]]
) -> None:
    from .live import trial

    trial(run, record, samples)


@devicelab.hookimpl
def devicelab_run_finished(run: RunDir) -> None:
    from .live import finish

    finish(run)


@devicelab.hookimpl
def devicelab_baseline_from_db(candidate: RunData, db: str | None, last: int) -> RunData:
    from .baseline import baseline

    target = db or default_db()
    with open_store(target) as store:
        return baseline(store, target, candidate, last)


@devicelab.hookimpl
def devicelab_report_figures(
    run: RunData, history: bool, db: str | None
) -> list[devicelab.ReportFigure]:
    if not history:
        return []
    from .figures import history_figures

    try:
        with open_store(db) as store:
            return history_figures(store, run)
    except NoDatabaseError:
        # No history to draw: devicelab says when --history added no figure at all.
        return []
