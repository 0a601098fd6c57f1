"""The model catalogue, read from the two shipped GGUF files themselves, and files it refuses."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from devicelab import ModelError
from devicelab._catalogue import cached_info, model_title, read_gguf


def test_smollm2_reads_as_a_135m_instruct_model_in_q4_1(smollm2_file: Path) -> None:
    info = read_gguf(smollm2_file)
    assert abs(info.params - 135e6) / 135e6 < 0.05
    assert info.quant == "Q4_1" and info.architecture == "llama"
    assert info.kind == "instruct" and info.chat_template
    # Q4_1 is 5 bits per weight (4 + a scale and a minimum per 32); the F32 norms add a little.
    assert 5.0 < info.bits_per_weight < 6.5
    assert info.size_bytes == smollm2_file.stat().st_size
    assert info.context_length == 8192
    # Grouped-query attention: fewer KV heads than heads, so the KV cache is smaller.
    assert info.layers and info.heads and info.kv_heads and info.kv_heads < info.heads
    assert info.kv_bytes_per_token == 2 * info.layers * info.kv_heads * (info.head_dim or 0) * 2
    assert len(info.sha256) == 64
    # The embedding table: its vocabulary (49,152) by its width (576).
    assert info.embedding_params == 49_152 * 576


def test_gemma_reads_as_a_270m_base_model_in_q4_k_m(gemma_path: Path) -> None:
    info = read_gguf(gemma_path)
    assert abs(info.params - 270e6) / 270e6 < 0.05
    assert info.quant == "Q4_K_M" and info.architecture == "gemma3"
    assert info.kind == "base" and not info.chat_template
    assert info.context_length == 32768
    assert info.embedding_params == 262_144 * 640  # most of its weights: a 262k vocabulary
    # Its embedding table (a 262k vocabulary) is kept at more bits than the Q4_K blocks.
    assert 6.5 < info.bits_per_weight < 8.5
    assert info.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert model_title("gemma-3-270m", info.params, info.size_bytes) == (
        "gemma-3-270m (268M, 253 MB)"
    )


def test_cached_info_reads_a_file_once_until_it_changes(smollm2_file: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m.gguf"
    shutil.copyfile(smollm2_file, copy)
    first = cached_info(copy)
    assert cached_info(copy) is first
    st = copy.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cached_info(copy) is not first
    assert cached_info(copy) == first  # the same content reads the same


def test_a_file_that_is_not_a_gguf_is_refused_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_text("not a model", encoding="utf-8")
    with pytest.raises(ModelError, match="not a GGUF file") as exc:
        read_gguf(bad)
    assert str(bad) in str(exc.value)
    with pytest.raises(ModelError, match="does not exist"):
        read_gguf(tmp_path / "missing.gguf")


def test_a_truncated_gguf_is_refused_naming_it(smollm2_file: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2_file.open("rb") as src:
        cut.write_bytes(src.read(1 << 20))  # the header and part of the tensors
    with pytest.raises(ModelError, match="truncated") as exc:
        read_gguf(cut)
    assert str(cut) in str(exc.value)


def test_model_titles_say_the_size_where_known() -> None:
    assert model_title("smollm2", 134_515_008, 98_362_432) == "smollm2 (135M, 98 MB)"
    assert model_title("big", 1_236_000_000, 2_500_000_000) == "big (1.2B, 2.50 GB)"
    assert model_title("app-model") == "app-model"


def test_summary_rows_get_each_models_size_from_its_loads_provenance() -> None:
    from types import SimpleNamespace

    from devicelab._catalogue import model_facts, with_model_facts

    def rec(model: str, quant: str, load: str) -> SimpleNamespace:
        return SimpleNamespace(identity=SimpleNamespace(model=model, quant=quant, provenance=load))

    loads = {
        "a": {"model": {"name": "g", "quant": "q4_k_m", "params": 268, "size_bytes": 253}},
        "b": {"model": {"name": "app", "quant": "none"}},  # an engine's own model: no file
    }
    facts = model_facts(
        loads, [rec("g", "q4_k_m", "a"), rec("app", "none", "b"), rec("x", "y", "")]
    )
    assert facts == {("g", "q4_k_m"): {"model_params": 268, "model_size_bytes": 253}}
    rows = with_model_facts(
        [{"model": "g", "quant": "q4_k_m"}, {"model": "app", "quant": "none"}], facts
    )
    assert rows == [
        {"model": "g", "quant": "q4_k_m", "model_params": 268, "model_size_bytes": 253},
        {"model": "app", "quant": "none"},
    ]
