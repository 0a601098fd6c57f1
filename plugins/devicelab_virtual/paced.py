"""The ``paced`` engine: a phone's time without the host's CPU.

It answers as an S24 would in time, not in content: it waits out the prompt at
``prefill_tps`` and each output token at ``decode_tps`` (by default the reference study's
SmolLM-135M figures on an S24) and echoes words of the prompt back. Waiting is sleeping, so
N virtual phones on one host cost it nothing: a benchmark of the lab itself (how well it keeps
N phones busy) measures the lab, not this CPU. Any model name works: ``engine = "paced"``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from devicelab import (
    Engine,
    GenerationRequest,
    GenerationResult,
    Message,
    ModelSpec,
    ScenarioError,
    TokenStream,
)


class PacedEngine(Engine):
    name = "paced"
    device_kinds = ("android",)

    @dataclass(frozen=True)
    class Options:
        prefill_tps: float = 168.0
        decode_tps: float = 61.0
        load_s: float = 0.0
        n_ctx: int = 4096

    @classmethod
    def check_model(cls, model: ModelSpec) -> None:
        if model.path is not None:
            raise ScenarioError(
                f"model {model.name!r}: the paced engine loads no weights; drop its path."
            )

    def load(self) -> None:
        if self.options.prefill_tps <= 0 or self.options.decode_tps <= 0:
            raise ScenarioError("paced engine: prefill_tps and decode_tps must be above 0.")
        time.sleep(self.options.load_s)

    def context_window(self) -> int:
        return int(self.options.n_ctx)

    def tokenize(self, text: str) -> list[int]:
        return [len(w) for w in text.split()]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return " ".join("w" * t for t in tokens)

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content.split()) for m in messages)

    def generate(self, request: GenerationRequest, stream: TokenStream) -> GenerationResult:
        n_in = self.prompt_tokens(request.messages)
        words = " ".join(m.content for m in request.messages).split()
        n_out = min(request.max_tokens, max(1, len(words)))
        stream.sent()
        t0 = time.perf_counter()
        first = t0 + n_in / self.options.prefill_tps
        # Absolute deadlines, so the sleeps' own overshoot does not add up over the tokens.
        for k in range(n_out):
            due = first + k / self.options.decode_tps
            time.sleep(max(0.0, due - time.perf_counter()))
            stream.token(text=words[k % len(words)] + " ")
        return GenerationResult(text=stream.text.strip(), input_tokens=n_in, output_tokens=n_out)
