"""End to end: `devicelab run` with the real model on the host, a tiny scenario."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devicelab._cli import main
from devicelab._rundir import TELEMETRY, TRIALS, read_jsonl
from devicelab.testing import make_scenario


def tiny(tmp_path: Path, **keys: Any) -> Path:
    """SUMM and QA at two lengths of two sections, one warm-up, SmolLM2 Q4_1 on the host."""
    return make_scenario(
        tmp_path, **{"name": "tiny", "kinds": ["SUMM", "QA"], "warmup": 1, **keys},
        sections=2, lengths=[20, 40], max_output_tokens=4,
        model_keys={"engine": "llama.cpp", "quant": "q4_1"}, model_options={"n_ctx": 1024},
        tables={"telemetry": {"interval_s": 0.05}},
    )  # fmt: skip


@pytest.mark.e2e
def test_real_run_writes_the_contract(tmp_path: Path) -> None:
    out = tmp_path / "run"
    try:
        main(["run", str(tiny(tmp_path)), "--out", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None)
    records = list(read_jsonl(out / TRIALS))
    assert len(records) == 2 * 2 + 1  # 2 tasks x 2 lengths x 1 repetition, 1 warm-up
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    measured = [r for r in records if not r["warmup"]]
    for r in measured:
        assert r["output_tokens"] >= 1 and r["ttft_s"] > 0 and r["itps"] > 0
        assert r["engine_timings"]["prefill_tokens"] == r["input_tokens"]
        assert r["peak_mem_mb"] > 50  # the model lives in this process
        assert r["device_info"]["kind"] == "host"
    by_len = {(r["task"], r["context_tokens"]): r["input_tokens"] for r in measured}
    # The context is cut from the model's own tokens: 20 more tokens at L = 40 (a re-tokenised
    # boundary may merge or split one token).
    assert abs(by_len[("SUMM", 40)] - by_len[("SUMM", 20)] - 20) <= 2
    phases = {s["phase"] for s in read_jsonl(out / TELEMETRY)}
    assert {"load", "prefill"} <= phases


@pytest.mark.e2e
def test_ctrl_c_keeps_finished_trials_and_resume_completes(tmp_path: Path) -> None:
    scenario = tiny(tmp_path, repetitions=3, kinds=["SUMM"])
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "devicelab", "run", str(scenario), "--out", str(out)]
    # A shell's background job starts with SIGINT ignored, and Python keeps it ignored;
    # the run must see Ctrl-C as a terminal would deliver it.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while len(list(read_jsonl(out / TRIALS))) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    kept = list(read_jsonl(out / TRIALS))
    assert 2 <= len(kept) < 7
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = list(read_jsonl(out / TRIALS))
    assert records[: len(kept)] == kept
    assert len(records) == 7 and len({r["trial_id"] for r in records}) == 7
