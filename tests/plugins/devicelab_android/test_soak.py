"""bench/soak.py, short: a few trials on a virtual S24 (llama-cli, then the MLCChat app) with
faults sent through the real adb binary while the engines work, a Ctrl-C and --resume."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]


def bench() -> ModuleType:
    path = ROOT / "bench" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_short_soak_survives_its_faults_and_records_every_trial_once(tmp_path: Path) -> None:
    soak = bench()
    report = soak.soak(
        tmp_path / "soak", repetitions=1, every=(2.5, 4.0), seed=1, db=True, small=True,
        max_output_tokens=8,
    )  # fmt: skip
    assert report.problems == [], "\n".join(report.lines())
    # One cell per engine: a warm-up and one repetition each.
    assert report.planned == report.trials == 4 and report.doubled == 0
    assert report.interrupted_at >= 2 and report.resume_code in (0, 1)
    assert sum(report.landed.values()) >= 2, report.faults
    assert report.lost >= sum(report.landed.values())
    assert report.failed == report.failed_at_limit  # only a trial that ran out of retries


def test_the_checks_catch_a_doubled_trial_and_a_fault_inside_a_kept_attempt(
    tmp_path: Path,
) -> None:
    soak = bench()
    run = tmp_path / "run"
    run.mkdir()
    rec = {
        "trial_id": "p/m/q/QA/d/qa0/L100/r0", "status": "ok", "error": None,
        "started_at": "2026-01-01T00:00:05.000+00:00",
        "finished_at": "2026-01-01T00:00:09.000+00:00",
        "attempts": 1, "lost_attempts": [], "noisy_attempts": [],
        "other_cpu_pct": 3.0, "peak_mem_mb": 100.0,
    }  # fmt: skip
    (run / "trials.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps(rec) + "\n")
    (run / "scenario.toml").write_text("[scenario]\nretries = 3\n")
    inside = soak.Fault("kill_engine", soak._ts("2026-01-01T00:00:07+00:00"), "llama-cli", True)
    before = soak.Fault("force_stop", soak._ts("2026-01-01T00:00:04+00:00"), "app", True)
    report = soak.Report()
    soak.check(report, {rec["trial_id"]}, run, [inside, before], None)
    assert report.doubled == 1
    # The kill inside a kept attempt is a trial measured through a fault; the force-stop
    # before the trial began left no trace (the next attempt restarted the app).
    [through] = [p for p in report.problems if "kept attempt" in p]
    assert through.startswith("kill_engine") and report.absorbed == 1
