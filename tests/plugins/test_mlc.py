"""The mlc engine: a clear install message without mlc_llm, and the adapter against a double.

mlc_llm cannot be installed here (PyPI has only empty placeholders), so the adapter is driven
through a test double (tests/plugins/doubles/mlc_llm) that behaves like a real MLC-LLM build:
its radix prefix cache is on by default and remembers every earlier prompt, so an adapter that
leaves prompts cached gets ``prefill_tokens`` shortfalls, as the real build gave.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from devicelab_mlc.engine import INSTALL, MlcEngine, source_commit
from wordsplugin import run_cli

import devicelab
from devicelab import GenerationRequest, GenerationResult, Message, ModelSpec, TokenStream
from devicelab._prefill import prefix_cached
from devicelab._rundir import TRIALS, read_jsonl
from devicelab.testing import make_scenario

DOUBLES = Path(__file__).parent / "doubles"


def mlc_scenario(tmp_path: Path, options: dict[str, Any] | None = None) -> Path:
    """Two SUMM trials per cell by the MLC engine, at two lengths of two sections."""
    return make_scenario(
        tmp_path, name="mlc", kinds=["SUMM"], repetitions=2, sections=2, lengths=[40, 80],
        model="smollm2-mlc", model_keys={"engine": "mlc", "quant": "q4f16_1"},
        model_options=options, tables={"telemetry": {"interval_s": 0.1}},
    )  # fmt: skip


def _forget_mlc_llm() -> None:
    for name in [n for n in sys.modules if n == "mlc_llm" or n.startswith("mlc_llm.")]:
        del sys.modules[name]


@pytest.fixture
def mlc_double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The double on sys.path; yields an MLC model directory (with mlc-chat-config.json)."""
    model = tmp_path / "SmolLM2-135M-Instruct-q4f16_1-MLC"
    model.mkdir()
    config = {"context_window_size": 2048, "conv_template": "chatml"}
    (model / "mlc-chat-config.json").write_text(json.dumps(config), encoding="utf-8")
    monkeypatch.syspath_prepend(str(DOUBLES))
    _forget_mlc_llm()
    yield model
    _forget_mlc_llm()


MESSAGES = [Message("system", "Be brief."), Message("user", "Summarise this.")]
# The chatml prompt of MESSAGES, one token a character, after the double's start token.
TEMPLATE = (
    "<|im_start|>system\nBe brief.<|im_end|>\n"
    "<|im_start|>user\nSummarise this.<|im_end|>\n<|im_start|>assistant\n"
)
PROMPT_TOKENS = 1 + len(TEMPLATE)


def _open(model_dir: Path, engine_cls: type[MlcEngine] = MlcEngine) -> MlcEngine:
    spec = ModelSpec("smollm2-mlc", "mlc", "q4f16_1", model_dir)
    engine_cls.check_model(spec)
    engine = engine_cls(None, spec, MlcEngine.Options(device="cpu"))  # type: ignore[arg-type]
    engine.load()
    return engine


def _generate(engine: MlcEngine, max_tokens: int = 7) -> tuple[GenerationResult, TokenStream]:
    stream = TokenStream()
    return engine.generate(GenerationRequest(MESSAGES, max_tokens=max_tokens), stream), stream


def test_without_mlc_llm_the_run_stops_with_the_install_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _forget_mlc_llm()
    scenario = mlc_scenario(tmp_path)
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert INSTALL in " ".join(err.split())
    assert not (out / TRIALS).exists()  # stopped before any trial


def test_the_adapter_takes_counts_and_timings_from_mlc(mlc_double: Path) -> None:
    engine = _open(mlc_double)
    import mlc_llm

    try:
        assert engine.context_window() == 2048  # from mlc-chat-config.json
        assert engine.detokenize(engine.tokenize("héllo")) == "héllo"
        result, stream = _generate(engine)
        assert result.text == stream.text == "<one tw"
        assert result.output_tokens == 7  # usage.completion_tokens, not the chunk count
        # The held-back "<" came with "o" in one chunk: two tokens timed at that arrival.
        assert stream.count == 7
        assert stream.token_times[0] == stream.token_times[1] < stream.token_times[2]
        assert len(set(stream.token_times)) == 6
        assert result.input_tokens == PROMPT_TOKENS
        assert result.finish_reason == "length"
        assert result.engine_prefill_tps == 150.0 and result.engine_decode_tps == 40.0
        t = result.engine_timings
        assert t["prompt_tokens"] == result.input_tokens and t["decode_tokens"] == 6
        assert t["ttft_s"] > 0 and t["end_to_end_latency_s"] > t["ttft_s"]
    finally:
        engine.close()
    terminated: list[Any] = mlc_llm.TERMINATED
    assert terminated == [str(mlc_double)]


def test_prompt_tokens_are_counted_with_mlcs_template_and_no_request(mlc_double: Path) -> None:
    engine = _open(mlc_double)
    import mlc_llm

    try:
        assert engine.prompt_tokens(MESSAGES) == PROMPT_TOKENS
        # Without a system message MLC keeps its template's own.
        default = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        user = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        assert engine.prompt_tokens([Message("user", "Hi")]) == 1 + len(default + user)
        assert mlc_llm.ENGINES[-1].requests == []  # nothing sent, so nothing cached
        # The template is copied per count: counting twice does not pile turns up.
        assert engine.prompt_tokens([Message("user", "Hi!")]) == 2 + len(default + user)
    finally:
        engine.close()


def test_build_info_is_mlc_llms_version(mlc_double: Path) -> None:
    engine = _open(mlc_double)
    import mlc_llm

    try:
        # The double is on sys.path, not installed: no distribution to name.
        assert engine.build_info() == {"mlc_llm": mlc_llm.__version__}
    finally:
        engine.close()


def test_a_source_build_names_its_commit_and_model_library(
    mlc_double: Path, tmp_path: Path
) -> None:
    # An mlc-llm checkout, as `pip install -e python/` leaves it: python/mlc_llm in the repo.
    repo = tmp_path / "mlc-llm"
    package = repo / "python" / "mlc_llm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert source_commit(package) == head
    (package / "__init__.py").write_text("# changed")
    assert source_commit(package) == head + "-dirty"
    # A wheel, or a package of that name in another repository (the double, in devicelab's).
    assert source_commit(tmp_path / "site-packages" / "mlc_llm") is None
    import mlc_llm

    assert source_commit(Path(mlc_llm.__file__).parent) is None

    lib = tmp_path / "lib.so"
    lib.write_bytes(b"compiled model")
    spec = ModelSpec("smollm2-mlc", "mlc", "q4f32_1", path=mlc_double)
    engine = MlcEngine(None, spec, MlcEngine.Options(device="cpu", model_lib=str(lib)))  # type: ignore[arg-type]
    engine.load()
    try:
        info = engine.build_info()
    finally:
        engine.close()
    assert info["model_lib"] == str(lib.resolve())
    assert info["model_lib_sha256"] == hashlib.sha256(b"compiled model").hexdigest()


def test_every_repetition_is_prefilled_in_full(mlc_double: Path) -> None:
    engine = _open(mlc_double)
    import mlc_llm

    try:
        assert mlc_llm.ENGINES[-1].engine_config.prefix_cache_mode == "disable"
        engine.prompt_tokens(MESSAGES)
        for _ in range(3):
            result, _ = _generate(engine)
            assert result.prefilled_tokens == result.input_tokens == PROMPT_TOKENS
            assert prefix_cached(result.input_tokens, result.prefilled_tokens) is False
    finally:
        engine.close()


class _OldMlcEngine(MlcEngine):
    """The adapter as it was: MLC's default engine config, and prompt tokens counted with a
    ``max_tokens = 1`` request."""

    def load(self) -> None:
        from mlc_llm import MLCEngine as Mlc
        from mlc_llm.tokenizers import Tokenizer

        self._engine = Mlc(self._model, device=self.options.device)
        self._tokenizer = Tokenizer(self._model)
        self._n_ctx = 2048

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        response = self._engine.chat.completions.create(messages=msgs, max_tokens=1)
        return int(response.usage.prompt_tokens)


def test_the_double_catches_the_old_adapter(mlc_double: Path) -> None:
    """The real build's finding: the count request left the prompt in MLC's radix cache, and
    every trial then prefilled 1 token. The double must reproduce it, so the verdict is True."""
    engine = _open(mlc_double, _OldMlcEngine)
    try:
        assert engine.prompt_tokens(MESSAGES) == PROMPT_TOKENS
        result, _ = _generate(engine)
        assert result.input_tokens == PROMPT_TOKENS and result.prefilled_tokens == 1
        assert prefix_cached(result.input_tokens, result.prefilled_tokens) is True
    finally:
        engine.close()


def test_the_doubles_cache_keeps_only_the_uncached_suffix(mlc_double: Path) -> None:
    engine = _open(mlc_double, _OldMlcEngine)
    try:
        first, _ = _generate(engine)
        assert first.prefilled_tokens == PROMPT_TOKENS  # nothing cached yet
        longer = [*MESSAGES[:1], Message("user", "Summarise this. And that.")]
        stream = TokenStream()
        second = engine.generate(GenerationRequest(longer, max_tokens=4), stream)
        # Shared up to "Summarise this." then new: only the rest is prefilled.
        shared = 1 + len(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSummarise this."
        )
        assert second.prefilled_tokens == second.input_tokens - shared
        assert prefix_cached(second.input_tokens, second.prefilled_tokens) is True
    finally:
        engine.close()


def test_a_run_through_the_double_records_mlc_numbers(mlc_double: Path, tmp_path: Path) -> None:
    scenario = mlc_scenario(tmp_path, {"model": str(mlc_double), "device": "cpu"})
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    records = list(read_jsonl(out / TRIALS))
    assert [r["status"] for r in records] == ["ok"] * 4, [r["error"] for r in records]
    by_len: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_len.setdefault(r["context_tokens"], []).append(r)
    # One token a character in the double: 40 more context tokens at L = 80.
    assert by_len[80][0]["input_tokens"] - by_len[40][0]["input_tokens"] == 40
    for r in records:
        assert r["output_tokens"] == 8 and r["engine"] == "mlc"
        assert r["engine_timings"]["decode_tokens_per_s"] == 40.0
        assert r["ttft_s"] > 0
        # The run counted the longest prompt, then ran each prompt twice: MLC still
        # prefilled every prompt token of every trial.
        assert r["engine_timings"]["prefill_tokens"] == r["input_tokens"]


def test_mlc_chunks_are_counted_as_tokens_and_otps_has_no_chunk_bias(
    mlc_double: Path, tmp_path: Path
) -> None:
    scenario = mlc_scenario(tmp_path, {"model": str(mlc_double), "device": "cpu"})
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    run = devicelab.load_run(out)
    assert run.records
    for rec in run.records:
        ms = run.token_times(rec)
        # 8 tokens in 7 chunks: the held-back "<" shares the first chunk's arrival.
        assert len(ms) == rec.measures.output_tokens == 8
        assert ms[0] == ms[1] < ms[2] and len(set(ms)) == 7
        assert rec.measures.tokens_batched is True
        # 6 tokens came after the first arrival, over the 6 gaps between arrivals; counting
        # chunks (7 of them, 7 intervals by usage) read ~1/(n - 2) high.
        span_s = (ms[-1] - ms[0]) / 1000
        assert rec.measures.otps == pytest.approx(6 / span_s, rel=1e-3)
        # Every arrival after the first carried one token: the gaps are real ITLs.
        gaps = [b - a for a, b in itertools.pairwise(ms[1:])]
        assert rec.measures.itl_max_ms == pytest.approx(max(gaps), abs=0.01)
        assert rec.measures.tpot_ms == pytest.approx((ms[-1] - ms[0]) / 6, abs=0.01)
