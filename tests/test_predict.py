"""The performance model (devicelab._predict): the fit recovers a known law, bad input is
refused readably, and a run's summary carries each cell's prediction and error."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from wordsplugin import run_cli

from devicelab import ModelError, ScenarioError, UsageError
from devicelab import _predict as pm
from devicelab._predictrun import (
    ModelKey,
    merge_saved,
    outside_note,
    with_predictions,
)
from devicelab._rundir import load_run
from devicelab._scenario import load_scenario
from devicelab._table import prediction_table

# A SmolLM2-like shape: 30 layers, 9 heads of 64, 3 KV heads.
SHAPE = pm.ModelShape(
    path="m.gguf",
    name="m",
    quant="Q4_1",
    file_bytes=98_000_000,
    weight_bytes=97_000_000,
    decode_bytes=97_000_000,
    matmul_params=106_000_000,
    layers=30,
    heads=9,
    attn_dim=576,
    kv_bytes_per_token=23_040,
    n_embd=576,
    n_vocab=49_152,
    n_ff=1536,
)
LAW = pm.Coefficients(
    overhead_s_per_layer=40e-6,
    bandwidth_bytes_s=9e9,
    prefill_fixed_s=0.03,
    prefill_s_per_layer_token=2e-6,
    flops_s=60e9,
    attention_flops_s=8e9,
    baseline_mb=180.0,
)


def calibration(coef: pm.Coefficients = LAW, device: str = "host") -> pm.Calibration:
    return pm.Calibration(device, coef, "2026-12-08T00:00:00Z", {"run_dir": "probe"})


def samples_from(
    law: pm.Coefficients,
    noise: Callable[[int], float] = lambda i: 1.0,
    shape: pm.ModelShape = SHAPE,
) -> list[pm.Sample]:
    cal = calibration(law)
    out = []
    for i, n in enumerate((64, 128, 256, 512, 768, 1024, 1500)):
        for k in range(3):
            n_out = 20 + 20 * k
            p = pm.predict(shape, cal, n, n_out)
            out.append(pm.Sample(n, n_out, p.ttft_s * noise(i), p.otps / noise(i), p.peak_mem_mb))
    return out


# The probe's second model: the same one cut to its first 10 layers.
CUT = pm.ModelShape(
    **{
        **SHAPE.to_json(),
        "layers": 10,
        "decode_bytes": 52_000_000,
        "weight_bytes": 52_000_000,
        "file_bytes": 54_000_000,
        "matmul_params": 35_000_000,
        "kv_bytes_per_token": 7_680,
    }
)


def test_the_fit_recovers_the_law_that_made_the_data() -> None:
    probes = [(SHAPE, samples_from(LAW)), (CUT, samples_from(LAW, shape=CUT))]
    coef, errors = pm.fit(probes, 2048, 512)
    for name, want in LAW.to_json().items():
        assert getattr(coef, name) == pytest.approx(want, rel=0.02), name
    assert errors["ttft_s"] < 0.5 and errors["otps"] < 0.5


def test_the_fit_keeps_every_term_physical_on_data_no_law_made() -> None:
    # TTFT falling with N: unconstrained least squares would answer with a negative
    # throughput; the fit clamps that term to nothing instead.
    samples = [pm.Sample(n, 32, 1.0 / n, 50.0, 300.0) for n in (64, 128, 256, 512)]
    coef, _ = pm.fit([(SHAPE, samples)], 2048, 512)
    assert coef.prefill_fixed_s >= 0 and coef.overhead_s_per_layer >= 0
    for rate in (coef.flops_s, coef.attention_flops_s, coef.bandwidth_bytes_s):
        assert rate > 0
    # A prediction from it is still a number, never negative.
    p = pm.predict(SHAPE, calibration(coef), 300, 16)
    assert p.ttft_s >= 0 and p.otps > 0


def test_a_fit_on_medians_ignores_one_wild_trial_per_length() -> None:
    clean, _ = pm.fit([(SHAPE, samples_from(LAW))], 2048, 512)
    # One repetition of three per length 3x slower: the medians do not see it.
    noisy = samples_from(LAW)
    noisy = [
        pm.Sample(s.input_tokens, s.output_tokens, s.ttft_s * 3, s.otps / 3, s.peak_mem_mb)
        if i % 3 == 0
        else s
        for i, s in enumerate(noisy)
    ]
    # Different output lengths make different decode positions: compare prefill only.
    coef, _ = pm.fit([(SHAPE, noisy)], 2048, 512)
    assert coef.prefill_fixed_s == pytest.approx(clean.prefill_fixed_s, rel=0.02)


def test_too_few_probe_trials_is_bad_input() -> None:
    with pytest.raises(UsageError, match="too few usable trials"):
        pm.fit([(SHAPE, samples_from(LAW)[:2])], 2048, 512)


def test_a_probe_without_memory_telemetry_cannot_calibrate() -> None:
    samples = [
        pm.Sample(s.input_tokens, s.output_tokens, s.ttft_s, s.otps, None)
        for s in samples_from(LAW)
    ]
    with pytest.raises(UsageError, match="measured no memory"):
        pm.fit([(SHAPE, samples)], 2048, 512)


def test_prediction_follows_the_model_it_says() -> None:
    cal = calibration()
    p = pm.predict(SHAPE, cal, 500, 33)
    ttft = 0.03 + 30 * 500 * 2e-6 + 2 * 106e6 * 500 / 60e9 + 2 * 30 * 576 * 500**2 / 8e9
    per_token = 30 * 40e-6 + (97e6 + 23_040 * (500 + 33 / 2)) / 9e9
    assert p.ttft_s == pytest.approx(ttft)
    assert p.itps == pytest.approx(500 / ttft)
    assert p.otps == pytest.approx(1 / per_token)
    assert p.runtime_s == pytest.approx(ttft + 32 * per_token)
    # Twice the bytes per token: slower decode, the same prefill.
    big = pm.ModelShape(**{**SHAPE.to_json(), "decode_bytes": 2 * SHAPE.decode_bytes})
    assert pm.predict(big, cal, 500, 33).otps < p.otps
    assert pm.predict(big, cal, 500, 33).ttft_s == pytest.approx(p.ttft_s)


def test_error_pct_is_relative_to_the_prediction() -> None:
    assert pm.error_pct(110.0, 100.0) == 10.0
    assert pm.error_pct(None, 100.0) is None
    assert pm.error_pct(1.0, math.inf) is None


def test_calibration_round_trips_and_a_foreign_file_is_refused(tmp_path: Path) -> None:
    dropped = pm.Coefficients(**{**LAW.to_json(), "flops_s": math.inf})  # type: ignore[arg-type]
    cal = pm.Calibration("host", dropped, "2026-12-08T00:00:00Z", {"run_dir": "x"}, {"otps": 1.0})
    path = pm.save_calibration(cal, tmp_path)
    assert path == tmp_path / "host.json"
    # Strict JSON: a dropped term (an infinite rate) is written as null.
    assert json.loads(path.read_text())["coefficients"]["flops_s"] is None
    assert pm.load_calibration("host", tmp_path) == cal
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(UsageError, match="devicelab calibrate host"):
        pm.load_calibration("host", tmp_path)


def test_a_missing_calibration_names_the_command_that_makes_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="devicelab calibrate virtual-s24"):
        pm.load_calibration("virtual-s24", tmp_path)
    assert pm.find_calibration("virtual-s24", tmp_path) is None


def _gguf(path: Path, *, block_count: bool) -> Path:
    import numpy as np
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), "llama")
    w.add_embedding_length(8)
    w.add_head_count(2)
    if block_count:
        w.add_block_count(1)
        w.add_head_count_kv(1)
    w.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float32))
    w.add_tensor("blk.0.ffn_up.weight", np.zeros((24, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_gguf_without_what_the_model_needs_is_refused_naming_it(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "bare.gguf", block_count=False)
    with pytest.raises(ModelError, match=r"llama\.block_count") as caught:
        pm.model_shape(path)
    assert "cannot be predicted" in str(caught.value)


def test_the_shape_is_read_from_the_file(tmp_path: Path) -> None:
    shape = pm.model_shape(_gguf(tmp_path / "ok.gguf", block_count=True))
    assert (shape.layers, shape.heads, shape.n_embd, shape.n_vocab, shape.n_ff) == (1, 2, 8, 16, 24)
    assert shape.matmul_params == 24 * 8  # the embedding is a lookup in prefill
    assert shape.decode_bytes == shape.weight_bytes == 4 * (16 + 24) * 8  # tied output: read whole
    assert shape.kv_bytes_per_token == 2 * 1 * 1 * 4 * 2


def test_prediction_band_is_a_scenario_key_checked_like_the_others(
    words_scenario: Callable[..., Path],
) -> None:
    path = words_scenario()
    base = load_scenario(path)
    assert base.prediction_band_pct == 25.0
    path.write_text(path.read_text() + "\n[prediction]\nband_pct = 10\n")
    set_ = load_scenario(path)
    assert set_.prediction_band_pct == 10.0
    # What counts as a miss changes nothing measured: the run still resumes.
    assert set_.fingerprint() == base.fingerprint()
    assert set_.resolved()["prediction"] == {"band_pct": 10.0}
    path.write_text(path.read_text().replace("band_pct = 10", "band_pct = 0"))
    with pytest.raises(ScenarioError, match=r"\[prediction\] band_pct"):
        load_scenario(path)
    path.write_text(path.read_text().replace("band_pct = 0", "band = 5"))
    with pytest.raises(ScenarioError, match="band"):
        load_scenario(path)


@pytest.fixture
def calibrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where devicelab looks for calibrations (``DEVICELAB_CALIBRATIONS``): an empty folder."""
    where = tmp_path / "cal"
    monkeypatch.setenv("DEVICELAB_CALIBRATIONS", str(where))
    return where


@pytest.mark.usefixtures("words_installed")
def test_predict_without_a_calibration_exits_2_naming_calibrate(
    words_scenario: Callable[..., Path], calibrations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["predict", str(words_scenario())]) == 2
    said = capsys.readouterr().err
    assert "has no calibration" in said and "devicelab calibrate host" in said
    assert "Traceback" not in said


@pytest.mark.usefixtures("words_installed")
def test_predict_prints_every_cell_and_says_which_cannot_be_predicted(
    words_scenario: Callable[..., Path], calibrations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pm.save_calibration(calibration(), calibrations)
    assert run_cli(["predict", str(words_scenario())]) == 0
    captured = capsys.readouterr()
    # The words engine carries its model: no file, so no shape to predict from.
    assert "L=10" in captured.out and "L=20" in captured.out
    assert "no model file" in captured.out
    assert "2 of 2 cells cannot be predicted" in captured.err
    assert "will not run as asked (marked)" not in captured.err


def _run_with_predictions(
    scenario: Path, calibrations: Path, monkeypatch: pytest.MonkeyPatch, band: float
) -> Path:
    import devicelab._runtime.pipeline as pipeline

    scenario.write_text(scenario.read_text() + f"\n[prediction]\nband_pct = {band}\n")
    pm.save_calibration(calibration(), calibrations)
    # The words model has no GGUF file: give it the SmolLM2-like shape.
    monkeypatch.setattr(
        pipeline,
        "shapes",
        lambda models: {
            ModelKey(m.spec.name, m.spec.quant, m.spec.engine, m.variant): (SHAPE, 2048, 512)
            for m in models
        },
    )
    out = calibrations.parent / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    return out


@pytest.mark.usefixtures("words_installed")
def test_a_run_writes_each_cells_prediction_and_names_those_outside_the_band(
    words_scenario: Callable[..., Path],
    calibrations: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The words engine is far faster than a 135M model on this calibration: every cell misses.
    out = _run_with_predictions(words_scenario(), calibrations, monkeypatch, band=5)
    captured = capsys.readouterr()
    rows = json.loads((out / "summary.json").read_text())
    assert rows
    for row in rows:
        assert set(row["predicted"]) == set(pm.PREDICTED)
        err = row["prediction_error_pct"]["otps"]
        assert err == pytest.approx(
            (row["otps"] - row["predicted"]["otps"]) / row["predicted"]["otps"] * 100, abs=0.01
        )
        assert "otps" in row["prediction_outside"]
    assert "Measured against predicted" in captured.out
    last = captured.err.splitlines()
    named = [line for line in last[-3:] if "outside ±5% of their prediction" in line]
    assert named and "SUMM L=10" in named[0]
    # The report shows the run's own predictions, read back from summary.json.
    run = load_run(out)
    from devicelab import _metrics as metrics

    again = merge_saved(metrics.summarize(run.records, run.max_cv), out / "summary.json")
    assert [r["predicted"] for r in again] == [r["predicted"] for r in rows]
    table = prediction_table(again)
    assert table is not None and all(table.marked)


def test_with_predictions_inside_the_band_marks_nothing(
    words_scenario: Callable[..., Path], tmp_path: Path
) -> None:
    row = {
        "device": "host",
        "model": "m",
        "quant": "q",
        "engine": "e",
        "variant": "",
        "task": "SUMM",
        "context_tokens": 200,
        "n": 2,
    }
    p = pm.predict(SHAPE, calibration(), 230, 16).to_json()
    row.update({f: p[f] * 1.04 for f in pm.PREDICTED})

    class Rec:
        ok = measured = True

        class measures:
            input_tokens, output_tokens = 230, 16

        def cell(self) -> tuple[object, ...]:
            return ("host", "m", "q", "e", "", "SUMM", 200)

    rows = with_predictions(
        [row],
        [Rec()],  # type: ignore[list-item]
        {ModelKey("m", "q", "e", ""): (SHAPE, 2048, 512)},
        calibration(),
        5.0,
    )
    assert rows[0]["prediction_outside"] == []
    assert rows[0]["prediction_error_pct"]["otps"] == pytest.approx(4.0, abs=0.01)
    assert outside_note(rows, 5.0) == (
        "all 1 predicted cells are within ±5% of their prediction ([prediction] band_pct)."
    )
    assert outside_note([row], 5.0) is None


def test_a_length_with_only_noisy_trials_is_fitted_on_its_fastest() -> None:
    # Every trial ran beside another job that slowed it 1x, 2x or 4x: the fit sees the
    # fastest of each length, which here is the law itself, and says it had to.
    slow = {0: 1.0, 1: 2.0, 2: 4.0}
    noisy = [
        pm.Sample(
            s.input_tokens, s.output_tokens, s.ttft_s * slow[i % 3], s.otps, s.peak_mem_mb, True
        )
        for i, s in enumerate(samples_from(LAW))
    ]
    coef, said = pm.fit([(SHAPE, noisy)], 2048, 512)
    assert coef.prefill_fixed_s == pytest.approx(LAW.prefill_fixed_s, rel=0.02)
    # One depth alone does not tell the per-layer cost from the FLOPs; the sum is the law's.
    assert pm.prefill_s(SHAPE, coef, 700) == pytest.approx(pm.prefill_s(SHAPE, LAW, 700), rel=0.02)
    assert said["noisy_prefill_points"] == 7
    # One quiet trial per length outweighs any number of noisy ones.
    base = samples_from(LAW)
    quiet_slow = [
        pm.Sample(b.input_tokens, b.output_tokens, b.ttft_s * 3, b.otps, b.peak_mem_mb, False)
        if i % 3 == 2
        else s
        for i, (s, b) in enumerate(zip(noisy, base, strict=True))
    ]
    coef, said = pm.fit([(SHAPE, quiet_slow)], 2048, 512)
    assert coef.prefill_fixed_s == pytest.approx(3 * LAW.prefill_fixed_s, rel=0.02)
    assert said["noisy_prefill_points"] == 0


@pytest.mark.usefixtures("words_installed")
def test_a_broken_calibration_costs_a_run_its_predictions_not_the_run(
    words_scenario: Callable[..., Path],
    tmp_path: Path,
    calibrations: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calibrations.mkdir()
    (calibrations / "host.json").write_text("{not json")
    out = tmp_path / "run"
    assert run_cli(["run", str(words_scenario()), "--out", str(out)]) == 0
    assert "no predictions for this run" in capsys.readouterr().err
    assert not any("predicted" in r for r in json.loads((out / "summary.json").read_text()))


def test_refit_without_a_stored_probe_says_how_to_make_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = tmp_path / "none"
    assert run_cli(["calibrate", "host", "--refit", "--calibrations", str(where)]) == 2
    assert "devicelab calibrate host" in capsys.readouterr().err
    assert not where.exists()  # nothing written for a refit that has nothing to fit
