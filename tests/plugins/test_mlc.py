"""The mlc engine: a clear install message without mlc_llm, and the adapter against a double.

mlc_llm cannot be installed here (PyPI has only empty placeholders), so the adapter is driven
through a test double written to a temporary directory: a fake ``mlc_llm`` package with
exactly the documented interface the adapter uses.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devicelab_mlc.engine import INSTALL, MlcEngine
from wordsplugin import run_cli, write_scenario

from devicelab import GenerationRequest, Message, ModelSpec, TokenStream
from devicelab._rundir import TRIALS, read_jsonl

DOUBLE_INIT = '''\
"""A test double of mlc_llm. It mirrors MLC-LLM's documented Python interface (MLCEngine,
chat.completions.create with streaming and include_usage, usage.extra, terminate, and
engine.tokenizer from mlc_llm.tokenizers) and nothing else; it runs no model.

Tokens are characters; each streamed chunk carries two of them, as MLC may merge tokens into
one chunk, so usage.completion_tokens differs from the number of chunks.
"""

from types import SimpleNamespace

from .tokenizers import Tokenizer

TERMINATED = []
EXTRA = {
    "prefill_tokens_per_s": 150.0,
    "decode_tokens_per_s": 40.0,
    "ttft_s": 0.05,
    "inter_token_latency_s": 0.025,
    "end_to_end_latency_s": 0.2,
}


class MLCEngine:
    def __init__(self, model, device="auto", *, model_lib=None, mode="local"):
        self.model = model
        self.device = device
        self.tokenizer = Tokenizer(model)
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    def _template(self, messages):
        return "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages) + "<|assistant|>"

    def _create(self, *, messages, model=None, stream=False, stream_options=None,
                max_tokens=16, temperature=None, seed=None):
        prompt_tokens = len(self.tokenizer.encode(self._template(messages)))
        text = ("one two three four five six seven eight nine ten " * 4)[:max_tokens]
        usage = SimpleNamespace(prompt_tokens=prompt_tokens, completion_tokens=len(text),
                                total_tokens=prompt_tokens + len(text))
        if not stream:
            message = SimpleNamespace(role="assistant", content=text)
            return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason="length")],
                                   usage=usage)
        include_usage = bool(stream_options and stream_options.get("include_usage"))
        usage.extra = dict(EXTRA, prompt_tokens=prompt_tokens, completion_tokens=len(text),
                           prefill_tokens=prompt_tokens, decode_tokens=len(text) - 1)
        return self._stream(text, usage if include_usage else None)

    def _stream(self, text, usage):
        pieces = [text[i:i + 2] for i in range(0, len(text), 2)]
        for i, piece in enumerate(pieces):
            finish = "length" if i == len(pieces) - 1 else None
            delta = SimpleNamespace(role="assistant", content=piece)
            yield SimpleNamespace(choices=[SimpleNamespace(index=0, delta=delta,
                                                           finish_reason=finish)], usage=None)
        if usage is not None:
            yield SimpleNamespace(choices=[], usage=usage)

    def terminate(self):
        TERMINATED.append(self.model)
'''

DOUBLE_TOKENIZERS = '''\
"""Test double of mlc_llm.tokenizers: Tokenizer(path).encode / .decode, one token a character."""


class Tokenizer:
    def __init__(self, tokenizer_path):
        self.path = tokenizer_path

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, token_ids):
        return "".join(chr(t) for t in token_ids)
'''

SCENARIO = """\
[scenario]
name = "mlc"
repetitions = 1
warmup = 0

[[models]]
name = "smollm2-mlc"
engine = "mlc"
quant = "q4f16_1"
{options}

[tasks]
kinds = ["SUMM"]
documents = "docassist-mini"
max_documents = 1
max_output_tokens = 8

[context]
sections = 2
lengths = [40, 80]

[telemetry]
interval_s = 0.1
"""


def _forget_mlc_llm() -> None:
    for name in [n for n in sys.modules if n == "mlc_llm" or n.startswith("mlc_llm.")]:
        del sys.modules[name]


@pytest.fixture
def mlc_double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The double on sys.path; yields an MLC model directory (with mlc-chat-config.json)."""
    pkg = tmp_path / "double" / "mlc_llm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(DOUBLE_INIT), encoding="utf-8")
    (pkg / "tokenizers.py").write_text(DOUBLE_TOKENIZERS, encoding="utf-8")
    model = tmp_path / "SmolLM2-135M-Instruct-q4f16_1-MLC"
    model.mkdir()
    config = {"context_window_size": 2048, "conv_template": "chatml"}
    (model / "mlc-chat-config.json").write_text(json.dumps(config), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "double"))
    _forget_mlc_llm()
    yield model
    _forget_mlc_llm()


def test_without_mlc_llm_the_run_stops_with_the_install_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _forget_mlc_llm()
    scenario = write_scenario(tmp_path, SCENARIO.format(options=""))
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert INSTALL in " ".join(err.split())
    assert not (out / TRIALS).exists()  # stopped before any trial


def test_the_adapter_takes_counts_and_timings_from_mlc(mlc_double: Path) -> None:
    spec = ModelSpec("smollm2-mlc", "mlc", "q4f16_1", mlc_double)
    MlcEngine.check_model(spec)
    engine = MlcEngine(None, spec, MlcEngine.Options(device="cpu"))  # type: ignore[arg-type]
    engine.load()
    import mlc_llm

    try:
        assert engine.context_window() == 2048  # from mlc-chat-config.json
        assert engine.detokenize(engine.tokenize("héllo")) == "héllo"
        messages = [Message("system", "Be brief."), Message("user", "Summarise this.")]
        stream = TokenStream()
        result = engine.generate(GenerationRequest(messages, max_tokens=7), stream)
        assert result.text == stream.text == "one two"
        assert stream.count == 4  # chunks of two characters: "on", "e ", "tw", "o"
        assert result.output_tokens == 7  # usage.completion_tokens, not the chunk count
        template = "<|system|>Be brief.<|end|><|user|>Summarise this.<|end|><|assistant|>"
        assert result.input_tokens == len(template) == engine.prompt_tokens(messages)
        assert result.finish_reason == "length"
        t = result.engine_timings
        assert t["prefill_tokens_per_s"] == 150.0 and t["decode_tokens_per_s"] == 40.0
        assert t["ttft_s"] == 0.05 and t["end_to_end_latency_s"] == 0.2
        assert t["prompt_tokens"] == result.input_tokens and t["decode_tokens"] == 6
    finally:
        engine.close()
    terminated: list[Any] = mlc_llm.TERMINATED
    assert terminated == [str(mlc_double)]


def test_a_run_through_the_double_records_mlc_numbers(mlc_double: Path, tmp_path: Path) -> None:
    options = f'options = {{model = "{mlc_double}", device = "cpu"}}'
    scenario = write_scenario(tmp_path, SCENARIO.format(options=options))
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    records = list(read_jsonl(out / TRIALS))
    assert [r["status"] for r in records] == ["ok", "ok"], [r["error"] for r in records]
    by_len = {r["context_tokens"]: r for r in records}
    # One token a character in the double: 40 more context tokens at L = 80.
    assert by_len[80]["input_tokens"] - by_len[40]["input_tokens"] == 40
    for r in records:
        assert r["output_tokens"] == 8 and r["engine"] == "mlc"
        assert r["engine_timings"]["decode_tokens_per_s"] == 40.0
        assert r["ttft_s"] > 0
