"""Per-token timings: the measures from a stream's token times, the per-run tokens.jsonl
written as each trial ends and read back, and the gate on a per-token field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from wordsplugin import run_cli

import devicelab
from devicelab import Identity, Measures, TokenStream, TrialRecord
from devicelab import _tokens as tokens
from devicelab._metrics import speed
from devicelab._report import build_report
from devicelab._rundir import RunDir, load_run
from devicelab._scenario import load_scenario


def _stream(gaps_ms: list[float], first_ms: float = 100.0) -> list[float]:
    out, t = [first_ms], first_ms
    for g in gaps_ms:
        t += g
        out.append(round(t, 2))
    return out


def test_percentiles_of_a_known_stream() -> None:
    # 100 gaps: 98 of 10 ms, one 50 ms stall and one 200 ms stall.
    gaps = [10.0] * 98 + [50.0, 200.0]
    m = tokens.measures(_stream(gaps))
    assert m["tokens_batched"] is False
    assert m["itl_p50_ms"] == pytest.approx(10.0)
    assert m["itl_p90_ms"] == pytest.approx(10.0)
    # The 99th percentile of 100 gaps lies 1% of the way from the 99th to the 100th value.
    assert m["itl_p99_ms"] == pytest.approx(50.0 + (200.0 - 50.0) * 0.01)
    assert m["itl_max_ms"] == pytest.approx(200.0)
    assert m["tpot_ms"] == pytest.approx(sum(gaps) / 100)


def test_a_decode_that_slows_shows_in_the_quarter_rates() -> None:
    # 80 gaps: 10 ms in the first half, 20 ms in the second.
    m = tokens.measures(_stream([10.0] * 40 + [20.0] * 40))
    assert m["decode_tps_first_q"] == pytest.approx(100.0)
    assert m["decode_tps_last_q"] == pytest.approx(50.0)


def test_batched_tokens_leave_the_percentiles_null() -> None:
    # Three tokens per arrival after the first (a server streaming chunks): the gaps inside
    # a chunk were never seen.
    times = [100.0] + [t for k in range(1, 11) for t in [100.0 + 30 * k] * 3]
    m = tokens.measures(times)
    assert m["tokens_batched"] is True
    assert [m[f"itl_p{q}_ms"] for q in (50, 90, 99)] == [None, None, None]
    assert m["itl_max_ms"] is None
    # TPOT and the rates count tokens over time: those are known.
    assert m["tpot_ms"] == pytest.approx(300.0 / 30)
    assert m["decode_tps_first_q"] is not None
    # An engine that sees tokens only in batches says so, even when a poll saw one token.
    declared = tokens.measures(_stream([10.0] * 8), declared_batched=True)
    assert declared["tokens_batched"] is True and declared["itl_p50_ms"] is None


def test_a_first_chunk_of_two_still_resolves_the_gaps_after_it() -> None:
    times = [100.0, 100.0, 110.0, 120.0, 130.0]  # MLC: "<" held back, sent with the next
    m = tokens.measures(times)
    assert m["tokens_batched"] is True
    assert m["itl_p50_ms"] == pytest.approx(10.0) and m["itl_max_ms"] == pytest.approx(10.0)


def test_otps_counts_the_tokens_after_the_first_arrival() -> None:
    # Two tokens in the first chunk, then one every 0.1 s: 3 tokens over 0.3 s.
    s = speed(0.0, [1.0, 1.0, 1.1, 1.2, 1.3], input_tokens=10, output_tokens=5)
    assert s.otps == pytest.approx(10.0)
    # One token per arrival: (n - 1) / span, as before.
    assert speed(0.0, [1.0, 1.1, 1.2], 10, 3).otps == pytest.approx(10.0)


def test_recount_times_each_chunks_tokens_at_its_arrival() -> None:
    stream = TokenStream()
    stream.sent(0.0)
    for t in (1.0, 1.5, 2.0):
        stream.token(1, t=t)
    assert devicelab.recounted(stream.token_times, [2, 1, 3]) == [1.0, 1.0, 1.5, 2.0, 2.0, 2.0]
    with pytest.raises(ValueError):
        devicelab.recounted(stream.token_times, [1])


def _record(trial_id: str, **measures: object) -> TrialRecord:
    who = Identity("r", trial_id, "host", "words", "m", "q", "SUMM", "d", "i", 10, 1, 0, False)
    return TrialRecord(who, measures=Measures(**measures))  # type: ignore[arg-type]


def test_the_token_file_is_written_per_trial_and_read_back(
    words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run = RunDir.open(out, load_scenario(words_scenario()), resume=False)
    run.append_trial(_record("a", tokens_batched=False), token_ms=[12.5, 20.01, 30.0])
    # Written as the trial finishes, before the record: readable while the run goes on.
    assert load_run(out).token_times(load_run(out).records[0]) == [12.5, 20.01, 30.0]
    run.append_trial(_record("b"))  # a trial that saw no token leaves no line
    run.append_trial(_record("a", tokens_batched=True), token_ms=[5.0, 5.0])  # resumed
    run.close()
    data = load_run(out)
    assert set(data.tokens) == {"a"}
    assert data.tokens["a"] == {"trial_id": "a", "batched": True, "ms": [5.0, 5.0]}
    assert data.token_times(data.records[1]) == []


def test_a_run_keeps_every_trials_token_times(
    words_installed: None, words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert run_cli(["run", str(words_scenario()), "--out", str(out)]) == 0
    run = load_run(out)
    assert run.records and set(run.tokens) == {r.trial_id for r in run.records}
    for rec in run.records:
        ms = run.token_times(rec)
        assert len(ms) == rec.measures.output_tokens
        assert ms == sorted(ms) and ms[0] == pytest.approx(rec.measures.ttft_s * 1000, abs=0.02)
        assert rec.measures.tokens_batched is False
        assert rec.measures.itl_p50_ms is not None and rec.measures.tpot_ms is not None
    # Offsets are kept to 0.01 ms, so a line stays short.
    line = (out / tokens.TOKENS).read_text(encoding="utf-8").splitlines()[0]
    assert all(round(t, 2) == t for t in json.loads(line)["ms"])


def test_an_old_run_reads_without_token_times(tmp_path: Path) -> None:
    out = tmp_path / "old"
    out.mkdir()
    (out / "trials.jsonl").write_text(json.dumps({"trial_id": "x", "status": "ok"}) + "\n")
    run = load_run(out)
    assert run.tokens == {} and run.records[0].value("itl_p99_ms") is None
    assert run.records[0].measures.tokens_batched is None


def test_the_main_jobs_token_file_stays_small() -> None:
    # The main job (scenarios/long_context.toml): 46 trials of up to 128 tokens, offsets up
    # to its 120 s timeout.
    text = "".join(
        tokens.line(f"long_context/t{i:03d}", [119_999.99 - k for k in range(128)], False)
        for i in range(46)
    )
    assert len(text.encode()) < 1_000_000


def test_gate_on_itl_p99(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(name: str, p99: float) -> Path:
        out = tmp_path / name
        out.mkdir()
        recs = [
            {
                "trial_id": f"t{i}",
                "status": "ok",
                "model": "m",
                "task": "SUMM",
                "context_tokens": 100,
                "itl_p99_ms": p99 + 0.1 * i,
            }
            for i in range(6)
        ]
        (out / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        return out

    base, slow = run("base", 20.0), run("slow", 30.0)
    assert run_cli(["gate", str(base), str(slow), "--fail", "itl_p99_ms:median:10%"]) == 1
    assert run_cli(["gate", str(base), str(base), "--fail", "itl_p99_ms:median:10%"]) == 0
    capsys.readouterr()
    # A field no trial of either run measured: one paragraph, exit 2.
    assert run_cli(["gate", str(base), str(slow), "--fail", "itl_p50_ms:median:10%"]) == 2
    err = capsys.readouterr().err
    assert "itl_p50_ms" in err and "Traceback" not in err
    itl_p99 = next(f for f in devicelab.FIELDS if f.name == "itl_p99_ms")
    assert itl_p99.higher_is_better is False


def test_the_report_draws_the_itl_cdf_and_decode_rate_by_position(
    words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    # Two trials of one cell: 40 tokens 10 ms apart, then 40 tokens 20 ms apart (decode
    # slows as the cache grows); and one whose chunks carry two tokens each.
    out = tmp_path / "run"
    run = RunDir.open(out, load_scenario(words_scenario()), resume=False)
    steady = _stream([10.0] * 40 + [20.0] * 40)
    chunked = [t for k in range(20) for t in [100.0 + 30 * k] * 2]
    for trial_id, ms in (("a", steady), ("b", steady), ("c", chunked)):
        run.append_trial(_record(trial_id, **tokens.measures(ms)), token_ms=ms)
    run.close()
    report = build_report(out)
    html = report.html_path.read_text(encoding="utf-8")
    names = {f.name for f in report.figures}
    assert {"itl_cdf.png", "decode_position.png", "itl.png", "decode_q.png"} <= names
    cdf = next(f.data for f in report.figures if f.name == "itl_cdf.png")
    (line,) = cdf["SUMM"].values()
    # 160 real gaps (half of 10 ms, half of 20 ms); the chunked trial has none to give.
    assert line["n"] == 160 and line["p25"] == pytest.approx(10.0)
    assert line["p75"] == pytest.approx(20.0) and line["p100"] == pytest.approx(20.0)
    assert "1 trials that saw tokens in batches are left out" in html
    rates = next(f.data for f in report.figures if f.name == "decode_position.png")
    (points,) = rates["SUMM"].values()
    first, last = points[0], points[-1]
    assert first[0] < last[0] and first[1] > last[1]
    assert "no per-token timings" not in html


def test_an_old_runs_report_says_it_has_no_token_times(tmp_path: Path) -> None:
    # A run directory made before tokens.jsonl: its records lack every per-token field.
    gates = Path(__file__).parent / "data" / "gates" / "baseline"
    out = tmp_path / "old"
    out.mkdir()
    for name in ("trials.jsonl", "run.json"):
        if (gates / name).is_file():
            (out / name).write_bytes((gates / name).read_bytes())
    html = build_report(out).html_path.read_text(encoding="utf-8")
    assert "no per-token timings" in html and "itl_cdf.png" not in html


def test_compare_says_an_old_run_has_no_per_token_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gates = Path(__file__).parent / "data" / "gates" / "baseline"
    lines = (gates / "trials.jsonl").read_text(encoding="utf-8").splitlines()
    new = tmp_path / "new"
    new.mkdir()
    recs = [{**json.loads(line), "itl_p99_ms": 20.0 + i} for i, line in enumerate(lines)]
    (new / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert run_cli(["compare", str(gates), str(new)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "itl_p99_ms: measured in B only" in out and "not compared" in out
    # The run that has them, against itself: nothing to say.
    assert run_cli(["compare", str(new), str(new)]) == 0
    assert "measured in" not in capsys.readouterr().out
