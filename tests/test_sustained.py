"""Sustained load ([sustained]): the series, steady state, throttling and rank stability
computed from constructed trials, the scenario's bad combinations, and short runs of the words
engine on the host and on a device that throttles."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from wordsplugin import HotCollector, WordEngine, run_cli

from devicelab._errors import ScenarioError
from devicelab._executor import Reporter
from devicelab._plugins import Registry
from devicelab._record import Identity, Measures, Thermal, TrialRecord
from devicelab._report import build_report
from devicelab._rundir import SUMMARY, TRIALS, read_jsonl
from devicelab._runtime.pipeline import run_pipeline
from devicelab._scenario import load_scenario
from devicelab._sustained import (
    MAX_TRIALS,
    kendall_tau,
    rate_bins,
    segment,
    steady_start,
    with_sustained,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _at(s: float) -> str:
    return (T0 + timedelta(seconds=s)).isoformat(timespec="milliseconds")


def _record(
    rep: int,
    start: float,
    otps: float,
    itps: float = 100.0,
    model: str = "m",
    throttled: bool | None = None,
    took: float = 1.0,
) -> TrialRecord:
    ident = Identity(
        run_id="r", trial_id=f"d/{model}/q/QA/doc/qa0/L100/r{rep}", device="d", engine="e",
        model=model, quant="q", task="QA", doc_id="doc", item="qa0", context_tokens=100,
        sections=1, repetition=rep, warmup=False,
    )  # fmt: skip
    return TrialRecord(
        ident,
        status="ok",
        started_at=_at(start),
        finished_at=_at(start + took),
        measures=Measures(otps=otps, itps=itps),
        thermal=Thermal(throttled=throttled),
    )


def _noisy(level: float, n: int, rng: random.Random) -> list[float]:
    return [level * (1 + rng.gauss(0, 0.01)) for _ in range(n)]


# --- the pure computations -------------------------------------------------------------


def test_a_bin_is_the_median_rate_of_the_trials_that_started_in_it() -> None:
    points = [(0.0, 10.0), (5.0, 30.0), (9.9, 20.0), (10.0, None), (25.0, 7.0)]
    # Bin 1 (10-20 s) has a trial without a rate only: it is left out, not a zero.
    assert rate_bins(points, 10.0) == [(0, 20.0), (2, 7.0)]


def test_the_steady_state_starts_at_the_last_change_point_of_the_series() -> None:
    rng = random.Random(1)
    flat = _noisy(60, 12, rng)
    assert steady_start(flat) == 0
    throttling = _noisy(60, 4, rng) + _noisy(50, 4, rng) + _noisy(40, 8, rng)
    assert steady_start(throttling) == 8
    # One slow last bin is not yet a level: the steady state stays where it was.
    assert steady_start([*_noisy(60, 10, rng), 30.0]) == 0


def test_a_cells_segment_gives_burst_steady_and_the_first_throttled_sample() -> None:
    # A trial every 10 s for 10 minutes: 60 tok/s for 3 minutes, then 40 from minute 4 on;
    # the device reports throttling from 200 s on.
    rng = random.Random(2)
    records = [
        _record(i, 10.0 * i, (60.0 if i < 24 else 40.0) * (1 + rng.gauss(0, 0.01)), 100.0)
        for i in range(60)
    ]
    samples = [(T0.timestamp() + t, t >= 200) for t in range(0, 600, 5)]
    s = segment(records, 60.0, samples)
    assert s is not None
    assert [b["t_s"] for b in s["bins"]] == [60.0 * k for k in range(10)]
    assert all(b["n"] == 6 for b in s["bins"])
    otps = s["otps"]
    assert otps["steady_from_s"] == 240.0
    assert otps["burst"] == pytest.approx(60.0, rel=0.02)
    assert otps["steady"] == pytest.approx(40.0, rel=0.02)
    assert otps["burst_to_steady"] == pytest.approx(1.5, rel=0.03)
    # ITPS did not change: no change point, burst and steady agree.
    assert s["itps"]["steady_from_s"] == 0.0 and s["itps"]["burst_to_steady"] == 1.0
    assert s["first_throttled_s"] == 200.0 and s["throttle_known"] is True
    assert [b["throttled"] for b in s["bins"]] == [False] * 3 + [True] * 7


def test_without_telemetry_the_records_say_when_it_throttled() -> None:
    records = [_record(i, 10.0 * i, 50.0, throttled=i >= 3) for i in range(6)]
    s = segment(records, 20.0)
    assert s is not None and s["first_throttled_s"] == 30.0
    assert [b["throttled"] for b in s["bins"]] == [False, True, True]
    unknown = segment([_record(i, 10.0 * i, 50.0) for i in range(6)], 20.0)
    assert unknown is not None and unknown["first_throttled_s"] is None
    assert unknown["throttle_known"] is False


def test_a_last_bin_the_segment_barely_covers_is_left_out() -> None:
    # 60 s of trials, and one more that started at 60 s and ran over: bin 3 is 1/20 covered.
    records = [_record(i, 20.0 * i, 50.0, took=20.0) for i in range(4)]
    records[-1] = _record(3, 60.0, 10.0, took=1.0)
    s = segment(records, 20.0)
    assert s is not None and [b["t_s"] for b in s["bins"]] == [0.0, 20.0, 40.0]
    assert s["trials"] == 4 and s["span_s"] == 61.0


def test_a_failed_trial_takes_the_segments_time_but_gives_no_rate() -> None:
    records = [_record(i, 10.0 * i, 50.0) for i in range(4)]
    records[0] = records[0].failed("the trial ran past its timeout")
    s = segment(records, 20.0)
    assert s is not None and s["trials"] == 4 and s["failed"] == 1 and s["span_s"] == 31.0
    assert [(b["t_s"], b["n"], b["otps"]) for b in s["bins"]] == [(0.0, 2, 50.0), (20.0, 2, 50.0)]
    assert segment(records[:1], 20.0) is None  # nothing ok: no segment to describe


def test_kendalls_tau_between_the_first_and_steady_rankings() -> None:
    assert kendall_tau([3, 2, 1], [30, 20, 10]) == 1.0
    assert kendall_tau([3, 2, 1], [10, 20, 30]) == -1.0
    assert kendall_tau([3], [1]) is None
    assert kendall_tau([1, 1], [2, 3]) is None  # one ranking all ties


def test_rank_stability_across_cells_sees_a_fast_starter_fall_behind() -> None:
    # Model a is faster in the first minute and throttles to below b, which holds its pace.
    a = [_record(i, 10.0 * i, 80.0 if i < 12 else 30.0, model="a") for i in range(60)]
    b = [_record(i, 10.0 * i, 50.0, model="b") for i in range(60)]
    rows = [
        {"device": "d", "model": m, "quant": "q", "engine": "e", "variant": "", "task": "QA",
         "context_tokens": 100}
        for m in ("a", "b")
    ]  # fmt: skip
    out = with_sustained(rows, a + b, [], 60.0)
    tau = out[0]["sustained"]["rank_tau"]
    assert tau["otps"] == {"kendall_tau": -1.0, "cells": 2}
    assert tau["itps"]["kendall_tau"] is None  # every cell's ITPS ties
    assert out[1]["sustained"]["rank_tau"] == tau


# --- the scenario ------------------------------------------------------------------------


BASE = """\
[scenario]
name = "s"
timeout_s = 10
{scenario}
[[models]]
name = "words-a"

[tasks]
kinds = ["QA"]
documents = "corpus.jsonl"

[context]
sections = 1
lengths = [10]

[sustained]
{sustained}
"""


@pytest.mark.parametrize(
    ("scenario", "sustained", "message"),
    [
        ('repetitions = "auto"', "duration_s = 60", '[sustained] cannot be combined with [scenario] repetitions = "auto": a sustained segment runs each cell back to back for its duration_s or trials, not until its median is known. Remove repetitions (or [sustained]).'),
        ("", "duration_s = 5", "[sustained] duration_s: 5 s is shorter than one trial's timeout ([scenario] timeout_s = 10 s), so one trial could outlast the segment. Raise duration_s to at least 10, or lower timeout_s."),
        ("", "duration_s = 60\ntrials = 5", "[sustained] has both duration_s (60) and trials (5). A segment is a duration or a number of trials: remove one."),
        ("", "", "[sustained] needs duration_s (seconds each cell runs back to back) or trials (back-to-back trials per cell). Add one, or remove [sustained]."),
        ("", "duration_s = 0", "[sustained] duration_s: must be above 0, not 0."),
        ("", "trials = -2", "[sustained] trials: must be at least 1, not -2."),
        ("", "trials = 5\nbin_s = 0", "[sustained] bin_s: must be above 0, not 0."),
        ("", "duration_s = 60\nbin_s = 90", "[sustained] bin_s: 90 s is longer than duration_s (60 s), so the series would be one bin. Lower bin_s (a tenth of duration_s gives ten bins), or raise duration_s."),
        ("repetitions = 5", "duration_s = 60", "[scenario] repetitions = 5 is not used with [sustained]: each cell's measured trials are its segment. Remove repetitions, or give [sustained] trials = 5."),
        ('order = "interleaved"', "trials = 4", '[scenario] order = "interleaved" cannot be combined with [sustained], which runs each cell continuously. Remove order (or [sustained]).'),
    ],
)  # fmt: skip
def test_bad_sustained_segments_are_named_with_their_fix(
    tmp_path: Path, scenario: str, sustained: str, message: str
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(BASE.format(scenario=scenario, sustained=sustained))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: {message}"


@pytest.mark.usefixtures("words_installed")
def test_the_cli_rejects_a_bad_segment_with_exit_2_and_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(BASE.format(scenario='repetitions = "auto"', sustained="duration_s = 60"))
    assert run_cli(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert 'repetitions = "auto"' in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_scenario_without_sustained_keeps_its_resolved_tables(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(BASE.format(scenario="", sustained="").replace("[sustained]\n", ""))
    sc = load_scenario(path)
    assert not sc.sustained and "sustained" not in sc.resolved()
    assert sc.most_repetitions == 3


# --- runs ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def reset_hot() -> Iterator[None]:
    saved = (HotCollector.start_c, HotCollector.step_c, HotCollector.cap_from_generation)
    yield
    HotCollector.start_c, HotCollector.step_c, HotCollector.cap_from_generation = saved


class Totals(Reporter):
    """What a run says its total is, at the start and as it goes."""

    def __init__(self) -> None:
        self.totals: list[int] = []

    def start(self, total: int, skipped: int) -> None:
        self.totals.append(total)

    def expect(self, total: int) -> None:
        self.totals.append(total)


def _sustained_scenario(make: Callable[..., Path], sustained: str, extra: str = "") -> Path:
    path: Path = make(reps=3, warmup=1, timeout=0.5, kinds='["QA"]')
    text = path.read_text().replace(
        'name = "words-a"', 'name = "words-a"\noptions = { delay_s = 0.004 }'
    )
    text = text.replace("max_output_tokens = 8", "max_output_tokens = 8\nmax_documents = 1")
    path.write_text(text + extra + f"\n[sustained]\n{sustained}\n")
    return path


def test_a_timed_host_run_holds_each_cell_for_its_duration_and_burst_agrees_with_steady(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    path = _sustained_scenario(words_scenario, "duration_s = 2\nbin_s = 0.25")
    totals = Totals()
    result = run_pipeline(path, words_registry, out=tmp_path / "run", reporter=totals)
    records = list(read_jsonl(tmp_path / "run" / TRIALS))
    measured = [r for r in records if not r["warmup"]]
    rows = json.loads((tmp_path / "run" / SUMMARY).read_text())
    assert len(rows) == 2  # L = 10 and 20
    for row in rows:
        s = row["sustained"]
        assert s["span_s"] >= 2.0 and s["trials"] == row["n"] > 10
        # The segment stopped on time: without its last trial it was still short of 2 s.
        cell = sorted(
            (r for r in measured if r["context_tokens"] == row["context_tokens"]),
            key=lambda r: r["started_at"],
        )
        start = datetime.fromisoformat(cell[0]["started_at"])
        before_last = max(datetime.fromisoformat(r["finished_at"]) for r in cell[:-1])
        assert (before_last - start).total_seconds() < 2.0
        # A host without a thermal signal: nothing throttled, nothing known.
        assert s["first_throttled_s"] is None and s["throttle_known"] is False
        # A sleep-paced engine on the host: the first bin is the steady state, within noise.
        for rate in ("otps", "itps"):
            assert 0.75 < s[rate]["burst_to_steady"] < 1.33, (rate, s[rate])
        assert s["rank_tau"]["otps"]["cells"] == 2
    # Progress: the total is an estimate from the trials' times, never the cap of a segment.
    assert max(totals.totals) < MAX_TRIALS and totals.totals[-1] == len(records)
    assert result.rows == rows
    report = build_report(tmp_path / "run")
    [figure] = [f for f in report.figures if f.name == "sustained.png"]
    assert figure.png.startswith(b"\x89PNG") and figure.data is not None
    assert (report.html_path.parent / "sustained.png").is_file()
    page = report.html_path.read_text()
    assert "<h2>Sustained load</h2>" in page and "OTPS burst" in page


def test_back_to_back_trials_cool_down_only_before_a_segment_and_the_throttle_is_timed(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    HotCollector.start_c, HotCollector.step_c = 80.0, 0.0  # always hot: every wait times out
    WordEngine.generations = 0
    HotCollector.cap_from_generation = 6  # the frequency cap drops in the first cell
    thermal = (
        "\n[thermal]\ncooldown_below_c = 40\ncooldown_timeout_s = 0.05\ncooldown_poll_s = 0.01\n"
    )
    path = _sustained_scenario(words_scenario, "trials = 8\nbin_s = 0.05", thermal)
    path.write_text(path.read_text() + '\n[device]\nname = "flaky"\n')
    run_pipeline(path, words_registry, out=tmp_path / "run")
    records = list(read_jsonl(tmp_path / "run" / TRIALS))
    waited = [(r["warmup"], r["repetition"]) for r in records if r["cooldown_timed_out"]]
    # The warm-up and each cell's first trial waited; no trial inside a segment did.
    assert waited == [(True, 0), (False, 0), (False, 0)]
    rows = json.loads((tmp_path / "run" / SUMMARY).read_text())
    first, second = rows
    assert first["n"] == second["n"] == 8
    # The cap fell during the 6th generation (the warm-up was the 1st): the first throttled
    # sample is that trial's, timed from the segment's start.
    cell = sorted(
        (r for r in records if r["context_tokens"] == 10 and not r["warmup"]),
        key=lambda r: r["started_at"],
    )
    throttled = [r for r in cell if r["throttled"]]
    start = datetime.fromisoformat(cell[0]["started_at"])
    at = first["sustained"]["first_throttled_s"]
    assert throttled and cell.index(throttled[0]) == 4
    since = (datetime.fromisoformat(throttled[0]["started_at"]) - start).total_seconds()
    finished = (datetime.fromisoformat(throttled[0]["finished_at"]) - start).total_seconds()
    assert since - 0.01 <= at <= finished + 0.01
    # The second cell ran under the lowered cap from its first sample on.
    assert second["sustained"]["first_throttled_s"] == pytest.approx(0.0, abs=0.05)


def test_the_run_prints_the_sustained_table(
    words_scenario: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    words_installed: None,
) -> None:  # fmt: skip
    path = _sustained_scenario(words_scenario, "trials = 4")
    assert run_cli(["run", str(path), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "Sustained load (60 s bins)" in out
    # After the summary: one row per cell, each with its 4 back-to-back trials.
    table = out.split("Sustained load (60 s bins)")[1]
    assert [line.split("│")[5].strip() for line in table.splitlines() if "words-a" in line] == [
        "4",
        "4",
    ]
