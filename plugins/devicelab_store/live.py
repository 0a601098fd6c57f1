"""``devicelab run --db``: each trial stored as it finishes, the whole run once more at the end.

The run directory is the source of truth; the database follows it. A trial that cannot be
stored (the database locked for longer than :data:`TRIAL_LOCK_S`, a full disk, a path that
cannot be made) raises once, which devicelab shows as one warning, and the run goes on without
storing further trials; at the end the whole run directory is ingested once more (idempotent),
which makes up for every trial missed, or, if that fails too, the message names the
``devicelab db ingest`` that will.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from devicelab import RunDir, TrialRecord, UsageError

from .duck import LOCK_TIMEOUT_S, DuckDBStore
from .factory import default_db, open_store
from .rundir import RUN_META
from .store import Store

# A trial waits at most this long for a locked database: a run must not stall behind a long
# query. The end-of-run ingest waits the store's usual time.
TRIAL_LOCK_S = 5.0


class StoreIngestError(UsageError):
    """A trial or run that the results database could not take (the run dir keeps it)."""


@dataclass
class _Live:
    target: str
    store: Store
    meta: dict[str, Any]
    broken: bool = False


_live: dict[str, _Live] = {}


def _open(target: str) -> Store:
    store = open_store(target)
    if isinstance(store, DuckDBStore):
        store.lock_timeout_s = TRIAL_LOCK_S
    return store


def start(run: RunDir, db: str) -> None:
    target = db or default_db()
    meta = json.loads((run.path / RUN_META).read_text(encoding="utf-8"))
    _live[run.run_id] = _Live(target, _open(target), meta)


def trial(run: RunDir, record: TrialRecord, samples: Sequence[dict[str, Any]]) -> None:
    live = _live.get(run.run_id)
    if live is None or live.broken:
        return
    try:
        live.store.ingest_trial(run.path, live.meta, record, list(samples))
    except Exception as exc:
        if _interrupted(exc):
            # DuckDB takes a Ctrl-C that lands in a query and raises its own error: it is
            # still the user's Ctrl-C, which stops the run (the trial is in the run directory).
            raise KeyboardInterrupt from exc
        live.broken = True
        raise StoreIngestError(
            f"could not store trial {record.trial_id} in {live.target} ({exc}); further "
            "trials are not stored while the run goes, the whole run is tried again when it "
            "ends. The run directory keeps every trial."
        ) from exc


def _interrupted(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        # duckdb.InterruptException, or (duckdb 1.x) RuntimeError("Query interrupted").
        if type(cur).__name__ == "InterruptException" or (
            isinstance(cur, RuntimeError) and "Query interrupted" in str(cur)
        ):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def finish(run: RunDir) -> None:
    live = _live.pop(run.run_id, None)
    if live is None:
        return
    if isinstance(live.store, DuckDBStore):
        live.store.lock_timeout_s = LOCK_TIMEOUT_S
    try:
        result = live.store.ingest(Path(run.path))
    except Exception as exc:
        raise StoreIngestError(
            f"could not store run {run.run_id} in {live.target} ({exc}). Its run directory "
            f"is complete: store it later with `devicelab db ingest {run.path} --db {live.target}`."
        ) from exc
    finally:
        live.store.close()
    click.echo(
        f"devicelab: stored run {result.run_id} ({result.trials} trials) in {live.target}",
        err=True,
    )
