"""`devicelab advise` on a hand-made run directory whose answer is known."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from wordsplugin import run_cli

from devicelab import load_run
from devicelab._advise import Advice, Candidate, advise, dominates, recommend
from devicelab._errors import UsageError

# (model, quant) -> (quality dict, median ttft_s, max peak_mem_mb), per (task, L).
# SUMM L=200: mean quality A/q4 0.6, A/q8 0.7, B/q4 0.5, C/q4 0.9.
#   Front: A/q4 (fastest, smallest), A/q8, C/q4 (best quality); B/q4 is dominated by A/q4
#   and A/q8. With --quality f1 the order changes: A/q8 (0.9) beats C/q4 (0.8).
# SUMM L=400: no quality at all. Front: A/q4 (smallest), B/q4 (fastest); A/q8 and C/q4
#   are dominated by A/q4 (C/q4 by all three).
CELLS: dict[int, dict[tuple[str, str], tuple[dict[str, float], float, float]]] = {
    200: {
        ("A", "q4"): ({"rouge": 0.6, "f1": 0.6}, 0.5, 300.0),
        ("A", "q8"): ({"rouge": 0.5, "f1": 0.9}, 0.8, 500.0),
        ("B", "q4"): ({"rouge": 0.5, "f1": 0.5}, 0.9, 600.0),
        ("C", "q4"): ({"rouge": 1.0, "f1": 0.8}, 2.0, 1200.0),
    },
    400: {
        ("A", "q4"): ({}, 1.0, 320.0),
        ("A", "q8"): ({}, 1.5, 520.0),
        ("B", "q4"): ({}, 0.9, 700.0),
        ("C", "q4"): ({}, 3.0, 1250.0),
    },
}


def record(model: str, quant: str, length: int, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "model": model,
        "quant": quant,
        "task": "SUMM",
        "context_tokens": length,
        "warmup": False,
        "status": "ok",
        "device_info": {"name": "host"},
    }
    rec.update(extra)
    return rec


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    lines = []
    for length, cells in CELLS.items():
        for (model, quant), (quality, ttft, mem) in cells.items():
            # Three measured trials: median TTFT = ttft, max memory = mem.
            for dt, dm in ((0.0, -50.0), (-0.1, 0.0), (0.3, -10.0)):
                lines.append(
                    record(
                        model,
                        quant,
                        length,
                        quality=quality,
                        ttft_s=ttft + dt,
                        peak_mem_mb=mem + dm,
                    )
                )
            # A warm-up and a failed trial with absurd values: they must be left out.
            lines.append(
                record(
                    model,
                    quant,
                    length,
                    warmup=True,
                    ttft_s=99.0,
                    peak_mem_mb=1.0,
                    quality={"rouge": 5.0, "f1": 5.0},
                )
            )
            lines.append(
                record(
                    model, quant, length, status="failed", ttft_s=0.01, peak_mem_mb=1.0, quality={}
                )
            )
    path = tmp_path / "run"
    path.mkdir()
    (path / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def by_length(groups: list[Advice]) -> dict[int, Advice]:
    assert [g.task for g in groups] == ["SUMM", "SUMM"]
    return {g.context_tokens: g for g in groups}


def front(g: Advice) -> set[str]:
    return {c.name for c in g.candidates if c.on_front}


def test_front_dominated_points_and_aggregates(run_dir: Path) -> None:
    groups = by_length(advise(load_run(run_dir)))
    g = groups[200]
    assert g.uses_quality
    assert front(g) == {"A/q4", "A/q8", "C/q4"}
    cands = {c.name: c for c in g.candidates}
    assert set(cands["B/q4"].dominated_by) == {"A/q4", "A/q8"}
    assert cands["A/q8"].quality == pytest.approx(0.7)
    assert cands["A/q8"].ttft_s == pytest.approx(0.8)
    assert cands["A/q8"].peak_mem_mb == 500.0
    assert cands["A/q8"].n == 3

    g = groups[400]
    assert not g.uses_quality
    assert front(g) == {"A/q4", "B/q4"}
    assert {c.name: c.dominated_by for c in g.candidates if not c.on_front} == {
        "A/q8": ["A/q4"],
        "C/q4": ["A/q4", "A/q8", "B/q4"],
    }


def test_recommendation_with_and_without_limits(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert {L: g.recommended for L, g in by_length(advise(run)).items()} == {
        200: "C/q4",  # best quality
        400: "B/q4",  # no quality: lowest TTFT
    }
    assert by_length(advise(run, max_ttft_s=1.0))[200].recommended == "A/q8"
    limited = by_length(advise(run, max_ttft_s=1.0, max_mem_mb=400))
    assert limited[200].recommended == "A/q4"
    assert limited[400].recommended == "A/q4"
    excluded = {c.name: c.excluded_by for c in limited[200].candidates}
    assert excluded["A/q4"] == []
    assert excluded["C/q4"] == [
        "--max-ttft: median TTFT 2 s > 1 s",
        "--max-mem: peak memory 1200 MB > 400 MB",
    ]


def test_no_candidate_meets_names_each_constraint(run_dir: Path) -> None:
    g = by_length(advise(load_run(run_dir), max_ttft_s=0.6, max_mem_mb=250))[200]
    assert g.recommended is None
    assert g.message.startswith("no candidate meets the limits")
    assert "A/q4: --max-mem: peak memory 300 MB > 250 MB" in g.message
    assert "A/q4: --max-ttft" not in g.message  # 0.5 s is within 0.6 s
    assert "B/q4: --max-ttft: median TTFT 0.9 s > 0.6 s, --max-mem" in g.message


def test_chosen_quality_metric(run_dir: Path) -> None:
    run = load_run(run_dir)
    for name in ("f1", "quality.f1"):
        g = by_length(advise(run, quality=name))[200]
        assert g.recommended == "A/q8"
        assert front(g) == {"A/q4", "A/q8"}  # C/q4 now dominated by A/q8
    with pytest.raises(UsageError, match=r"'bleu'.*one of: f1, rouge"):
        advise(run, quality="bleu")


def test_ties_broken_by_ttft_then_memory() -> None:
    cands = [
        Candidate("X", "q4", 3, 0.8, 1.0, 300.0),
        Candidate("Y", "q4", 3, 0.8, 0.9, 900.0),
        Candidate("Z", "q4", 3, 0.8, 0.9, 800.0),
    ]
    best, _ = recommend(cands, uses_quality=True)
    assert best is not None and best.name == "Z/q4"
    assert dominates((0.0, 1.0), (0.0, 2.0)) and not dominates((0.0, 1.0), (0.0, 1.0))


def test_cli_table(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["advise", str(run_dir), "--max-ttft", "1"]) == 0
    text = capsys.readouterr().out
    assert "SUMM at L=200" in text and "SUMM at L=400" in text
    assert "recommended A/q8: best quality within the limits." in text
    assert "No trial here has quality" in text
    assert "dominated by A/q4, A/q8" in text
    assert "* on the Pareto front   > recommended" in text


def test_cli_json(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["advise", str(run_dir), "--max-ttft", "0.1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(g["task"], g["context_tokens"], g["recommended"]) for g in data] == [
        ("SUMM", 200, None),
        ("SUMM", 400, None),
    ]
    row = data[0]["candidates"][0]
    assert row["name"] == "A/q4" and row["on_front"] is True
    assert row["excluded_by"] == ["--max-ttft: median TTFT 0.5 s > 0.1 s"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["advise", "{tmp}/missing"], "is not a directory"),
        (["advise", "{tmp}"], "has no trials.jsonl"),
        (["advise", "{run}", "--quality", "bleu"], "Use --quality with one of: f1, rouge"),
        (["advise", "{run}", "--max-mem", "-5"], "--max-mem must be a positive number"),
    ],
)
def test_cli_bad_input_exits_2(
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
) -> None:
    args = [a.format(tmp=tmp_path, run=run_dir) for a in args]
    assert run_cli(args) == 2
    assert needle in capsys.readouterr().err


def test_lower_is_better_quality_is_kept_out_of_the_ranking() -> None:
    from devicelab._advise import trial_quality
    from devicelab._record import higher_is_better

    record = {"quality": {"bleu": 0.4, "rouge1": 0.6, "self_bleu": 0.9}}
    assert trial_quality(record, None) == pytest.approx(0.5)
    assert not higher_is_better("quality.self_bleu")
    assert higher_is_better("quality.bleu")


def write_run(tmp_path: Path, cells: dict[str, tuple[list[float], float, float]]) -> Path:
    """A run of quant -> (each trial's quality, TTFT, peak memory) for model M, SUMM at 200."""
    lines = [
        record("M", quant, 200, quality={"rouge": q}, ttft_s=ttft, peak_mem_mb=mem)
        for quant, (qs, ttft, mem) in cells.items()
        for q in qs
    ]
    path = tmp_path / "run"
    path.mkdir()
    (path / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def test_quality_intervals_are_t_intervals_over_the_trials() -> None:
    from devicelab._advise import t_interval

    # Mean 2, standard deviation 1, n = 3: t(0.975, 2) = 4.303, half-width 4.303 / sqrt(3).
    assert t_interval([1.0, 2.0, 3.0]) == pytest.approx((2 - 2.4843, 2 + 2.4843), abs=1e-3)
    assert t_interval([0.4, 0.4]) == pytest.approx((0.4, 0.4))
    assert t_interval([0.7]) is None


def test_a_quality_difference_within_the_noise_is_a_tie_decided_by_speed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The quant sweep's case: q4_0 scores 0.001 on average against 0.000, over two trials.
    run = write_run(
        tmp_path, {"q4_0": ([0.002, 0.0], 0.30, 400.0), "q4_1": ([0.0, 0.0], 0.25, 380.0)}
    )
    [g] = advise(load_run(run))
    cands = {c.name: c for c in g.candidates}
    assert cands["M/q4_0"].quality == pytest.approx(0.001)
    low, high = cands["M/q4_0"].quality_low, cands["M/q4_0"].quality_high
    assert low is not None and high is not None and low < 0.0 < high
    assert g.recommended == "M/q4_1"  # tied on quality, and faster
    assert "tied for best quality with M/q4_0" in g.message
    # Tied on quality, slower and bigger: q4_0 is off the front.
    assert cands["M/q4_0"].dominated_by == ["M/q4_1"] and cands["M/q4_1"].on_front
    assert run_cli(["advise", str(run)]) == 0
    text = capsys.readouterr().out
    assert "0.001 [" in text and "0.000 [0.000, 0.000]" in text
    assert run_cli(["advise", str(run), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]["candidates"][0]
    assert row["quality_low"] == pytest.approx(low) and row["quality_high"] == pytest.approx(high)


def test_a_quality_difference_beyond_the_noise_still_decides(tmp_path: Path) -> None:
    run = write_run(
        tmp_path,
        {
            "q8_0": ([0.80, 0.82, 0.81], 0.90, 700.0),
            "q4_0": ([0.40, 0.42, 0.41], 0.30, 400.0),
            # Tied with q8_0 (its wide interval reaches q8_0's), and the fastest of the two.
            "q6_k": ([0.70, 0.80, 0.75], 0.60, 600.0),
        },
    )
    [g] = advise(load_run(run))
    assert g.recommended == "M/q6_k"
    assert "tied for best quality with M/q8_0" in g.message
    front = {c.name for c in g.candidates if c.on_front}
    assert front == {"M/q4_0", "M/q6_k"}  # q8_0: tied with q6_k on quality, slower, bigger
    (tmp_path / "b").mkdir()
    clear = {"q8_0": ([0.80, 0.82, 0.81], 0.9, 700.0), "q4_0": ([0.40, 0.42, 0.41], 0.3, 400.0)}
    only_clear = write_run(tmp_path / "b", clear)
    [g] = advise(load_run(only_clear))
    assert g.recommended == "M/q8_0" and g.message.endswith("best quality within the limits")


def test_single_trials_have_no_interval_and_count_at_their_mean(tmp_path: Path) -> None:
    run = write_run(tmp_path, {"q4_0": ([0.002], 0.30, 400.0), "q4_1": ([0.0], 0.25, 380.0)})
    [g] = advise(load_run(run))
    assert g.recommended == "M/q4_0"
    assert all(c.quality_low is None for c in g.candidates)
    assert g.candidates[0].quality_text() == "0.002 (n=1, no interval)"
