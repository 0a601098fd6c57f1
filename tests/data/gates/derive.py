"""Derive the committed gate fixtures from one real run directory (see README.md here).

python tests/data/gates/derive.py REAL_RUN_DIR
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SPEEDS = ("itps", "otps")  # higher is better: scaled by the factor
TIMES = ("ttft_s", "runtime_s")  # lower is better: divided by it
# Deterministic spread around each cell's real median, per repetition.
JITTER = (-0.02, 0.01, -0.01, 0.02, 0.0, 0.005)
JITTER_AGAIN = (0.005, -0.01, 0.02, 0.0, -0.02, 0.01)  # same spread, other order


def derive(
    real: list[dict[str, Any]], name: str, jitter: tuple[float, ...], factor: float, reps: int
) -> list[dict[str, Any]]:
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rec in real:
        if not rec["warmup"]:
            cells.setdefault((rec["task"], rec["context_tokens"]), []).append(rec)
    medians = {
        cell: {m: statistics.median(r[m] for r in recs) for m in SPEEDS + TIMES}
        for cell, recs in cells.items()
    }
    out = []
    for rec in real:
        if not rec["warmup"] and rec["repetition"] >= reps:
            continue
        new = dict(rec, run_id=name, output_text=None)
        if not rec["warmup"]:
            new["engine_timings"] = None  # the real counters would not match the derived speeds
        if not rec["warmup"]:
            med = medians[(rec["task"], rec["context_tokens"])]
            j = 1 + jitter[rec["repetition"]]
            for m in SPEEDS:
                new[m] = round(med[m] * j * factor, 4)
            for m in TIMES:
                new[m] = round(med[m] / j / factor, 4)
        out.append(new)
    return out


def main(real_dir: Path) -> None:
    lines = (real_dir / "trials.jsonl").read_text(encoding="utf-8").splitlines()
    real = [json.loads(line) for line in lines if line.strip()]
    meta = json.loads((real_dir / "run.json").read_text(encoding="utf-8"))
    variants = {
        "baseline": (JITTER, 1.0, 6),
        "unchanged": (JITTER_AGAIN, 1.0, 6),
        "slower10": (JITTER, 0.9, 6),
        "reps3": (JITTER_AGAIN, 1.0, 3),
    }
    for name, (jitter, factor, reps) in variants.items():
        d = HERE / name
        d.mkdir(exist_ok=True)
        recs = derive(real, f"gates-{name}", jitter, factor, reps)
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs)
        (d / "trials.jsonl").write_text(body, encoding="utf-8")
        run_meta = dict(meta, run_id=f"gates-{name}", scenario_source="gates.toml")
        (d / "run.json").write_text(json.dumps(run_meta, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
