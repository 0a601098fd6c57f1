"""Validate the performance model (docs/prediction.md) on this host: issue 24, item 4.

    devicelab calibrate host            # fit on the shipped SmolLM2 alone
    nice -n 10 python bench/prediction.py [--quick] [--out DIR]

Each model the calibration never saw (Gemma 3 270M and SmolLM2 in every type the gguf
quantiser makes: Q4_0, Q4_1, Q8_0, F16, Q4_K_M, less the probe's own SmolLM2 Q4_1) runs as its
own ``devicelab run`` subprocess, so its peak memory is its own process's and not the
leftovers of the models before it, at L = 200 .. 1000. The run writes each cell's prediction
and error into summary.json; this script gathers them and prints the median absolute error per
field over all cells, with the 1-minute load average before and after each model (errors
measured on a loaded machine are said to be so). The quantised files are made on first use
(about two minutes in all) and cached.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

FIELDS = ("otps", "itps", "ttft_s", "runtime_s", "peak_mem_mb")
GOALS = {"otps": 10.0, "itps": 10.0, "peak_mem_mb": 15.0}
MODELS = [("gemma-3-270m", q) for q in ("q4_k_m", "q4_0", "q4_1", "q8_0", "f16")] + [
    ("smollm2-135m-instruct", q) for q in ("q4_0", "q8_0", "f16", "q4_k_m")
]


def scenario(model: str, quant: str, lengths: list[int], reps: int) -> dict[str, object]:
    return {
        "scenario": {
            "name": f"prediction-{model}-{quant}",
            "repetitions": reps,
            "warmup": 1,
            "timeout_s": 600.0,
        },
        "device": {"name": "host"},
        "models": [{"name": model, "engine": "llama.cpp", "quant": quant}],
        "tasks": {
            "kinds": ["SUMM"],
            "documents": "docassist-mini",
            "max_documents": 1,
            "max_output_tokens": 32,
        },
        "context": {"sections": 5, "lengths": lengths},
        # Flagged, not retried: on a shared machine a retry loop only makes the bench longer;
        # the load average beside the numbers says how busy it was.
        "noise": {"on_noisy": "flag"},
        "prediction": {"band_pct": 25.0},
    }


HIGHER = {"itps", "otps"}


def least_disturbed(trials: list[dict[str, object]]) -> dict[str, float | None]:
    """Per field, the median over the cell's quiet trials, or where all were noisy its best
    (the calibration's own rule: another job only ever slows a trial down)."""
    ok = [t for t in trials if t.get("status") == "ok" and not t.get("warmup")]
    quiet = [t for t in ok if not t.get("noisy")]
    out: dict[str, float | None] = {}
    for f in FIELDS:
        if f == "peak_mem_mb":
            values = [float(t[f]) for t in ok if isinstance(t.get(f), int | float)]
            out[f] = max(values) if values else None
            continue
        values = [float(t[f]) for t in quiet if isinstance(t.get(f), int | float)]
        if values:
            out[f] = statistics.median(values)
            continue
        values = [float(t[f]) for t in ok if isinstance(t.get(f), int | float)]
        out[f] = (max(values) if f in HIGHER else min(values)) if values else None
    return out


def run_one(model: str, quant: str, work: Path, lengths: list[int], reps: int) -> dict[str, object]:
    path = work / f"{model}-{quant}.toml"
    path.write_text(tomli_w.dumps(scenario(model, quant, lengths, reps)), encoding="utf-8")
    out = work / f"{model}-{quant}-run"
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "devicelab", "run", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - started
    if done.returncode not in (0, 1):
        sys.exit(f"devicelab run {path} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rows = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    trials = [
        json.loads(line)
        for line in (out / "trials.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    for r in rows:
        r["least_disturbed"] = least_disturbed(
            [t for t in trials if t["context_tokens"] == r["context_tokens"]]
        )
    if not any(r.get("predicted") for r in rows):
        sys.exit("the run predicted nothing: calibrate the host first (devicelab calibrate host).")
    return {
        "model": model,
        "quant": quant,
        "seconds": round(took, 1),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "rows": rows,
    }


def pct(measured: float | None, predicted: float | None) -> float | None:
    if measured is None or not predicted:
        return None
    return round((measured - predicted) / predicted * 100, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="L = 200, 600, 1000 (not 200 .. 1000)")
    ap.add_argument("--out", type=Path, help="Also write the cells and medians here as JSON.")
    ap.add_argument("--keep", type=Path, help="Keep the run directories under this directory.")
    args = ap.parse_args()
    lengths = [200, 600, 1000] if args.quick else [200, 400, 600, 800, 1000]
    reps = 2
    with tempfile.TemporaryDirectory(prefix="devicelab-prediction-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = []
        for model, quant in MODELS:
            print(f"{model} {quant} ...", file=sys.stderr, flush=True)
            results.append(run_one(model, quant, work, lengths, reps))
    cells = []
    for res in results:
        for r in res["rows"]:  # type: ignore[attr-defined]
            predicted = r.get("predicted") or {}
            best = r["least_disturbed"]
            cells.append(
                {
                    "model": res["model"],
                    "quant": res["quant"],
                    "L": r["context_tokens"],
                    "load": res["load_before"],
                    "median": r.get("prediction_error_pct") or {},
                    "quiet": {f: pct(best.get(f), predicted.get(f)) for f in FIELDS},
                    "measured": {f: r.get(f) for f in FIELDS},
                    "least_disturbed": best,
                    "predicted": predicted,
                    "noisy": r.get("noisy"),
                    "n": r.get("n"),
                }
            )
    for basis, title in (
        ("median", "error of the cell's median (what the run reports)"),
        ("quiet", "error of the quiet trials' median, or the best trial where all were noisy"),
    ):
        print(f"\n{title}, in %:")
        print(
            f"{'model':<22} {'quant':<7} {'L':>5} "
            + " ".join(f"{f:>12}" for f in FIELDS)
            + f" {'noisy':>6} {'load':>5}"
        )
        for c in cells:
            errs = c[basis]
            print(
                f"{c['model']:<22} {c['quant']:<7} {c['L']:>5} "
                + " ".join(
                    f"{'-' if errs.get(f) is None else format(errs[f], '+.1f'):>12}" for f in FIELDS
                )
                + f" {c['noisy']}/{c['n']:<4} {c['load']:>5.2f}"
            )
    medians: dict[str, dict[str, float | None]] = {}
    for basis in ("median", "quiet"):
        medians[basis] = {}
        for f in FIELDS:
            values = [abs(c[basis][f]) for c in cells if c[basis].get(f) is not None]
            medians[basis][f] = round(statistics.median(values), 1) if values else None
    loads = [res["load_before"] for res in results] + [res["load_after"] for res in results]
    print()
    for basis in ("median", "quiet"):
        print(f"median absolute error over {len(cells)} cells ({basis}):")
        for f in FIELDS:
            goal = GOALS.get(f)
            got = medians[basis][f]
            verdict = (
                ""
                if goal is None or got is None
                else f" (goal <= {goal:g}%: {'met' if got <= goal else 'missed'})"
            )
            print(f"  {f:<12} {got}%{verdict}")
    print(
        f"1-minute load average during the bench: {min(loads):.2f} .. {max(loads):.2f} "
        f"(median {statistics.median(loads):.2f}) on {os.cpu_count()} logical CPUs"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "cells": cells,
                    "median_abs_error_pct": medians,
                    "runs": [{k: v for k, v in r.items() if k != "rows"} for r in results],
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
