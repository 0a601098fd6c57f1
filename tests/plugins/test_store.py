"""The results store: ingest round trip, idempotence, concurrent ingesters, schema migration,
the db commands, `run --db`, baselines for gates and `report --history`."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import multiprocessing
import random
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from devicelab_store import open_store
from devicelab_store.duck import SCHEMA_VERSION, DuckDBStore

import devicelab
from devicelab.testing import run_cli

pytest_plugins = ["pytester"]

GATES = Path(__file__).resolve().parent.parent / "data" / "gates"
RUNS = ["baseline", "unchanged", "slower10", "reps3"]

# The first schema exactly as version 1 created it, kept here so a migration from it is
# tested for as long as version 1 databases may exist.
V1_DDL = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, scenario_name VARCHAR,
    created_at VARCHAR, meta JSON NOT NULL, trials INTEGER NOT NULL, ingested_at VARCHAR NOT NULL);
CREATE TABLE trials (run_id VARCHAR NOT NULL, trial_id VARCHAR NOT NULL, record JSON NOT NULL,
    telemetry_samples INTEGER NOT NULL, PRIMARY KEY (run_id, trial_id));
CREATE TABLE telemetry (run_id VARCHAR NOT NULL, trial_id VARCHAR NOT NULL, key VARCHAR NOT NULL,
    n INTEGER NOT NULL, min DOUBLE, max DOUBLE, mean DOUBLE, PRIMARY KEY (run_id, trial_id, key));
INSERT INTO schema_version VALUES (1);
"""


def _records(run: str) -> list[dict[str, object]]:
    lines = (GATES / run / "trials.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _counts(db: Path) -> dict[str, int]:
    with open_store(db) as store:
        rows = store.query("SELECT run_id, count(*) FROM trials GROUP BY run_id").rows
    return {r[0]: r[1] for r in rows}


def test_every_record_field_comes_back(tmp_path: Path) -> None:
    db = tmp_path / "lab.duckdb"
    with open_store(db) as store:
        store.ingest(GATES / "baseline")
        stored = store.query(
            "SELECT trial_id, record, otps, ttft_s, model, context_tokens, warmup FROM trials"
        ).rows
        meta = store.query("SELECT meta, scenario_name FROM runs").rows
    originals = {r["trial_id"]: r for r in _records("baseline")}
    assert len(stored) == len(originals)
    for trial_id, record, otps, ttft_s, model, context_tokens, warmup in stored:
        original = originals[trial_id]
        assert json.loads(record) == devicelab.TrialRecord.from_json(original).to_json()
        # Every key the run wrote is kept, with its value.
        assert {k: json.loads(record)[k] for k in original} == original
        assert (otps, ttft_s, model, context_tokens, warmup) == (
            original["otps"],
            original["ttft_s"],
            original["model"],
            original["context_tokens"],
            original["warmup"],
        )
    assert json.loads(meta[0][0]) == json.loads((GATES / "baseline" / "run.json").read_text())
    assert meta[0][1] == "gates"


def test_a_column_per_field_and_cell_key(tmp_path: Path) -> None:
    db = tmp_path / "lab.duckdb"
    with open_store(db) as store:
        store.ingest(GATES / "reps3")
        cols = store.query("SELECT * FROM trials LIMIT 0").columns
    for name in [*(f.name for f in devicelab.FIELDS), *devicelab.CELL_KEY, "trial_id", "record"]:
        assert name in cols


def test_telemetry_summarised_per_trial(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(GATES / "reps3", run)
    trial_id = _records("reps3")[1]["trial_id"]
    samples = [
        {"trial_id": trial_id, "t": 0.1 * i, "phase": "decode", "mem_mb": m, "temp_c": 40.0}
        for i, m in enumerate([100.0, 300.0, 200.0])
    ]
    (run / "telemetry.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    with open_store(tmp_path / "lab.duckdb") as store:
        store.ingest(run)
        rows = store.query(
            "SELECT key, n, min, max, mean FROM telemetry WHERE trial_id = ? ORDER BY key",
            [trial_id],
        ).rows
        count = store.query(
            "SELECT telemetry_samples FROM trials WHERE trial_id = ?", [trial_id]
        ).rows
    assert rows == [("mem_mb", 3, 100.0, 300.0, 200.0), ("temp_c", 3, 40.0, 40.0, 40.0)]
    assert count == [(3,)]


def test_token_times_get_a_table_keyed_by_run_and_trial(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(GATES / "reps3", run)
    ids = [str(r["trial_id"]) for r in _records("reps3")]
    lines = [
        {"trial_id": ids[0], "batched": False, "ms": [50.0, 60.5, 71.25]},
        {"trial_id": ids[1], "batched": True, "ms": [40.0, 40.0, 55.0]},
        {"trial_id": ids[0], "batched": False, "ms": [51.0, 61.0]},  # run again: it wins
        {"trial_id": "not-a-trial-of-the-run", "batched": False, "ms": [1.0]},
    ]
    (run / "tokens.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    db = tmp_path / "lab.duckdb"
    with open_store(db) as store:
        store.ingest(run)
        store.ingest(run)  # again: replaced, not doubled
        rows = store.query(
            "SELECT trial_id, batched, n, ms FROM tokens WHERE run_id = ? ORDER BY trial_id",
            [_records("reps3")[0]["run_id"]],
        ).rows
        # Per-token percentiles straight from the table, with the record's columns.
        joined = store.query(
            "SELECT count(*) FROM tokens JOIN trials USING (run_id, trial_id)"
        ).rows
    assert sorted(rows) == sorted(
        [(ids[0], False, 2, [51.0, 61.0]), (ids[1], True, 3, [40.0, 40.0, 55.0])]
    )
    assert joined == [(2,)]


def test_ingest_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "lab.duckdb"
    with open_store(db) as store:
        first = store.ingest(GATES / "baseline")
        again = store.ingest(GATES / "baseline")
        store.ingest(GATES / "slower10")
        assert not first.replaced and again.replaced
        assert [r.run_id for r in store.runs()] == ["gates-baseline", "gates-slower10"]
    assert _counts(db) == {"gates-baseline": 13, "gates-slower10": 13}


def _ingest_all(db: str, order: list[str]) -> None:
    store = DuckDBStore(Path(db))
    for _ in range(3):
        for run in order:
            store.ingest(GATES / run)
    store.close()


def test_concurrent_ingesters_lose_and_double_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "lab.duckdb")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_ingest_all, args=(db, RUNS)),
        ctx.Process(target=_ingest_all, args=(db, RUNS[::-1])),
        ctx.Process(target=_ingest_all, args=(db, RUNS[1:] + RUNS[:1])),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
        assert p.exitcode == 0
    expected = {f"gates-{r}": len(_records(r)) for r in RUNS}
    assert _counts(Path(db)) == expected
    with open_store(db) as store:
        assert [r.trials for r in store.runs()] == [expected[r.run_id] for r in store.runs()]


def test_a_locked_database_is_waited_for_then_named(tmp_path: Path) -> None:
    db = tmp_path / "lab.duckdb"
    open_store(db).ingest(GATES / "reps3")
    ctx = multiprocessing.get_context("spawn")
    holding = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(db), holding))
    holder.start()
    try:
        assert holding.wait(timeout=120)
        start = time.monotonic()
        with pytest.raises(devicelab.UsageError, match="locked by another process"):
            DuckDBStore(db, lock_timeout_s=1.0).ingest(GATES / "baseline")
        assert time.monotonic() - start >= 0.5  # it waited before giving up
    finally:
        holder.terminate()
        holder.join()


def _hold_lock(db: str, holding: Any) -> None:
    con = duckdb.connect(db)
    holding.set()
    time.sleep(60)
    con.close()


def test_migrates_a_first_version_database(tmp_path: Path) -> None:
    db = tmp_path / "v1.duckdb"
    record = _records("baseline")[1]
    with duckdb.connect(str(db)) as con:
        con.execute(V1_DDL)
        con.execute(
            "INSERT INTO runs VALUES ('gates-baseline', 'x', 'gates', NULL, '{}', 1, 'now')"
        )
        con.execute(
            "INSERT INTO trials VALUES ('gates-baseline', ?, ?, 0)",
            [record["trial_id"], json.dumps(record)],
        )
    with open_store(db) as store:
        version = store.query("SELECT max(version) FROM schema_version").rows
        row = store.query("SELECT otps, model, fingerprint FROM trials").rows
        verdict = store.query("SELECT verdict, verdict_at, verdict_note FROM runs").rows
        store.ingest(GATES / "slower10")
    assert version == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION == 4
    # The columns v1 did not have are filled from the stored records.
    assert row[0][:2] == (record["otps"], record["model"])
    assert row[0][2] is not None
    assert verdict == [(None, None, None)]
    assert _counts(db) == {"gates-baseline": 1, "gates-slower10": 13}


def test_migrates_a_second_version_database_keeping_verdicts(tmp_path: Path) -> None:
    from devicelab_store.duck import MIGRATIONS

    db = tmp_path / "v2.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(V1_DDL)
        MIGRATIONS[1](con)  # version 2 exactly as it shipped
        con.execute("INSERT INTO schema_version VALUES (2)")
        for run_id, verdict in [("a", " Accepted"), ("b", "rejected"), ("c", "maybe")]:
            con.execute(
                "INSERT INTO runs VALUES (?, 'x', 'gates', NULL, '{}', 0, 'now', ?)",
                [run_id, verdict],
            )
    with open_store(db) as store:
        rows = store.query("SELECT run_id, verdict, verdict_at FROM runs ORDER BY run_id").rows
        version = store.query("SELECT max(version) FROM schema_version").rows
    assert version == [(SCHEMA_VERSION,)]
    # Verdicts written by hand are read as the commands write them; anything else is dropped.
    assert rows == [("a", "accepted", None), ("b", "rejected", None), ("c", None, None)]


def test_a_field_added_to_fields_becomes_a_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "lab.duckdb"
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(GATES / "reps3" / "run.json", run)
    lines = [{**r, "decode_j": 1.5} for r in _records("reps3")]
    (run / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with open_store(db) as store:
        store.ingest(run)  # stored before decode_j was a field
    extra = devicelab.Field("decode_j", "J", False, "decode energy", "median", 1)
    monkeypatch.setattr(devicelab, "FIELDS", (*devicelab.FIELDS, extra))
    with open_store(db) as store:
        assert store.query("SELECT DISTINCT decode_j FROM trials").rows == [(1.5,)]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "lab.duckdb"
    open_store(db).ingest(GATES / "reps3")
    with duckdb.connect(str(db)) as con:
        con.execute("INSERT INTO schema_version VALUES (?)", [SCHEMA_VERSION + 1])
    with pytest.raises(devicelab.UsageError, match="Upgrade devicelab"):
        open_store(db).runs()


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(devicelab.RunDirError, match="not a run directory"):
        open_store(tmp_path / "lab.duckdb").ingest(tmp_path)


def test_unknown_store_scheme_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(devicelab.UsageError, match="no results store for postgresql://"):
        open_store("postgresql://lab/results")


def test_cli_ingest_and_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEVICELAB_DB", str(tmp_path / "env.duckdb"))
    assert run_cli(["db", "ingest", str(GATES / "baseline"), str(GATES / "slower10")]) == 0
    assert "added run gates-baseline: 13 trials" in capsys.readouterr().out
    sql = (
        "SELECT run_id, count(*) AS n FROM trials WHERE NOT warmup GROUP BY run_id ORDER BY run_id"
    )
    assert run_cli(["db", "query", sql, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"run_id": "gates-baseline", "n": 12},
        {"run_id": "gates-slower10", "n": 12},
    ]
    assert run_cli(["db", "query", sql, "--csv"]) == 0
    assert list(csv.reader(io.StringIO(capsys.readouterr().out))) == [
        ["run_id", "n"],
        ["gates-baseline", "12"],
        ["gates-slower10", "12"],
    ]
    assert run_cli(["db", "query", sql]) == 0
    table = capsys.readouterr().out
    assert "gates-slower10" in table and "12" in table
    assert run_cli(["db", "query", "SELECT nope FROM trials"]) != 0
    assert "the query failed" in capsys.readouterr().err


def test_cli_query_without_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["db", "query", "SELECT 1", "--db", str(tmp_path / "no.duckdb")]) != 0
    assert "devicelab db ingest" in capsys.readouterr().err
    assert not (tmp_path / "no.duckdb").exists()


def _one_paragraph_exit_2(code: int, err: str) -> str:
    """The error a user sees: exit 2, one paragraph, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err and "\n\n" not in err.strip()
    return " ".join(err.split())


def _cut_copy(tmp_path: Path, name: str) -> Path:
    """A copy of the baseline run whose trials.jsonl stops in the middle of its last line."""
    run = tmp_path / name
    shutil.copytree(GATES / "baseline", run)
    text = (run / "trials.jsonl").read_text()
    (run / "trials.jsonl").write_text(text[: len(text) - 40])
    return run


def test_a_torn_last_line_is_reported_and_never_replaces_stored_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = _cut_copy(tmp_path, "cut")
    whole = len(_records("baseline"))
    fresh = str(tmp_path / "fresh.duckdb")
    assert run_cli(["db", "ingest", str(cut), "--db", fresh]) == 0
    out, err = capsys.readouterr()
    assert f"added run gates-baseline: {whole - 1} trials" in out
    err = " ".join(err.split())
    assert f"{cut / 'trials.jsonl'} line {whole} is torn" in err
    assert "may still be running, or the file was cut" in err
    # Over the complete stored run, the shorter copy is refused and nothing changes.
    db = str(tmp_path / "lab.duckdb")
    assert run_cli(["db", "ingest", str(GATES / "baseline"), "--db", db]) == 0
    capsys.readouterr()
    msg = _one_paragraph_exit_2(
        run_cli(["db", "ingest", str(cut), "--db", db]), capsys.readouterr().err
    )
    assert f"has {whole - 1} trials of run gates-baseline" in msg and f"holds {whole}" in msg
    assert f"line {whole} is torn" in msg and "Nothing was changed" in msg and "--replace" in msg
    assert _counts(Path(db)) == {"gates-baseline": whole}
    # Asked to, it keeps exactly what the directory has.
    assert run_cli(["db", "ingest", str(cut), "--db", db, "--replace"]) == 0
    assert _counts(Path(db)) == {"gates-baseline": whole - 1}
    with open_store(db) as store:
        assert [r.trials for r in store.runs()] == [whole - 1]
    # A complete copy over a shorter stored run is an ordinary re-ingest.
    assert run_cli(["db", "ingest", str(GATES / "baseline"), "--db", db]) == 0
    assert _counts(Path(db)) == {"gates-baseline": whole}


def test_a_database_folder_that_cannot_be_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = run_cli(["db", "ingest", str(GATES / "baseline"), "--db", str(blocker / "lab.duckdb")])
    msg = _one_paragraph_exit_2(code, capsys.readouterr().err)
    assert f"cannot make the folder {blocker}" in msg and "--db" in msg


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_database_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    db = tmp_path / "lab.duckdb"
    open_store(db).ingest(GATES / "baseline")
    data = bytearray(db.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[4096:12288] = b"\xab" * 8192
    db.write_bytes(bytes(data))
    code = run_cli(["db", "ingest", str(GATES / "slower10"), "--db", str(db)])
    msg = _one_paragraph_exit_2(code, capsys.readouterr().err)
    assert f"the results database {db} cannot be used" in msg
    assert "damaged" in msg and f"Not ingested: {GATES / 'slower10'}" in msg


def test_runs_of_a_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["db", "runs", "--db", str(tmp_path / "no.duckdb")])
    assert "no results database at" in _one_paragraph_exit_2(code, capsys.readouterr().err)
    assert not (tmp_path / "no.duckdb").exists()


def test_ingest_names_the_run_it_could_not_take_and_takes_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    db = str(tmp_path / "lab.duckdb")
    a, b = str(GATES / "baseline"), str(GATES / "slower10")
    msg = _one_paragraph_exit_2(
        run_cli(["db", "ingest", a, str(bad), b, "--db", db]), capsys.readouterr().err
    )
    assert f"{bad} was not ingested: {bad} has no trials.jsonl" in msg
    assert f"Ingested: {a}, {b}." in msg
    assert set(_counts(Path(db))) == {"gates-baseline", "gates-slower10"}


def test_db_runs_keeps_run_ids_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    long_id = "nightly-2026-12-07T03-00-00-long-context-q4_0-abcdef"
    run = _derive(tmp_path, "baseline", long_id, "2026-12-07T03:00:00+00:00")
    db = str(tmp_path / "lab.duckdb")
    assert run_cli(["db", "ingest", str(run), "--db", db]) == 0
    capsys.readouterr()
    assert run_cli(["db", "runs", "--db", db]) == 0
    assert long_id in capsys.readouterr().out


# --- history and change points ------------------------------------------------------------


def _scores() -> Any:
    """bench/store_changepoints.py: the seeded synthetic series the bench scores."""
    path = Path(__file__).resolve().parents[2] / "bench" / "store_changepoints.py"
    spec = importlib.util.spec_from_file_location("store_changepoints", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name while they are made.
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_false_change_points_do_not_grow_with_history_length() -> None:
    bench = _scores()
    kinds = {k.name: k for k in bench.KINDS}
    for name in ("flat60", "flat1000"):
        score = bench.score(kinds[name])
        assert score.series == 20 and score.false <= 0.1, score
    # Two real steps in 1,000 runs: both found, and little else.
    two = bench.score(kinds["two1000"])
    assert two.recall >= 0.9 and two.precision >= 0.9, two


def test_a_step_is_found_at_60_runs() -> None:
    bench = _scores()
    for kind in bench.KINDS:
        if kind.runs == 60 and kind.steps:
            score = bench.score(kind)
            assert score.recall >= 0.9 and score.precision >= 0.9, score


def test_one_low_last_run_is_provisional_not_a_change() -> None:
    from devicelab import CONFIRM_RUNS, change_points

    bench = _scores()
    (last,) = [k for k in bench.KINDS if k.last_low]
    score = bench.score(last)
    assert score.false <= 0.1 and score.provisional >= 0.8, score
    # A real step is provisional until CONFIRM_RUNS runs follow it, then confirmed.
    rng = random.Random(7)
    for after in range(1, CONFIRM_RUNS + 2):
        values = [100 + rng.gauss(0, 2) for _ in range(30)] + [
            90 + rng.gauss(0, 2) for _ in range(after)
        ]
        (found,) = change_points(values)
        assert found.index == 30 and found.to_confirm == max(0, CONFIRM_RUNS - after)
    assert change_points([100 + rng.gauss(0, 2) for _ in range(30)]) == []


def _history_db(root: Path, builds: list[str], speed: list[float]) -> tuple[list[Path], str]:
    """Nightly runs of the ``builds``, ``otps`` scaled by ``speed``, ingested into a database."""
    dirs = _write_history(root, builds, speed)
    db = str(root / "lab.duckdb")
    assert run_cli(["db", "ingest", *map(str, dirs), "--db", db]) == 0
    return dirs, db


def _write_history(root: Path, builds: list[str], speed: list[float]) -> list[Path]:
    rng = random.Random(3)
    base = _records("baseline")
    dirs = []
    for i, (build, factor) in enumerate(zip(builds, speed, strict=True)):
        run_id = f"nightly-{i:02d}"
        d = root / run_id
        d.mkdir()
        meta = {
            "run_id": run_id,
            "scenario_name": "gates",
            "created_at": f"2026-11-{i + 1:02d}T03:00:00.000+00:00",
            "engine_build": build,
        }
        (d / "run.json").write_text(json.dumps(meta))
        jitter = 1 + rng.uniform(-0.01, 0.01)
        recs = [
            {**r, "run_id": run_id, "otps": r["otps"] * factor * jitter, "quality": {"bleu": 0.5}}
            for r in base
        ]
        (d / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        dirs.append(d)
    return dirs


def test_history_names_what_changed_at_a_change_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builds = ["b4120"] * 8 + ["b4188"] * 8
    _, db = _history_db(tmp_path, builds, [1.0] * 8 + [0.8] * 8)
    capsys.readouterr()
    assert run_cli(["history", "otps", "--by", "task", "--db", db, "--json"]) == 0
    cells = {c["cell"]["task"]: c["runs"] for c in json.loads(capsys.readouterr().out)}
    assert set(cells) == {"SUMM", "QA"}
    for runs in cells.values():
        changes = [(r["run_id"], r["change"]) for r in runs if r["change"]]
        # One change per cell, at the first run of the new build, with the build named.
        assert [run_id for run_id, _ in changes] == ["nightly-08"]
        assert "engine_build: 'b4120' -> 'b4188'" in changes[0][1]
        assert re.match(r"-(19\.[5-9]|20\.[0-4])%", changes[0][1])
        assert all(r["n"] == 6 and r["q1"] <= r["median"] <= r["q3"] for r in runs)
    assert run_cli(["history", "otps", "--by", "task", "--db", db]) == 0
    assert "engine_build" in capsys.readouterr().out
    # --since leaves the older runs out, and with them the step.
    assert run_cli(["history", "otps", "--by", "task", "--since", "2026-11-09", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "nightly-07" not in out and "nightly-09" in out and "engine_build" not in out


def test_what_changed_names_provenance_fields_one_by_one() -> None:
    from devicelab_store.history import what_changed

    def meta(commit: str) -> dict[str, object]:
        return {"run_id": commit, "provenance": {"devicelab": {"git": {"commit": commit}}}}

    assert what_changed(meta("a1"), meta("b2")) == "provenance.devicelab.git.commit: 'a1' -> 'b2'"
    assert what_changed(meta("a1"), meta("a1")) == "nothing in run meta"


def _with_options(run_id: str, options: dict[str, Any]) -> dict[str, Any]:
    load = {"model": {"name": "smollm2", "quant": "q4_0"}, "options": options}
    prov = {"devicelab": {"git": {"commit": run_id}}, "loads": {run_id: load}}
    return {"run_id": run_id, "fingerprint": run_id, "provenance": prov}


def test_what_changed_names_the_engine_options_first() -> None:
    from devicelab_store.history import what_changed

    before = _with_options("a1", {"threads": 2, "n_ctx": 2048})
    after = _with_options("b2", {"threads": 1, "n_ctx": 2048})
    text = what_changed(before, after)
    assert text.startswith("threads: 2 -> 1; fingerprint: 'a1' -> 'b2'")
    assert "provenance.devicelab.git.commit: 'a1' -> 'b2'" in text
    many = {"run_id": "x", **{f"k{i}": i for i in range(6)}}
    assert what_changed({"run_id": "w"}, many).endswith("; and 2 more in run.json")


@pytest.mark.usefixtures("words_installed")
def test_each_load_records_its_resolved_options(
    tmp_path: Path, words_scenario: Callable[..., Path]
) -> None:
    from devicelab_store.history import what_changed

    path = words_scenario(reps=1, warmup=0, kinds='["QA"]')
    metas = []
    for name, extra in [("a", ""), ("b", "[models.options]\nn_ctx = 2048\n")]:
        path.write_text(path.read_text().replace("[tasks]", extra + "\n[tasks]", 1))
        out = tmp_path / name
        assert run_cli(["run", str(path), "--out", str(out)]) == 0
        metas.append(json.loads((out / "run.json").read_text()))
        path.write_text(path.read_text().replace(extra, "", 1))
    (load,) = metas[0]["provenance"]["loads"].values()
    assert load["options"] == {"n_ctx": 4096, "delay_s": 0.0}  # defaults filled in
    text = what_changed(*metas)
    assert text.startswith("n_ctx: 4096 -> 2048")
    # A digest is named by its first 12 digits, not 64.
    assert re.search(r"provenance.scenario.sha256: '[0-9a-f]{12}…' -> '[0-9a-f]{12}…'", text)


def test_history_leaves_rejected_runs_out_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dirs, db = _history_db(tmp_path, ["b1"] * 10 + ["b2"] * 6, [1.0] * 10 + [0.8] * 6)
    slow = [d.name for d in dirs[10:]]
    assert run_cli(["db", "reject", *slow, "--db", db]) == 0
    capsys.readouterr()

    def changes(*args: str) -> tuple[list[str], set[str], str]:
        assert run_cli(["history", "otps", "--by", "task", "--db", db, "--json", *args]) == 0
        out, err = capsys.readouterr()
        (qa,) = [c["runs"] for c in json.loads(out) if c["cell"]["task"] == "QA"]
        return [r["run_id"] for r in qa if r["change"]], {r["run_id"] for r in qa}, err

    found, shown, err = changes()
    assert found == [] and shown == {d.name for d in dirs[:10]}
    assert f"6 runs marked rejected left out ({', '.join(slow)}); --verdict all" in err
    found, shown, err = changes("--verdict", "all")
    assert found == ["nightly-10"] and len(shown) == 16 and "left out" not in err
    # The report's figures leave them out too, and say so.
    report = tmp_path / "report"
    assert run_cli(["report", str(dirs[9]), "--out", str(report), "--history", "--db", db]) == 0
    html = (report / "report.html").read_text()
    otps_note = html.split("History: OTPS over runs")[1].split("<h2>")[0]
    assert "6 runs marked rejected are left out" in otps_note and "Change points" not in otps_note
    assert run_cli(["db", "accept", "nightly-00", "nightly-01", "--db", db]) == 0
    capsys.readouterr()
    found, shown, err = changes("--verdict", "accepted")
    assert shown == {"nightly-00", "nightly-01"} and "14 runs not marked accepted" in err


def test_a_change_in_the_last_runs_is_provisional(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dirs, db = _history_db(tmp_path, ["b1"] * 12 + ["b2"] * 2, [1.0] * 12 + [0.8] * 2)
    capsys.readouterr()
    assert run_cli(["history", "otps", "--by", "task", "--db", db, "--json"]) == 0
    for cell in json.loads(capsys.readouterr().out):
        (point,) = [r for r in cell["runs"] if r["change"]]
        assert (point["run_id"], point["to_confirm"]) == ("nightly-12", 3)
    assert run_cli(["history", "otps", "--by", "task", "--db", db]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "provisional (3 more runs would confirm it)" in out
    report = tmp_path / "report"
    assert run_cli(["report", str(dirs[-1]), "--out", str(report), "--history", "--db", db]) == 0
    html = (report / "report.html").read_text()
    assert "at nightly-12: provisional (3 more runs would confirm it)" in html


def test_history_where_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, db = _history_db(tmp_path, ["b1"] * 5, [1.0] * 5)
    capsys.readouterr()
    assert run_cli(["history", "otps", "--by", "task", "--where", "t.task = 'QA'", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "task=QA" in out and "task=SUMM" not in out and "engine_build" not in out
    assert run_cli(["history", "quality.bleu", "--by", "task", "--json", "--db", db]) == 0
    medians = {r["median"] for c in json.loads(capsys.readouterr().out) for r in c["runs"]}
    assert medians == {0.5}
    assert run_cli(["history", "tokens_per_s", "--db", db]) != 0
    assert "unknown metric 'tokens_per_s'" in capsys.readouterr().err
    assert run_cli(["history", "otps", "--by", "phone", "--db", db]) != 0
    assert "--by phone is not a trial column" in capsys.readouterr().err


# --- run --db: each trial stored as it finishes ------------------------------------------------


def _trial_ids(path: Path) -> list[str]:
    lines = (path / "trials.jsonl").read_text().splitlines()
    return [json.loads(line)["trial_id"] for line in lines if line.strip()]


@pytest.mark.usefixtures("words_installed")
def test_run_db_stores_each_trial_as_it_finishes(
    tmp_path: Path,
    words_scenario: Callable[..., Path],
    devicelab_plugin: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "lab.duckdb"
    seen: list[tuple[str, set[str]]] = []

    class Watcher:
        # Runs after the store's hook: what the database holds once a trial is reported.
        @devicelab.hookimpl(trylast=True)
        def devicelab_trial_finished(self, record: devicelab.TrialRecord) -> None:
            with open_store(db) as store:
                rows = store.query("SELECT trial_id FROM trials").rows
            seen.append((record.trial_id, {r[0] for r in rows}))

    devicelab_plugin(Watcher(), "watcher")
    out = tmp_path / "run"
    assert run_cli(["run", str(words_scenario()), "--out", str(out), "--db", str(db)]) == 0
    written = _trial_ids(out)
    assert len(seen) == len(written) >= 4
    for i, (trial_id, stored) in enumerate(seen):
        # The trial just finished and every one before it, and none still to come.
        assert trial_id == written[i] and stored == set(written[: i + 1])
    with open_store(db) as store:
        (run,) = store.runs()
        records = store.query("SELECT record FROM trials ORDER BY trial_id").rows
        samples = store.query("SELECT sum(telemetry_samples) FROM trials").rows
    assert run.trials == len(written) and run.path == str(out.resolve())
    on_disk = sorted(
        (json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()),
        key=lambda r: r["trial_id"],
    )
    assert [json.loads(r[0]) for r in records] == on_disk
    lines = (out / "telemetry.jsonl").read_text().splitlines()
    assert samples == [(sum(json.loads(line)["trial_id"] in written for line in lines),)]
    assert f"stored run {run.run_id} ({len(written)} trials) in {db}" in capsys.readouterr().err
    # Each trial's token times went in with it: the same offsets as tokens.jsonl.
    with open_store(db) as store:
        kept = store.query("SELECT trial_id, n, ms FROM tokens ORDER BY trial_id").rows
    from_file = {json.loads(line)["trial_id"]: json.loads(line)["ms"] for line in
                 (out / "tokens.jsonl").read_text().splitlines()}  # fmt: skip
    assert [t for t, _, _ in kept] == sorted(written)
    assert all(n == len(ms) == len(from_file[t]) and ms == from_file[t] for t, n, ms in kept)


@pytest.mark.usefixtures("words_installed")
def test_store_table_ingests_into_a_db_beside_the_scenario(
    tmp_path: Path, words_scenario: Callable[..., Path]
) -> None:
    path = words_scenario(reps=1, warmup=0)
    path.write_text(path.read_text() + '\n[store]\ningest = true\ndb = "lab.duckdb"\n')
    out = tmp_path / "run"
    assert run_cli(["run", str(path), "--out", str(out)]) == 0
    assert _counts(tmp_path / "lab.duckdb") == {
        json.loads((out / "run.json").read_text())["run_id"]: len(_trial_ids(out))
    }
    # Where results are stored is no part of what a run measures: it resumes without [store].
    path.write_text(path.read_text().split("[store]")[0])
    assert run_cli(["run", str(path), "--out", str(out), "--resume"]) == 0


@pytest.mark.usefixtures("words_installed")
def test_a_store_that_fails_never_fails_the_run(
    tmp_path: Path, words_scenario: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database's folder should be")
    db = blocker / "lab.duckdb"
    out = tmp_path / "run"
    assert run_cli(["run", str(words_scenario()), "--out", str(out), "--db", str(db)]) == 0
    err = capsys.readouterr().err
    assert len(_trial_ids(out)) >= 4  # every trial kept in the run directory
    # One warning while the run goes, one at its end naming the command that makes up.
    assert err.count("failed in devicelab_trial_finished") == 1
    assert f"devicelab db ingest {out} --db {db}" in err
    assert not db.exists()


@pytest.mark.usefixtures("words_installed")
def test_an_interrupted_run_is_stored_as_far_as_it_got_and_resumes(
    tmp_path: Path, words_scenario: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from wordsplugin import WordEngine

    WordEngine.interrupted = False
    path = str(words_scenario(model="interrupt", reps=1, warmup=0))
    out, db = tmp_path / "run", str(tmp_path / "lab.duckdb")
    assert run_cli(["run", path, "--out", str(out), "--db", db]) == 130
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    assert _counts(Path(db)) == {run_id: len(_trial_ids(out))} == {run_id: 2}
    capsys.readouterr()
    assert run_cli(["run", path, "--out", str(out), "--db", db, "--resume"]) == 0
    assert _counts(Path(db)) == {run_id: len(_trial_ids(out))} == {run_id: 8}
    # The resumed run loads the model again: its load's samples replace the first ones.
    assert "failed in devicelab_trial_finished" not in capsys.readouterr().err


@pytest.mark.usefixtures("words_installed")
def test_a_ctrl_c_that_lands_in_a_store_write_stops_the_run(
    tmp_path: Path, words_scenario: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # DuckDB turns a SIGINT during a query into an error of its own; the run must still stop
    # as on any Ctrl-C, not warn and go on.
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Query interrupted")  # what duckdb 1.x raises

    monkeypatch.setattr(DuckDBStore, "ingest_trial", interrupted)
    out, db = tmp_path / "run", str(tmp_path / "lab.duckdb")
    assert run_cli(["run", str(words_scenario()), "--out", str(out), "--db", db]) == 130
    assert len(_trial_ids(out)) == 1  # the trial being stored is kept in the run directory


# --- accept, reject, and gates against the database ------------------------------------------


def _derive(root: Path, source: str, run_id: str, created: str, **change: Any) -> Path:
    """A copy of a gates run as another run: its own id and time, ``otps`` scaled by
    ``speed``, ``device_info`` updated with ``device``."""
    speed = change.get("speed", 1.0)
    d = root / run_id
    d.mkdir()
    meta = {**json.loads((GATES / source / "run.json").read_text()), **change.get("meta", {})}
    (d / "run.json").write_text(json.dumps({**meta, "run_id": run_id, "created_at": created}))
    recs = []
    for r in _records(source):
        info = {**r["device_info"], **change.get("device", {})}
        otps = r["otps"] * speed if r["otps"] is not None else None
        recs.append({**r, "run_id": run_id, "otps": otps, "device_info": info})
    (d / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def _lab(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A database of baseline-like runs: accepted, rejected, unjudged, another phone."""
    runs = {
        "old": _derive(tmp_path, "baseline", "old", "2026-11-01T00:00:00+00:00", speed=2.0),
        "acc1": _derive(tmp_path, "baseline", "acc1", "2026-11-02T00:00:00+00:00"),
        "acc2": _derive(tmp_path, "unchanged", "acc2", "2026-11-03T00:00:00+00:00"),
        "bad": _derive(tmp_path, "baseline", "bad", "2026-11-04T00:00:00+00:00", speed=0.5),
        "new": _derive(tmp_path, "baseline", "new", "2026-11-05T00:00:00+00:00", speed=0.5),
        "phone": _derive(
            tmp_path, "baseline", "phone", "2026-11-06T00:00:00+00:00", device={"cpu": "X4"}
        ),
    }
    db = tmp_path / "lab.duckdb"
    assert run_cli(["db", "ingest", *map(str, runs.values()), "--db", str(db)]) == 0
    assert run_cli(["db", "accept", "old", "acc1", "acc2", "phone", "--db", str(db)]) == 0
    assert run_cli(["db", "reject", "bad", "--note", "hot phone", "--db", str(db)]) == 0
    return db, runs


def test_accept_and_reject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = _lab(tmp_path)
    assert "accepted run acc2" in capsys.readouterr().out
    with open_store(db) as store:
        verdicts = dict(store.query("SELECT run_id, verdict FROM runs").rows)
        note = store.query("SELECT verdict_note, verdict_at FROM runs WHERE run_id='bad'").rows
        listed = {r.run_id: r.verdict for r in store.runs()}
    assert verdicts == {
        "old": "accepted",
        "acc1": "accepted",
        "acc2": "accepted",
        "bad": "rejected",
        "new": None,
        "phone": "accepted",
    }
    assert verdicts == listed
    assert note[0][0] == "hot phone" and note[0][1]
    # A verdict survives a re-ingest of its run; a run can be judged again.
    assert run_cli(["db", "ingest", str(tmp_path / "bad"), "--db", str(db)]) == 0
    assert run_cli(["db", "accept", "bad", "--db", str(db)]) == 0
    with open_store(db) as store:
        assert store.query("SELECT verdict FROM runs WHERE run_id='bad'").rows == [("accepted",)]
    capsys.readouterr()
    msg = _one_paragraph_exit_2(
        run_cli(["db", "reject", "nope", "--db", str(db)]), capsys.readouterr().err
    )
    assert "no stored run 'nope'" in msg and "nothing was marked" in msg
    code = run_cli(["db", "accept", "nope", "new", "--db", str(db)])
    out, err = capsys.readouterr()
    assert "accepted run new" in out
    assert "no stored run 'nope'" in _one_paragraph_exit_2(code, err)
    assert "marked accepted: new" in " ".join(err.split())


def test_baseline_is_the_last_accepted_runs_of_the_same_device_and_cell(tmp_path: Path) -> None:
    from devicelab_store.baseline import baseline_records

    db, runs = _lab(tmp_path)
    candidate = devicelab.load_run(runs["new"])
    with open_store(db) as store:
        _, last2 = baseline_records(store, candidate, 2)
        records, last5 = baseline_records(store, candidate, 5)
        # A cell that only some runs have: its own last runs.
        only_qa = devicelab.RunData(
            candidate.path,
            [r for r in candidate.records if r.identity.task == "QA"],
            candidate.meta,
        )
        qa_records, _ = baseline_records(store, only_qa, 1)
    # Accepted only (not "bad", not the unjudged "new"), same fingerprint (not "phone"),
    # newest first.
    assert last2 == ["acc2", "acc1"]
    assert last5 == ["acc2", "acc1", "old"]
    assert all(r.measured for r in records)
    assert len(records) == 3 * len([r for r in candidate.records if r.measured])
    assert {r.identity.task for r in qa_records} == {"QA"}
    assert {r.identity.run_id for r in qa_records} == {"acc2"}


def test_gate_against_the_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, runs = _lab(tmp_path)
    fast = _derive(tmp_path, "unchanged", "cand-ok", "2026-11-07T00:00:00+00:00")
    base = ["gate", "--baseline-from-db", "--db", str(db), "--last", "2", "--fail"]
    capsys.readouterr()
    assert run_cli([*base, "otps:median:5%", str(fast)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "2 accepted runs" in out
    # "new" is half as fast as the accepted runs: a regression.
    assert run_cli([*base, "otps:median:5%", str(runs["new"])]) == 1
    assert "FAIL" in capsys.readouterr().out
    # With the last 3, "old" (twice as fast) is in the baseline too: still a regression.
    assert run_cli([*base[:-2], "3", "--fail", "otps:median:5%", str(runs["new"])]) == 1
    capsys.readouterr()
    # Another phone has no accepted run of its own beyond itself: bad input, named.
    other = _derive(tmp_path, "baseline", "other", "2026-11-08T00:00:00+00:00", device={"cpu": "Y"})
    assert run_cli([*base, "otps:median:5%", str(other)]) == 2
    assert "devicelab db accept RUN_ID" in capsys.readouterr().err
    assert run_cli([*base, "otps:median:5%", str(fast), str(fast)]) == 2
    assert "give only the CANDIDATE" in capsys.readouterr().err


def test_the_gate_reads_the_provenance_of_the_stored_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "lab.duckdb")
    at = "2026-11-0{}T00:00:00+00:00"
    runs = [
        _derive(tmp_path, "baseline", f"acc{i}", at.format(i), meta=_with_options(f"c{i}", {}))
        for i in (1, 2)
    ]
    cand = _derive(tmp_path, "unchanged", "cand", at.format(3), meta=_with_options("c3", {}))
    assert run_cli(["db", "ingest", *map(str, runs), "--db", db]) == 0
    assert run_cli(["db", "accept", "acc1", "acc2", "--db", db]) == 0
    capsys.readouterr()
    gate = ["gate", "--baseline-from-db", "--db", db, "--fail", "otps:median:5%", str(cand)]
    assert run_cli(gate) == 0
    out = capsys.readouterr().err
    assert "has none" not in out
    # Compared with the newest accepted run's builds.
    assert "devicelab.git.commit: c2 -> c3" in out


def test_pytest_gates_against_the_database(tmp_path: Path, pytester: pytest.Pytester) -> None:
    db, runs = _lab(tmp_path)
    args = ["--devicelab-baseline-from-db", "--devicelab-db", str(db), "--devicelab-last", "2"]
    args += ["--devicelab-fail", "otps:median:5%"]
    fast = _derive(tmp_path, "unchanged", "cand-ok", "2026-11-07T00:00:00+00:00")
    result = pytester.runpytest("-v", *args, "--devicelab-candidate", str(fast))
    result.assert_outcomes(passed=2)
    result = pytester.runpytest(*args, "--devicelab-candidate", str(runs["new"]))
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*regression beyond otps:median:5%*"])
    result = pytester.runpytest(*args, "--devicelab-baseline", str(runs["acc1"]))
    assert result.ret == pytest.ExitCode.USAGE_ERROR


# --- report --history --------------------------------------------------------------------------


def test_report_history_adds_the_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builds = ["b4120"] * 8 + ["b4188"] * 8
    dirs, db = _history_db(tmp_path, builds, [1.0] * 8 + [0.8] * 8)
    out = tmp_path / "report"
    assert run_cli(["report", str(dirs[-1]), "--out", str(out), "--history", "--db", db]) == 0
    html = (out / "report.html").read_text()
    for field in ("otps", "itps", "ttft_s"):
        assert (out / f"history-{field}.png").stat().st_size > 1000
        assert f'alt="history-{field}.png"' in html
    assert "History: OTPS over runs" in html
    # The step in OTPS is named with the build that changed; ITPS did not change.
    otps_note = html.split("History: OTPS over runs")[1].split("<h2>")[0]
    assert "at nightly-08" in otps_note and "b4120" in otps_note and "b4188" in otps_note
    itps_note = html.split("History: ITPS over runs")[1].split("<h2>")[0]
    assert "Change points" not in itps_note
    # Without --history the report has none of them.
    assert "Change points" in otps_note and "hollow: provisional" in otps_note
    capsys.readouterr()
    assert run_cli(["report", str(dirs[-1]), "--out", str(tmp_path / "plain")]) == 0
    assert not list((tmp_path / "plain").glob("history-*"))


def test_history_figure_axes_name_runs_and_the_way_a_step_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devicelab_store import figures

    dirs, db = _history_db(tmp_path, ["b1"] * 8 + ["b2"] * 8, [0.8] * 8 + [1.0] * 8)
    drawn: list[Any] = []
    monkeypatch.setattr(figures, "_png", lambda plt, fig: drawn.append(fig) or b"png")
    with open_store(db) as store:
        figures.history_figures(store, devicelab.load_run(dirs[-1]))
    axes = [ax for ax in drawn[0].axes if ax.get_visible()]
    assert axes and all("//" not in ax.get_title() and ax.get_title() for ax in axes)
    labels = [t.get_text() for t in axes[0].get_xticklabels()]
    assert labels[0] == "2026-11-01" and all(label.startswith("2026-11-") for label in labels)
    # Only OTPS has a step, and it went up.
    markers = {line.get_marker() for fig in drawn for ax in fig.axes for line in ax.get_lines()}
    assert "^" in markers and "v" not in markers
