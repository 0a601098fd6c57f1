"""Interference: the arithmetic of other_cpu_pct from the collectors' CPU counters, and the
noisy trials counted and named in the summary, the table, compare and gates."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from devicelab_host import HostCollector

import devicelab
from devicelab import Attempts, Identity, Measures, TrialRecord
from devicelab import _gates as gates
from devicelab._compare import compare_runs
from devicelab._executor import Reporter
from devicelab._metrics import summarize
from devicelab._noise import MIN_WINDOW_S, between, other_cpu_pct, run_note
from devicelab._plugins import get_registry
from devicelab._rundir import RunData
from devicelab._runtime.pipeline import run_pipeline
from devicelab._table import summary_table
from devicelab.testing import make_scenario

GATES = Path(__file__).parent / "data" / "gates"
pytest_plugins = ["pytester"]


def sample(t: float, total: float, busy: float, engine: float | None) -> dict[str, object]:
    s: dict[str, object] = {"t": t, "cpu_total_s": total, "cpu_busy_s": busy}
    if engine is not None:
        s["engine_cpu_s"] = engine
    return s


def test_other_is_busy_time_the_engine_did_not_use_as_a_share_of_all() -> None:
    # 2 cores for 1 s: 2 CPU seconds. 1.9 busy, of which the engine used 1.5: 0.4 of 2 = 20 %.
    samples = [sample(0.0, 100.0, 50.0, 10.0), sample(1.0, 102.0, 51.9, 11.5)]
    assert other_cpu_pct(samples) == 20.0
    # Samples in between do not change the answer: only the window's ends count.
    middle = sample(0.5, 101.0, 50.9, 10.7)
    assert other_cpu_pct([samples[0], middle, samples[1]]) == 20.0


def test_a_quiet_device_is_zero_and_rounding_never_goes_below() -> None:
    # The engine's counter can run a tick ahead of the system's: that is 0, not negative.
    assert other_cpu_pct([sample(0.0, 100.0, 50.0, 10.0), sample(1.0, 102.0, 51.0, 11.02)]) == 0.0


def test_an_engine_that_starts_during_the_trial_counts_from_zero_and_its_last_reading_holds() -> (
    None
):
    # A phone's llama-cli: not readable at the first sample, read while it ran, gone at the end.
    samples = [
        sample(0.0, 1000.0, 100.0, None),
        sample(1.0, 1008.0, 106.0, 5.5),
        sample(2.0, 1016.0, 110.0, None),
    ]
    # busy 10 of 16 CPU seconds; the engine 5.5: other 4.5 / 16 = 28.1 %
    assert other_cpu_pct(samples) == 28.1


def test_a_new_engine_process_is_not_measured_against_the_previous_ones_counter() -> None:
    # The first sample still reads the previous trial's llama-cli (pid 10, 38 s in all); this
    # trial's (pid 11) starts at 0 and uses 6 s; 10 of 16 CPU seconds were busy.
    samples = [
        {**sample(0.0, 1000.0, 100.0, 38.0), "engine_id": "10"},
        sample(0.5, 1004.0, 102.0, None),
        {**sample(1.0, 1008.0, 106.0, 4.0), "engine_id": "11"},
        {**sample(2.0, 1016.0, 110.0, 6.0), "engine_id": "11"},
    ]
    assert other_cpu_pct(samples) == 25.0  # (10 - 6) / 16


def test_unknown_when_the_device_cannot_tell_or_the_window_is_too_short() -> None:
    assert other_cpu_pct([]) is None
    assert other_cpu_pct([{"t": 0.0, "mem_mb": 5.0}, {"t": 1.0, "mem_mb": 5.0}]) is None
    # The engine's process never read: nothing tells its share from the others'.
    assert other_cpu_pct([sample(0.0, 100.0, 50.0, None), sample(1.0, 102.0, 52.0, None)]) is None
    short = MIN_WINDOW_S / 2
    assert other_cpu_pct([sample(0.0, 100.0, 50.0, 1.0), sample(short, 101.0, 51.0, 1.5)]) is None


def test_a_probe_outside_trials_counts_an_engine_not_running_as_idle() -> None:
    a = {"cpu_total_s": 100.0, "cpu_busy_s": 10.0}
    b = {"cpu_total_s": 110.0, "cpu_busy_s": 13.0}
    assert between(a, b) == 30.0
    assert between({**a, "engine_cpu_s": 1.0}, {**b, "engine_cpu_s": 3.0}) == 10.0
    # Readable at one end only (started or exited in between): not charged to the window.
    assert between(a, {**b, "engine_cpu_s": 3.0}) == 30.0
    assert between({}, b) is None


def record(task: str, rep: int, other: float | None, noisy: bool | None) -> TrialRecord:
    who = Identity("r", f"t{task}{rep}", "host", "e", "m", "q", task, "d", "i", 100, 1, rep, False)
    return TrialRecord(
        who,
        measures=Measures(itps=100.0 + rep, other_cpu_pct=other),
        tries=Attempts(noisy=noisy),
    )


def test_noisy_trials_are_counted_per_cell_and_marked_in_the_table() -> None:
    records = [
        record("SUMM", 0, 2.0, False),
        record("SUMM", 1, 35.0, True),
        record("QA", 0, 1.0, False),
        record("QA", 1, None, None),
    ]
    rows = {r["task"]: r for r in summarize(records)}
    assert rows["SUMM"]["noisy"] == 1 and rows["QA"]["noisy"] == 0
    assert rows["SUMM"]["other_cpu_pct"] == 35.0  # the worst trial of the cell
    table = summary_table([rows["QA"], rows["SUMM"]])
    titles = [c.title for c in table.columns]
    at = titles.index("noisy")
    assert [row[at] for row in table.rows] == ["0/2", "1/2"]
    assert table.marked == (False, True)
    # A noisy trial also makes its cell unstable, and says so.
    assert table.rows[1][titles.index("unstable")] == "1 noisy trial"
    note = run_note(records)
    assert note is not None and note.startswith("1 of 4 measured trials were noisy")
    assert "up to 35%" in note
    # No noisy trial: no column, no mark, no line.
    quiet = summarize(records[:1])
    assert "noisy" not in [c.title for c in summary_table(quiet).columns]
    assert run_note(records[:1]) is None


def test_a_record_keeps_its_noisy_attempts_through_json() -> None:
    rec = record("SUMM", 0, 4.0, False).but(
        tries=Attempts(2, (), False, ({"attempt": 1, "other_cpu_pct": 48.0, "itps": 12.5},))
    )
    data = json.loads(json.dumps(rec.to_json()))
    assert data["other_cpu_pct"] == 4.0 and data["noisy"] is False
    assert data["noisy_attempts"] == [{"attempt": 1, "other_cpu_pct": 48.0, "itps": 12.5}]
    assert TrialRecord.from_json(data) == rec
    # A record written before interference was measured reads as unknown.
    old = {k: v for k, v in data.items() if k not in ("other_cpu_pct", "noisy", "noisy_attempts")}
    back = TrialRecord.from_json(old)
    assert back.measures.other_cpu_pct is None and back.tries.noisy is None
    assert back.tries.noisy_attempts == ()


def _noisy_copy(tmp_path: Path, name: str, source: str, every: int) -> Path:
    """A copy of a gates fixture run with every ``every``-th trial marked noisy."""
    lines = (GATES / source / "trials.jsonl").read_text(encoding="utf-8").splitlines()
    out = tmp_path / name
    out.mkdir()
    recs = []
    for i, line in enumerate(lines):
        rec = json.loads(line)
        rec["noisy"] = i % every == 0
        rec["other_cpu_pct"] = 40.0 if i % every == 0 else 1.0
        recs.append(rec)
    (out / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return out


def test_gates_and_compare_say_when_their_data_were_noisy(tmp_path: Path) -> None:
    base = devicelab.load_run(GATES / "baseline")
    noisy = devicelab.load_run(_noisy_copy(tmp_path, "noisy", "slower10", every=3))
    check = gates.parse_check("otps:median:5%")
    results = gates.compare(base, noisy, [check], gates.DEFAULT_ALPHA).results
    assert results and all(r.noisy_candidate > 0 and r.noisy_baseline == 0 for r in results)
    for r in results:
        assert "over noisy data" in r.reason
        assert f"{r.noisy_candidate} of " in r.reason
    # The same gate over quiet data says nothing of noise.
    quiet = gates.compare(base, base, [check], gates.DEFAULT_ALPHA).results
    assert all("noisy" not in r.reason for r in quiet)

    rows = [r for r in compare_runs(base, noisy) if r.metric == "otps"]
    assert rows and all(r.noisy_a == 0 and r.noisy_b > 0 for r in rows)
    assert sum(r.noisy_b for r in rows) == sum(1 for r in noisy.measured if r.tries.noisy)


def test_the_cli_marks_noisy_gates_and_compare_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devicelab.testing import run_cli

    noisy = _noisy_copy(tmp_path, "noisy", "unchanged", every=2)
    base = GATES / "baseline"
    run_cli(["gate", str(base), str(noisy), "--fail", "otps:median:5%"])
    shown = capsys.readouterr().out
    # A passing check over noisy data is printed with why it may not be trusted.
    assert "over noisy data" in shown
    assert run_cli(["compare", str(base), str(noisy)]) == 0
    shown = capsys.readouterr().out
    assert "noisy)" in shown and "noisy: trials during which" in shown


def test_a_pytest_gate_passing_over_noisy_data_warns(
    tmp_path: Path, pytester: pytest.Pytester
) -> None:
    noisy = _noisy_copy(tmp_path, "noisy", "unchanged", every=2)
    result = pytester.runpytest(
        *("--devicelab-baseline", str(GATES / "baseline"), "--devicelab-candidate", str(noisy)),
        *("--devicelab-fail", "otps:median:5%"),
    )
    result.assert_outcomes(passed=2, warnings=2)
    result.stdout.fnmatch_lines(["*DevicelabGateWarning*over noisy data*"])


# --- real runs on the host, beside a CPU hog ------------------------------------------------

HOG = "import ctypes\nctypes.CDLL(None).prctl(15, b'dl-cpu-hog', 0, 0, 0)\nwhile True:\n    pass\n"
# The engine runs one thread and the hogs keep every other core busy: ~50 % of a 2-core host,
# more of a bigger one; a quiet machine's background is a few %.
LIMIT = 25.0


@contextmanager
def cpu_hogs(tmp_path: Path) -> Iterator[list[int]]:
    """A busy process, named dl-cpu-hog, for each core but the engine's one. Started through
    a shell that exits at once, so they are not this process's children: the engine's
    process tree (this process and its children) must not include them."""
    script = tmp_path / "hog.py"
    script.write_text(HOG, encoding="utf-8")
    pids = []
    try:
        for _ in range(max(1, (os.cpu_count() or 1) - 1)):
            out = subprocess.run(
                ["sh", "-c", '"$0" "$1" >/dev/null 2>&1 & echo $!', sys.executable, str(script)],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            pids.append(int(out.stdout))
        time.sleep(0.3)  # let them start burning
        yield pids
    finally:
        stop_hogs(pids)


def stop_hogs(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Said(Reporter):
    """The status lines of a run; ``on_status`` sees each as it comes."""

    def __init__(self, on_status: Callable[[str], None] | None = None) -> None:
        self.lines: list[str] = []
        self.on_status = on_status

    def status(self, text: str) -> None:
        self.lines.append(text)
        if self.on_status is not None:
            self.on_status(text)


def noise_run(tmp_path: Path, noise: str, reporter: Reporter, repetitions: int = 1) -> RunData:
    """A short real run (SmolLM2 on the host, one SUMM trial per repetition, long enough for
    the CPU counters) with the given ``[noise]`` table. One engine thread: llama.cpp's
    threads wait for each other at every barrier, so on a shared machine several of them
    beside the hogs could stall past the timeout; one thread goes at its share of a core."""
    path = make_scenario(
        tmp_path,
        kinds=["SUMM"],
        max_output_tokens=48,
        model_options={"threads": 1},
        repetitions=repetitions,
        extra=f"[noise]\n{noise}",
    )
    return run_pipeline(path, get_registry(), out=tmp_path / "run", reporter=reporter).data


def require_quiet_machine() -> None:
    """Skip unless the machine is quiet: what is measured here is other processes' CPU use,
    and on a shared, busy machine "alone" cannot be had."""
    c = HostCollector()
    before = c.sample()
    time.sleep(1.0)
    background = between(before, c.sample())
    if background is None or background > LIMIT / 2:
        pytest.skip(f"the machine is busy (other processes use {background}% of its CPU)")


@pytest.mark.e2e
def test_a_cpu_hog_beside_a_run_marks_its_trials_and_is_named_before_them(
    tmp_path: Path,
) -> None:
    said = Said()
    with cpu_hogs(tmp_path):
        run = noise_run(tmp_path, f'max_other_cpu_pct = {LIMIT}\non_noisy = "flag"', said)
    [rec] = run.measured
    assert rec.measures.other_cpu_pct is not None and rec.measures.other_cpu_pct > LIMIT
    assert rec.tries.noisy is True and rec.tries.attempts == 1
    [busy] = [line for line in said.lines if "is busy before the first trial" in line]
    # The top five by name: the hog among them unless the machine is busier still (the
    # host's own list is tested in tests/plugins/test_host.py).
    assert re.search(r"top: [^ ]+ \d+%", busy), busy
    assert summarize(run.records)[0]["noisy"] == 1


@pytest.mark.e2e
def test_a_noisy_trial_fails_with_on_noisy_fail(tmp_path: Path) -> None:
    with cpu_hogs(tmp_path):
        run = noise_run(tmp_path, f'max_other_cpu_pct = {LIMIT}\non_noisy = "fail"', Said())
    [rec] = run.records
    assert rec.status == "failed" and rec.tries.noisy is True
    assert rec.error is not None and rec.error.startswith("noisy: other processes used")


@pytest.mark.e2e
def test_retry_gives_up_waiting_on_a_device_that_stays_busy(tmp_path: Path) -> None:
    said = Said()
    noise = f"max_other_cpu_pct = {LIMIT}\nretries = 2\nquiet_timeout_s = 1"
    with cpu_hogs(tmp_path):
        run = noise_run(tmp_path, noise, said, repetitions=2)
    assert [r.tries.noisy for r in run.measured] == [True, True]
    # Not run again: the device never got quiet, so a rerun would be as noisy.
    assert [r.tries.attempts for r in run.measured] == [1, 1]
    assert all(r.tries.noisy_attempts == () for r in run.measured)
    # One wait, then the second noisy trial is flagged without waiting.
    assert sum("waiting up to 1 s" in line for line in said.lines) == 1
    assert sum("stayed busy" in line for line in said.lines) == 1


@pytest.mark.e2e
def test_retry_runs_a_noisy_trial_again_once_quiet_and_keeps_its_figures(
    tmp_path: Path,
) -> None:
    require_quiet_machine()
    hogs: list[int] = []

    def quieten(line: str) -> None:
        if "waiting up to" in line:
            stop_hogs(hogs)

    noise = f"max_other_cpu_pct = {LIMIT}\nretries = 1\nquiet_timeout_s = 30"
    with cpu_hogs(tmp_path) as pids:
        hogs.extend(pids)
        run = noise_run(tmp_path, noise, Said(quieten))
    [rec] = run.measured
    assert rec.tries.attempts == 2 and rec.tries.noisy is False
    [first] = rec.tries.noisy_attempts
    assert first["attempt"] == 1 and first["other_cpu_pct"] > LIMIT
    assert first["itps"] > 0 and first["otps"] > 0


@pytest.mark.e2e
def test_the_same_run_alone_is_not_marked(tmp_path: Path) -> None:
    require_quiet_machine()
    said = Said()
    run = noise_run(tmp_path, f'max_other_cpu_pct = {LIMIT}\non_noisy = "flag"', said)
    [rec] = run.measured
    # pytest runs the engine in its own process: its CPU is the engine's, not other.
    assert rec.measures.other_cpu_pct is not None and rec.measures.other_cpu_pct <= LIMIT
    assert rec.tries.noisy is False
    assert not any("is busy" in line for line in said.lines)
