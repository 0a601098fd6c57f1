"""The built-in store: one DuckDB file.

DuckDB lets one process hold a database file for writing, so every operation opens the file,
does its work in one transaction and closes it again; a second process that finds the file
locked retries with backoff for a bounded time. Two ``devicelab db ingest`` at once therefore
take turns, and since an ingest replaces the run's rows in one transaction, neither loses or
doubles a row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

import devicelab
from devicelab import TrialRecord, UsageError

from .rundir import (
    TOKENS,
    JsonLines,
    LoadedRun,
    TelemetrySummary,
    load_run_dir,
    read_tokens,
    summarise_samples,
    torn_note,
)
from .store import FewerTrialsError, IngestResult, NoDatabaseError, QueryResult, RunRow, Store

Connection = duckdb.DuckDBPyConnection

# The numbered schema. A database records the last step applied in `schema_version`; opening
# it applies the steps after that, in order. Add a step, never edit one that has shipped.
SCHEMA_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,
    path VARCHAR NOT NULL,
    scenario_name VARCHAR,
    created_at VARCHAR,
    meta JSON NOT NULL,
    trials INTEGER NOT NULL,
    ingested_at VARCHAR NOT NULL
);
CREATE TABLE trials (
    run_id VARCHAR NOT NULL,
    trial_id VARCHAR NOT NULL,
    record JSON NOT NULL,
    telemetry_samples INTEGER NOT NULL,
    PRIMARY KEY (run_id, trial_id)
);
CREATE TABLE telemetry (
    run_id VARCHAR NOT NULL,
    trial_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    n INTEGER NOT NULL,
    min DOUBLE,
    max DOUBLE,
    mean DOUBLE,
    PRIMARY KEY (run_id, trial_id, key)
);
INSERT INTO schema_version VALUES (1);
"""


def device_fingerprint(device_info: Any) -> str:
    """The ``trials.fingerprint`` of a trial's ``device_info``: same device, same value."""
    text = json.dumps(device_info or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _v2(con: Connection) -> None:
    # Version 2: the device fingerprint per trial (history and baselines compare like with
    # like) and a verdict per run (a run marked accepted can serve as a baseline).
    con.execute("ALTER TABLE runs ADD COLUMN verdict VARCHAR")
    con.execute("ALTER TABLE trials ADD COLUMN fingerprint VARCHAR")
    rows = con.execute("SELECT run_id, trial_id, record->'device_info' FROM trials").fetchall()
    if rows:
        con.executemany(
            "UPDATE trials SET fingerprint = ? WHERE run_id = ? AND trial_id = ?",
            [(device_fingerprint(json.loads(info) if info else {}), r, t) for r, t, info in rows],
        )


def _v1(con: Connection) -> None:
    con.execute(SCHEMA_V1)


VERDICTS = ("accepted", "rejected")


def _v3(con: Connection) -> None:
    # Version 3: a verdict is a command (`db accept|reject`), so it says when it was given
    # and why; a verdict written by hand before is kept only if it is one of VERDICTS.
    con.execute("ALTER TABLE runs ADD COLUMN verdict_at VARCHAR")
    con.execute("ALTER TABLE runs ADD COLUMN verdict_note VARCHAR")
    con.execute(
        "UPDATE runs SET verdict = lower(trim(verdict)) WHERE lower(trim(verdict)) IN (?, ?)",
        list(VERDICTS),
    )
    con.execute("UPDATE runs SET verdict = NULL WHERE verdict NOT IN (?, ?)", list(VERDICTS))


def _v4(con: Connection) -> None:
    # Version 4: every trial's token arrival times (tokens.jsonl), offsets from the request
    # in ms; a run stored before has none (its trials were made before devicelab kept them,
    # or it is ingested again to add them).
    con.execute(
        "CREATE TABLE tokens (run_id VARCHAR NOT NULL, trial_id VARCHAR NOT NULL, "
        "batched BOOLEAN NOT NULL, n INTEGER NOT NULL, ms DOUBLE[] NOT NULL, "
        "PRIMARY KEY (run_id, trial_id))"
    )


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4]
SCHEMA_VERSION = len(MIGRATIONS)

_SQL_TYPES = {"str": "VARCHAR", "int": "BIGINT", "bool": "BOOLEAN", "float": "DOUBLE"}
# The outcome keys of a record that get a column of their own, besides identity and FIELDS.
_OUTCOME = {
    "status": "VARCHAR",
    "error": "VARCHAR",
    "started_at": "VARCHAR",
    "finished_at": "VARCHAR",
    "tokens_batched": "BOOLEAN",
}


def record_columns() -> dict[str, str]:
    """Column -> SQL type of the columns taken from a record: the identity (cell key among
    it), the outcome and one per measured field of ``devicelab.FIELDS``. Read at open time,
    so a field added to FIELDS becomes a column of an existing database by itself."""
    cols: dict[str, str] = {}
    for f in dataclasses.fields(devicelab.Identity):
        sql = _SQL_TYPES.get(str(f.type))
        if sql is not None:  # device_info is a mapping: it stays in the record JSON
            cols[f.name] = sql
    cols.update(_OUTCOME)
    for name in devicelab.CELL_KEY:
        cols.setdefault(name, "VARCHAR")
    for fld in devicelab.FIELDS:
        cols.setdefault(fld.name, "DOUBLE")
    return cols


def _column_value(record: TrialRecord, name: str, sql: str) -> Any:
    value = record.key(name)
    if sql == "DOUBLE":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)
    return value


def _insert_columns(con: Connection, table: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Insert ``rows`` as one statement with a list parameter per column: DuckDB's
    executemany runs the statement once per row, about ten times slower for a large run."""
    names = ", ".join(f'"{c}"' for c in columns)
    unnest = ", ".join("unnest(?)" for _ in columns)
    con.execute(
        f"INSERT INTO {table} ({names}) SELECT {unnest}",
        [list(col) for col in zip(*rows, strict=True)],
    )


# How long an operation waits for a database another process holds.
LOCK_TIMEOUT_S = 60.0


class StoreLockedError(UsageError):
    pass


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class DuckDBStore(Store):
    """Runs in one DuckDB file (created with its folder on first use)."""

    def __init__(self, path: Path, *, lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.path = path
        self.lock_timeout_s = lock_timeout_s
        self._ready = False
        self._columns: dict[str, str] = {}

    # --- connection --------------------------------------------------------------------

    @contextmanager
    def _connect(self, *, create: bool = True) -> Iterator[Connection]:
        if not create and not self.path.exists():
            raise NoDatabaseError(
                f"no results database at {self.path}. Ingest runs first "
                "(devicelab db ingest RUN_DIR), or point --db / $DEVICELAB_DB at one."
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot make the folder {self.path.parent} for the results database "
                f"({exc.strerror or exc}). Give a --db (or $DEVICELAB_DB) in a folder you can "
                "write, or make that folder."
            ) from None
        try:
            con = self._open_with_retry()
            try:
                if not self._ready:
                    self._migrate(con)
                    self._ready = True
                yield con
            finally:
                con.close()
        except duckdb.Error as exc:
            # What DuckDB says of a file that is not a whole database of its own: cut short,
            # partly overwritten, or another kind of file.
            raise UsageError(
                f"the results database {self.path} cannot be used ({_first_line(exc)}): it is "
                "damaged (cut short or overwritten) or not a DuckDB file. Restore it from a "
                "copy, or give another --db; `devicelab db ingest RUN_DIR...` fills a new one "
                "from the run directories."
            ) from None

    def _open_with_retry(self) -> Connection:
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.02
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreLockedError(
                        f"results database {self.path} stayed locked by another process for "
                        f"{self.lock_timeout_s:.0f} s ({exc}). Wait for it to finish, or "
                        "use another --db."
                    ) from None
            # Jitter keeps two waiting processes from retrying in lockstep; the last wait
            # ends at the deadline, so the whole timeout is waited, never less.
            time.sleep(min(delay * (0.5 + random.random()), max(left, 0.0)))
            delay = min(delay * 2, 1.0)

    # --- schema ------------------------------------------------------------------------

    def _migrate(self, con: Connection) -> None:
        has_version = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
        ).fetchone()
        version = 0
        if has_version and has_version[0]:
            row = con.execute("SELECT max(version) FROM schema_version").fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise UsageError(
                f"results database {self.path} has schema version {version}, newer than this "
                f"devicelab's {SCHEMA_VERSION}. Upgrade devicelab to use it."
            )
        con.execute("BEGIN")
        try:
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](con)
                if step > 0:
                    con.execute("INSERT INTO schema_version VALUES (?)", [step + 1])
            self._columns = self._sync_columns(con)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _sync_columns(self, con: Connection) -> dict[str, str]:
        """Add a column for each record column the table lacks, filled from the stored
        records, so older rows answer for a field added to FIELDS since they were stored."""
        have = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'trials'"
            ).fetchall()
        }
        wanted = record_columns()
        for name, sql in wanted.items():
            if name in have:
                continue
            con.execute(f'ALTER TABLE trials ADD COLUMN "{name}" {sql}')
            path = "$." + json.dumps(name)
            con.execute(
                f'UPDATE trials SET "{name}" = TRY_CAST(json_extract_string(record, ?) AS {sql})',
                [path],
            )
        return wanted

    # --- Store -------------------------------------------------------------------------

    def ingest(self, run_dir: Path, *, replace: bool = False) -> IngestResult:
        run = load_run_dir(run_dir)
        with self._connect() as con:
            con.execute("BEGIN")
            try:
                if not replace:
                    self._refuse_fewer(con, run)
                replaced = self._write(con, run)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return IngestResult(run.run_id, len(run.records), replaced, run.torn)

    def _refuse_fewer(self, con: Connection, run: LoadedRun) -> None:
        """Raise when ``run`` lacks trials stored of it: a re-ingest must not lose any.
        Checked in the ingest's transaction, so a concurrent ingest cannot slip between."""
        stored = {
            r[0]
            for r in con.execute(
                "SELECT trial_id FROM trials WHERE run_id = ?", [run.run_id]
            ).fetchall()
        }
        missing = sorted(stored - {r.trial_id for r in run.records})
        if not missing:
            return
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        torn = torn_note(run.path, run.torn)
        raise FewerTrialsError(
            f"{run.path} has {len(run.records)} trials of run {run.run_id}, but the results "
            f"database {self.path} holds {len(stored)}: ingesting it would drop {shown}. "
            f"{torn + ' ' if torn else ''}Nothing was changed. Ingest the complete run "
            "directory, or give --replace to keep only the trials it has."
        )

    def ingest_trial(
        self,
        run_dir: Path,
        meta: dict[str, Any],
        record: TrialRecord,
        samples: list[dict[str, Any]],
    ) -> None:
        run_id = str(meta.get("run_id") or record.identity.run_id)
        telemetry: dict[str, TelemetrySummary] = summarise_samples(samples)
        # The run wrote the trial's token times before its record, so they are on disk.
        tokens = read_tokens(JsonLines(run_dir / TOKENS), {record.trial_id})
        run = LoadedRun(run_dir, run_id, meta, [record], telemetry, tokens=tokens)
        with self._connect() as con:
            con.execute("BEGIN")
            try:
                self._write(con, run, whole_run=False)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _write(self, con: Connection, run: LoadedRun, *, whole_run: bool = True) -> bool:
        """Store ``run``: all of it, replacing what the store had of it (``whole_run``), or
        only its records, replacing those trials (a run still going: one trial at a time)."""
        found = con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run.run_id]).fetchone()
        replaced = bool(found and found[0])
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        if replaced and not whole_run:
            ids = [r.trial_id for r in run.records]
            # The samples may name more than the records: a model's load ("load/..."),
            # stored again when a resumed run loads the model again.
            telemetry_ids = sorted({*ids, *run.telemetry})
            for table, which in (("tokens", ids), ("telemetry", telemetry_ids), ("trials", ids)):
                con.execute(
                    f"DELETE FROM {table} WHERE run_id = ? AND list_contains(?, trial_id)",
                    [run.run_id, which],
                )
        else:
            kept = [None, None, None]
            if replaced:
                row = con.execute(
                    "SELECT verdict, verdict_at, verdict_note FROM runs WHERE run_id = ?",
                    [run.run_id],
                ).fetchone()
                kept = list(row) if row else kept
                for table in ("tokens", "telemetry", "trials", "runs"):
                    con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run.run_id])
            con.execute(
                "INSERT INTO runs (run_id, path, scenario_name, created_at, meta, trials, "
                "ingested_at, verdict, verdict_at, verdict_note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run.run_id,
                    str(run.path.resolve()),
                    run.meta.get("scenario_name"),
                    run.meta.get("created_at"),
                    json.dumps(run.meta),
                    len(run.records),
                    now,
                    *kept,
                ],
            )
        cols = [c for c in self._columns if c not in ("run_id", "trial_id")]
        rows = []
        for rec in run.records:
            tele = run.telemetry.get(rec.trial_id)
            rows.append(
                [
                    run.run_id,
                    rec.trial_id,
                    json.dumps(rec.to_json()),
                    tele.samples if tele else 0,
                    device_fingerprint(rec.identity.device_info),
                    *(_column_value(rec, c, self._columns[c]) for c in cols),
                ]
            )
        if rows:
            all_cols = ["run_id", "trial_id", "record", "telemetry_samples", "fingerprint", *cols]
            _insert_columns(con, "trials", all_cols, rows)
        tele_rows = [
            (run.run_id, trial_id, key, s.n, s.min, s.max, s.mean)
            for trial_id, summary in run.telemetry.items()
            for key, s in summary.keys.items()
        ]
        if tele_rows:
            names = ["run_id", "trial_id", "key", "n", "min", "max", "mean"]
            _insert_columns(con, "telemetry", names, [list(r) for r in tele_rows])
        if run.tokens:
            con.executemany(
                "INSERT INTO tokens (run_id, trial_id, batched, n, ms) VALUES (?, ?, ?, ?, ?)",
                [[run.run_id, t, v.batched, len(v.ms), v.ms] for t, v in run.tokens.items()],
            )
        if not whole_run:
            con.execute(
                "UPDATE runs SET ingested_at = ?, trials = "
                "(SELECT count(*) FROM trials WHERE run_id = ?) WHERE run_id = ?",
                [now, run.run_id, run.run_id],
            )
        return replaced

    def set_verdict(self, run_id: str, verdict: str | None, note: str | None = None) -> bool:
        if verdict is not None and verdict not in VERDICTS:
            raise UsageError(f"a verdict is one of {', '.join(VERDICTS)}, not {verdict!r}.")
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds") if verdict else None
        with self._connect(create=False) as con:
            found = con.execute(
                "UPDATE runs SET verdict = ?, verdict_at = ?, verdict_note = ? WHERE run_id = ? "
                "RETURNING run_id",
                [verdict, at, note, run_id],
            ).fetchall()
        return bool(found)

    def query(self, sql: str, params: list[Any] | None = None) -> QueryResult:
        with self._connect(create=False) as con:
            try:
                cur = con.execute(sql, params or [])
            except duckdb.Error as exc:
                raise UsageError(f"the query failed: {exc}") from None
            if cur.description is None:
                return QueryResult([], [])
            return QueryResult([d[0] for d in cur.description], cur.fetchall())

    def runs(self) -> list[RunRow]:
        result = self.query(
            "SELECT run_id, created_at, scenario_name, path, trials, ingested_at, verdict "
            "FROM runs ORDER BY created_at NULLS LAST, run_id"
        )
        return [RunRow(*row) for row in result.rows]

    def close(self) -> None:
        # Nothing is held between operations (see the module docstring).
        self._ready = False
