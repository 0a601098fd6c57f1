"""How fast is the results store? Ingesting the main job's run, and `history` over 1,000 runs.

    devicelab run scenarios/smoke.toml --out runs/smoke     # any short real run
    python bench/store_scale.py --source runs/smoke [--runs 1000] [--json out.json]

From the real records (and telemetry) of ``--source`` it makes:

1. a run shaped like the main job (scenarios/long_context.toml: one warm-up and 3 tasks x
   5 context lengths x 3 repetitions = 46 trials), each trial a copy of the source's ok
   record of the same task (the nearest L) with its speeds varied and its telemetry samples
   copied, and times ``Store.ingest`` of it into a new database (target: under 2 s), a
   re-ingest (the replace path) and the per-trial ingest of ``devicelab run --db``;
2. ``--runs`` such runs as nightly builds (engine_build changes twice, with a step in speed
   each time, plus noise per run and per trial; records only, no telemetry), ingested into
   one database, every tenth accepted;
3. then times ``history`` over that database (target: under 1 s): the SQL (median and IQR
   per cell and run) and the change points (Apache Otava) in-process, and the whole
   ``devicelab history otps --json`` command in a new process (interpreter start and imports
   included), and a gate baseline from the database.

Machines are noisy and shared: read the numbers as orders of magnitude, report the medians.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from devicelab_store import open_store
from devicelab_store.baseline import baseline_records
from devicelab_store.duck import DuckDBStore
from devicelab_store.history import change_points, history

import devicelab

TASKS = ("SUMM", "QS", "QA")
LENGTHS = (200, 400, 600, 800, 1000)
REPS = 3


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _templates(source: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[Any]]]:
    """task -> the source's ok records of it; trial_id -> its telemetry samples."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for rec in _read_jsonl(source / "trials.jsonl"):
        measured = rec.get("status") == "ok" and not rec.get("warmup")
        if measured and rec.get("ttft_s") and rec.get("otps"):
            by_task.setdefault(rec["task"], []).append(rec)
    missing = [t for t in TASKS if t not in by_task]
    if missing:
        # A task the source lacks borrows another's record (its task name changed).
        spare = next(iter(by_task.values()), None)
        if spare is None:
            sys.exit(f"{source}: no ok trial with ttft_s and otps; give a run that finished.")
        for t in missing:
            by_task[t] = [{**r, "task": t} for r in spare]
    samples: dict[str, list[Any]] = {}
    for s in _read_jsonl(source / "telemetry.jsonl"):
        samples.setdefault(str(s.get("trial_id")), []).append(s)
    return by_task, samples


def _vary(
    template: dict[str, Any], run_id: str, task: str, length: int, rep: int, speed: float, rng: Any
) -> dict[str, Any]:
    rec = copy.deepcopy(template)
    scale = length / max(1, int(template["context_tokens"]) or 1)
    warm = rep < 0
    jitter = 1 + rng.gauss(0, 0.03)
    inputs = max(1, round(int(template["input_tokens"]) * scale))
    ttft = float(template["ttft_s"]) * scale / (speed * jitter)
    otps = float(template["otps"]) * speed * (1 + rng.gauss(0, 0.03))
    outputs = int(template["output_tokens"])
    ident = "/".join(str(template[k]) for k in ("device", "model", "quant"))
    tag = "w0" if warm else f"r{rep}"
    rec.update(
        run_id=run_id,
        trial_id=f"{ident}/{task}/{template['doc_id']}/{template['item']}/L{length}/{tag}",
        task=task,
        context_tokens=length,
        sections=length // 200,
        repetition=0 if warm else rep,
        warmup=warm,
        input_tokens=inputs,
        ttft_s=ttft,
        itps=inputs / ttft,
        otps=otps,
        runtime_s=ttft + (outputs - 1) / otps,
    )
    return rec


def make_run(
    root: Path,
    run_id: str,
    created: datetime,
    speed: float,
    templates: dict[str, list[dict[str, Any]]],
    samples: dict[str, list[Any]] | None,
    rng: Any,
    meta: dict[str, Any] | None = None,
) -> Path:
    """One run directory shaped like the main job (46 trials)."""
    d = root / run_id
    d.mkdir(parents=True)
    run_meta = {
        "run_id": run_id,
        "scenario_name": "long_context",
        "scenario_source": "scenarios/long_context.toml",
        "created_at": created.isoformat(timespec="milliseconds"),
        **(meta or {}),
    }
    (d / "run.json").write_text(json.dumps(run_meta, indent=2) + "\n")
    records, tele = [], []
    plan = [(TASKS[0], LENGTHS[0], -1)] + [
        (task, length, rep) for task in TASKS for length in LENGTHS for rep in range(REPS)
    ]
    for task, length, rep in plan:
        choices = templates[task]
        template = min(choices, key=lambda r: abs(int(r["context_tokens"]) - length))
        rec = _vary(template, run_id, task, length, rep, speed, rng)
        records.append(rec)
        if samples is not None:
            for s in samples.get(template["trial_id"], []):
                tele.append({**s, "trial_id": rec["trial_id"]})
    (d / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if tele:
        (d / "telemetry.jsonl").write_text("".join(json.dumps(s) + "\n" for s in tele))
    return d


class Clock:
    """Wall and CPU seconds of repeated calls. On a shared machine the wall time is mostly
    waiting for a core; the CPU time (this process, all its threads) is what the work costs."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)
        return out

    def summary(self) -> dict[str, Any]:
        def of(xs: list[float]) -> dict[str, float]:
            return {
                "median": round(statistics.median(xs), 4),
                "max": round(max(xs), 4),
                "total": round(sum(xs), 3),
            }

        return {"n": len(self.wall), "wall_s": of(self.wall), "cpu_s": of(self.cpu)}


def bench_main_job(work: Path, templates: Any, samples: Any, rng: Any) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    shutil.rmtree(work / "main", ignore_errors=True)
    run = make_run(work / "main", "main-job", now, 1.0, templates, samples, rng)
    n_trials = len(_read_jsonl(run / "trials.jsonl"))
    n_samples = len(_read_jsonl(run / "telemetry.jsonl"))
    fresh, again = Clock(), Clock()
    for i in range(5):
        db = work / f"main-{i}.duckdb"
        db.unlink(missing_ok=True)
        store = DuckDBStore(db)
        fresh(store.ingest, run)
        again(store.ingest, run)
    # What `devicelab run --db` does per trial: one trial and its samples into the database.
    (work / "live.duckdb").unlink(missing_ok=True)
    store = DuckDBStore(work / "live.duckdb")
    meta = json.loads((run / "run.json").read_text())
    by_trial: dict[str, list[Any]] = {}
    for s in _read_jsonl(run / "telemetry.jsonl"):
        by_trial.setdefault(s["trial_id"], []).append(s)
    per_trial = Clock()
    for rec in _read_jsonl(run / "trials.jsonl"):
        record = devicelab.TrialRecord.from_json(rec)
        own = by_trial.get(record.trial_id, [])
        per_trial(store.ingest_trial, run, meta, record, own)
    return {
        "trials": n_trials,
        "telemetry_samples": n_samples,
        "ingest_into_new_db": fresh.summary(),
        "reingest_replacing": again.summary(),
        "per_trial_ingest_as_run_db": per_trial.summary(),
    }


def build_history_db(work: Path, db: Path, runs: int, templates: Any, rng: Any) -> dict[str, Any]:
    start = datetime(2024, 1, 1, 3, tzinfo=timezone.utc)
    steps = {round(runs * 0.4): 0.88, round(runs * 0.75): 1.08}  # run index -> speed factor
    speed, build = 1.0, 4000
    store = DuckDBStore(db)
    ingest = Clock()
    for i in range(runs):
        if i in steps:
            speed *= steps[i]
            build += 88
        run_speed = speed * (1 + rng.gauss(0, 0.02))
        tmp = work / "gen"
        run = make_run(
            tmp,
            f"nightly-{i:04d}",
            start + timedelta(days=i),
            run_speed,
            templates,
            None,
            rng,
            {"engine_build": f"b{build}"},
        )
        ingest(store.ingest, run)
        shutil.rmtree(run)
        if i % 10 == 0:
            store.set_verdict(f"nightly-{i:04d}", "accepted")
        if (i + 1) % 100 == 0:
            print(f"  {i + 1} runs ingested", file=sys.stderr)
    rows = store.query("SELECT count(*) FROM trials").rows[0][0]
    return {
        "runs": runs,
        "trials": rows,
        "db_mb": round(db.stat().st_size / 1e6, 1),
        "steps_at": sorted(steps),
        "ingest_per_run": ingest.summary(),
    }


def bench_history(db: Path, work: Path, templates: Any, rng: Any) -> dict[str, Any]:
    store = open_store(db)
    key = list(devicelab.CELL_KEY)
    change_points([1.0, 1.0, 1.0, 1.0, 1.0])  # import Otava (and scipy) before timing
    whole, sql, cps = Clock(), Clock(), Clock()
    found = [whole(history, store, "otps", key) for _ in range(5)][-1].cells
    for _ in range(5):
        sql(history_sql, store)
    for cell in found:
        cps(change_points, [p.median for p in cell.points])
    named = sorted({p.run_id for c in found for p in c.points if p.change})
    env = {**os.environ, "DEVICELAB_DB": str(db)}
    cli = Clock()
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "devicelab", "history", "otps", "--json"],
            check=True,
            capture_output=True,
            env=env,
        )
        cli.wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli.cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    shutil.rmtree(work / "cand", ignore_errors=True)
    cand_dir = make_run(
        work / "cand", "candidate", datetime.now(timezone.utc), 1.0, templates, None, rng
    )
    candidate = devicelab.load_run(cand_dir)
    base = Clock()
    records, runs = base(baseline_records, store, candidate, 5)
    return {
        "cells": len(found),
        "points_per_cell": len(found[0].points) if found else 0,
        "history_in_process": whole.summary(),
        "of_which_sql": sql.summary(),
        "change_points_per_cell": cps.summary(),
        "runs_with_a_change_point": named[:10],
        "cli_new_process": cli.summary(),
        "baseline_last5": base.summary(),
        "baseline_records": len(records),
        "baseline_runs": runs,
    }


def history_sql(store: Any) -> Any:
    """The SQL of history() alone: median and IQR of otps per cell and run."""
    cell = ", ".join(f't."{k}"' for k in devicelab.CELL_KEY)
    return store.query(
        f"SELECT {cell}, r.run_id, any_value(r.created_at), count(*), "
        "quantile_cont(t.otps, [0.25, 0.5, 0.75]) FROM trials t JOIN runs r USING (run_id) "
        "WHERE t.status = 'ok' AND NOT t.warmup AND t.otps IS NOT NULL GROUP BY ALL"
    ).rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, required=True, help="A real run directory.")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--work", type=Path, help="Working folder (default: a temporary one).")
    ap.add_argument("--json", type=Path, help="Also write the numbers here.")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="Keep the --work folder's history database if it is there (skip making it).",
    )
    args = ap.parse_args()
    rng = random.Random(args.seed)
    templates, samples = _templates(args.source)
    work = args.work or Path(tempfile.mkdtemp(prefix="store-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"working in {work}", file=sys.stderr)
    results: dict[str, Any] = {"source": str(args.source)}
    results["main_job"] = bench_main_job(work, templates, samples, rng)
    print(json.dumps(results["main_job"], indent=2))
    db = work / "history.duckdb"
    if not (args.reuse and db.exists()):
        db.unlink(missing_ok=True)
        results["history_db"] = build_history_db(work, db, args.runs, templates, rng)
        print(json.dumps(results["history_db"], indent=2))
    results["history"] = bench_history(db, work, templates, rng)
    print(json.dumps(results["history"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
