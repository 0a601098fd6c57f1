"""MLC-LLM on the host, through ``mlc_llm.MLCEngine`` (its OpenAI-style Python API).

mlc_llm cannot be installed in devicelab's own environment (PyPI only has empty placeholder
packages; the real wheels come from https://mlc.ai/wheels), so this adapter is tested against
a test double of MLC's interface (tests/plugins/test_mlc.py) that behaves like a real build
(REFERENCE.md, "MLC-LLM" and "Caches that fake a fast prefill"):

- ``MLCEngine(model, device=..., model_lib=..., engine_config=EngineConfig(...))``;
  ``engine.terminate()`` at the end. ``EngineConfig`` is ``mlc_llm.serve.config.EngineConfig``;
- ``engine.chat.completions.create(messages=[{"role", "content"}...], stream=True,
  stream_options={"include_usage": True}, max_tokens=..., temperature=..., seed=...)`` yields
  chunks with ``choices[i].delta.content`` and ``finish_reason``; the final chunk has no
  choices and a ``usage`` with ``prompt_tokens``, ``completion_tokens`` and ``extra``
  (``prefill_tokens``, ``decode_tokens``, ``prefill_tokens_per_s``, ``decode_tokens_per_s``,
  ``ttft_s``, ...), which is kept as ``engine_timings``;
- ``engine.tokenizer`` (an ``mlc_llm.tokenizers.Tokenizer``) with ``encode`` and ``decode``;
  ``engine.conv_template`` (an ``mlc_llm.protocol.conversation_protocol.Conversation``) and
  ``engine.model_config_dicts[0]`` (mlc-chat-config.json), from which MLC builds a chat prompt
  (``mlc_llm.serve.engine_base.process_chat_completion_request``).

Cold prefill: MLC keeps a radix prefix cache by default, so any earlier request with the same
prompt (a count, an earlier repetition) leaves it cached and the next one prefills 1 token of
178. The engine is created with the cache off, prompt tokens are counted with MLC's own
template and tokenizer (no request), and ``usage.extra.prefill_tokens`` is reported so the
record can prove every prompt was prefilled in full.

Times are measured on the host like every engine's: ``stream.sent()`` before the request,
``stream.token()`` per streamed chunk; MLC's own view is kept beside them. A chunk is not
always one token: MLC holds back a first ``<`` (it could start ``<|im_end|>``) and streams it
with the next token. So when ``usage.completion_tokens`` differs from the number of chunks,
each chunk's tokens are counted after the stream (off the clock) with MLC's tokenizer on the
text so far, and timed at the chunk's arrival (``devicelab.recounted``); the record is then
``tokens_batched`` and OTPS counts only the tokens after the first arrival.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
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


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    n = _number(value)
    return int(n) if n is not None else None


def _rate(value: Any) -> float | None:
    n = _number(value)
    return n if n is not None and n > 0 else None


def source_commit(package_dir: Path) -> str | None:
    """The mlc-llm commit of a source build: ``package_dir`` (mlc_llm's) is ``python/mlc_llm``
    of an mlc-llm git checkout (pip install -e python/). ``None`` for a wheel, or when the
    checkout is not mlc-llm's (the package sits elsewhere in some other repository)."""
    if package_dir.name != "mlc_llm" or package_dir.parent.name != "python":
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2:
        return None
    top, commit = lines
    if Path(top).resolve() != package_dir.parent.parent.resolve():
        return None
    dirty = subprocess.run(
        ["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


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
        from mlc_llm.serve.config import (  # type: ignore[import-not-found,unused-ignore]
            EngineConfig,
        )

        kwargs: dict[str, Any] = {"device": self.options.device}
        if self.options.model_lib:
            kwargs["model_lib"] = self.options.model_lib
        # EngineConfig.prefix_cache_mode ("radix" by default, or "disable"), in
        # mlc_llm/serve/config.py: with the radix cache on, a repeated prompt is served from
        # the cache (prefill_tokens 1 of 178 on a real build) and ITPS comes out ~100x high.
        config = EngineConfig(prefix_cache_mode="disable")
        self._engine = Mlc(self._model, engine_config=config, **kwargs)
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
        """The prompt's size after MLC's conversation template, counted without a request.

        Built the way MLC builds a chat request's prompt (engine_base's
        process_chat_completion_request): a copy of ``engine.conv_template`` takes the system
        message and the turns, ``as_prompt(model_config)`` gives its parts, text parts are
        encoded with MLC's tokenizer and ``system_prefix_token_ids`` come first. A request
        (even with max_tokens = 1) would leave the prompt in MLC's prefix cache.
        """
        key = json.dumps(_messages(messages))
        if key not in self._counts:
            self._counts[key] = self._template_count(messages)
        return self._counts[key]

    def _template_count(self, messages: Sequence[Message]) -> int:
        template = getattr(self._engine, "conv_template", None)
        configs = getattr(self._engine, "model_config_dicts", None)
        if template is None or not configs:
            raise EngineError(
                "this MLC-LLM build's MLCEngine has no conv_template / model_config_dicts, so "
                "prompt tokens cannot be counted without a request; install a current nightly: "
                f"{INSTALL}"
            )
        conv = template.model_copy(deep=True)
        for m in messages:
            if m.role == "system":
                conv.system_message = m.content
            else:
                conv.messages.append((m.role, m.content))
        conv.messages.append(("assistant", None))
        count = len(conv.system_prefix_token_ids or [])
        for part in conv.as_prompt(configs[0]):
            if isinstance(part, str):
                count += len(self._tokenizer.encode(part))
            elif isinstance(part, list):
                count += len(part)
            else:
                raise EngineError(
                    f"MLC's template gave a {type(part).__name__} prompt part; the mlc engine "
                    "sends text only"
                )
        return count

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
        # MLC's OpenAI-style API takes stop sequences as the API does.
        stop = {"stop": list(request.stop)} if request.stop else {}
        chunks = self._engine.chat.completions.create(
            messages=msgs,
            model=self._model,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            seed=request.seed,
            **stop,
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
        if isinstance(output_tokens, int) and output_tokens != len(pieces):
            counts = devicelab.chunk_counts(self.tokenize, pieces)
            stream.token_times = devicelab.recounted(stream.token_times, counts)
        if not isinstance(input_tokens, int):
            input_tokens = self.prompt_tokens(request.messages)
        extra = getattr(usage, "extra", None)
        extra = extra if isinstance(extra, dict) else {}
        return GenerationResult(
            text="".join(pieces),
            input_tokens=input_tokens,
            output_tokens=output_tokens if isinstance(output_tokens, int) else len(pieces),
            engine_timings=_numbers(extra),
            finish_reason=finish,
            prefilled_tokens=_count(extra.get("prefill_tokens")),
            engine_prefill_tps=_rate(extra.get("prefill_tokens_per_s")),
            engine_decode_tps=_rate(extra.get("decode_tokens_per_s")),
        )

    def build_info(self) -> dict[str, str]:
        """MLC-LLM's version (``mlc_llm.__version__``, from its libinfo) and the distribution
        it came from (the nightly wheels are named per backend: mlc-llm-nightly-cpu, ...), and
        TVM's (mlc-ai-*), which compiles and runs the model. A source build reads as
        ``0.1.dev0`` whatever its code: its mlc-llm commit is added (``mlc_llm_commit``), and
        a compiled model library (``model_lib``) is named by path and sha256."""
        import importlib.metadata

        import mlc_llm  # type: ignore[import-not-found,unused-ignore]

        out = {"mlc_llm": str(getattr(mlc_llm, "__version__", "unknown"))}
        commit = source_commit(Path(getattr(mlc_llm, "__file__", "") or ".").parent)
        if commit:
            out["mlc_llm_commit"] = commit
        lib = Path(self.options.model_lib) if self.options.model_lib else None
        if lib is not None and lib.is_file():
            out["model_lib"] = str(lib.resolve())
            out["model_lib_sha256"] = devicelab.sha256_file(lib)
        dists = importlib.metadata.packages_distributions()
        for module in ("mlc_llm", "tvm"):
            for dist in dists.get(module, [])[:1]:
                with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                    out[f"{module}_distribution"] = f"{dist} {importlib.metadata.version(dist)}"
        return out

    def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.terminate()
