"""MLC-LLM on the host, through ``mlc_llm.MLCEngine`` (its OpenAI-style Python API).

mlc_llm cannot be installed in devicelab's own environment (PyPI only has empty placeholder
packages; the real wheels come from https://mlc.ai/wheels), so this adapter is tested against
a test double of MLC's documented interface (tests/plugins/test_mlc.py), not the real engine:

- ``MLCEngine(model, device=..., model_lib=...)``; ``engine.terminate()`` at the end;
- ``engine.chat.completions.create(messages=[{"role", "content"}...], stream=True,
  stream_options={"include_usage": True}, max_tokens=..., temperature=..., seed=...)`` yields
  chunks with ``choices[i].delta.content`` and ``finish_reason``; the final chunk has no
  choices and a ``usage`` with ``prompt_tokens``, ``completion_tokens`` and ``extra``
  (``prefill_tokens_per_s``, ``decode_tokens_per_s``, ``ttft_s``, ``inter_token_latency_s``,
  ``end_to_end_latency_s``, ...), which is kept as ``engine_timings``;
- ``engine.tokenizer`` (an ``mlc_llm.tokenizers.Tokenizer``, built from the model directory)
  with ``encode(text) -> list[int]`` and ``decode(ids) -> str``.

Times are measured on the host like every engine's: ``stream.sent()`` before the request,
``stream.token()`` per streamed chunk; MLC's own view is kept beside them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import devicelab
from devicelab import (
    Engine,
    EngineError,
    GenerationRequest,
    GenerationResult,
    Message,
    ModelSpec,
    TokenStream,
)

INSTALL = (
    "python -m pip install --pre -U -f https://mlc.ai/wheels mlc-llm-nightly-cpu mlc-ai-nightly-cpu"
)
MISSING = (
    "the mlc engine needs MLC-LLM's Python package (mlc_llm), which is not on PyPI (the "
    f"mlc-* packages there are empty placeholders). Install the nightly wheels: {INSTALL} "
    "(cu128, cu130 and rocm variants exist for GPUs)."
)


def _numbers(obj: Any) -> dict[str, float]:
    if not isinstance(obj, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in obj.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


class MlcEngine(Engine):
    name = "mlc"
    device_kinds = ("host",)

    @dataclass(frozen=True)
    class Options:
        # An MLC model directory (with mlc-chat-config.json) or an "HF://mlc-ai/..." id;
        # default: the model's path, else its name.
        model: str | None = None
        # "auto", "cpu", "cuda", "vulkan", "metal", ... (MLC's device names).
        device: str = "auto"
        # A compiled model library; default: MLC compiles one just in time.
        model_lib: str | None = None
        # The context window; default: what the engine reports, else mlc-chat-config.json.
        n_ctx: int | None = None

    def __init__(self, device: devicelab.Device, model: ModelSpec, options: Any) -> None:
        super().__init__(device, model, options)
        self._model = options.model or (str(model.path) if model.path else model.name)
        self._engine: Any = None
        self._tokenizer: Any = None
        self._n_ctx: int | None = None
        self._counts: dict[str, int] = {}

    @classmethod
    def check_model(cls, model: ModelSpec) -> None:
        if importlib.util.find_spec("mlc_llm") is None:
            raise devicelab.MissingDependencyError(MISSING)

    def load(self) -> None:
        try:
            from mlc_llm import MLCEngine as Mlc  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:  # the PyPI placeholder imports, but has no MLCEngine
            raise devicelab.MissingDependencyError(f"{MISSING} ({exc})") from None
        kwargs: dict[str, Any] = {"device": self.options.device}
        if self.options.model_lib:
            kwargs["model_lib"] = self.options.model_lib
        self._engine = Mlc(self._model, **kwargs)
        self._tokenizer = getattr(self._engine, "tokenizer", None)
        if self._tokenizer is None:
            from mlc_llm.tokenizers import Tokenizer  # type: ignore[import-not-found,unused-ignore]

            self._tokenizer = Tokenizer(self._model)
        self._n_ctx = self.options.n_ctx or self._reported_context()
        if self._n_ctx is None:
            raise devicelab.ModelError(
                f"MLC-LLM does not report the context window of {self._model}; set "
                "[models.options] n_ctx to the model's context_window_size."
            )

    def _reported_context(self) -> int | None:
        config = getattr(self._engine, "engine_config", None)
        n = getattr(config, "max_single_sequence_length", None)
        if isinstance(n, int) and n > 0:
            return n
        chat_config = Path(self._model) / "mlc-chat-config.json"
        with contextlib.suppress(OSError, ValueError):
            n = json.loads(chat_config.read_text(encoding="utf-8")).get("context_window_size")
            if isinstance(n, int) and n > 0:
                return n
        return None

    def context_window(self) -> int:
        assert self._n_ctx is not None, "load() first"
        return self._n_ctx

    def tokenize(self, text: str) -> list[int]:
        return [int(t) for t in self._tokenizer.encode(text)]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(tokens)))

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        """The prompt's size after MLC's conversation template, as MLC counts it.

        A request with ``max_tokens = 1`` reports ``usage.prompt_tokens``: the template lives
        inside MLC, and estimating it here would be silently wrong. Cached per prompt.
        """
        msgs = _messages(messages)
        key = json.dumps(msgs)
        if key not in self._counts:
            response = self._engine.chat.completions.create(
                messages=msgs, model=self._model, max_tokens=1, temperature=0.0, stream=False
            )
            usage = getattr(response, "usage", None)
            count = getattr(usage, "prompt_tokens", None)
            if not isinstance(count, int):
                raise EngineError("MLC-LLM reported no usage.prompt_tokens for a request")
            self._counts[key] = count
        return self._counts[key]

    def generate(self, request: GenerationRequest, stream: TokenStream) -> GenerationResult:
        if request.raw_prompt is not None:
            raise EngineError(
                "the mlc engine sends chat messages and MLC applies the model's template; "
                "a raw prompt is not supported"
            )
        msgs = _messages(request.messages)
        stream.check_deadline()
        pieces: list[str] = []
        finish = "stop"
        usage: Any = None
        stream.sent()
        chunks = self._engine.chat.completions.create(
            messages=msgs,
            model=self._model,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            seed=request.seed,
        )
        try:
            for chunk in chunks:
                for choice in chunk.choices or []:
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        pieces.append(text)
                        stream.token(1, text=text)
                    if choice.finish_reason:
                        finish = str(choice.finish_reason)
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
        finally:
            # Leaving early (the trial's deadline) ends MLC's request.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        input_tokens = getattr(usage, "prompt_tokens", None)
        output_tokens = getattr(usage, "completion_tokens", None)
        if not isinstance(input_tokens, int):
            input_tokens = self.prompt_tokens(request.messages)
        return GenerationResult(
            text="".join(pieces),
            input_tokens=input_tokens,
            output_tokens=output_tokens if isinstance(output_tokens, int) else len(pieces),
            engine_timings=_numbers(getattr(usage, "extra", None)),
            finish_reason=finish,
        )

    def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.terminate()
