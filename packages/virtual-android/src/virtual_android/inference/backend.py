"""The text-generation backend: what the phone's apps and ``llama-cli`` run a model on.

The phone never runs a model itself; it hands the work to a :class:`TextBackend` on the host
and adds what a phone adds around it (one generation at a time, heat, memory, cancelling; see
:mod:`.llm`). A backend is made per model file by a :class:`BackendFactory`, which the phone
is given when it is made (``make_phone(backend=...)``) or later (:func:`.llm.use_backend`).

Two backends exist: :mod:`virtual_android.inference.llama_cpp_backend` (llama-cpp-python, the
``virtual-android[llm]`` extra) and whatever a host project builds over its own engine. Tests
that only need the phone's behaviour can pass any small deterministic one, such as
:class:`WordsBackend`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

__all__ = [
    "BackendFactory",
    "BackendResult",
    "ChatMessage",
    "Role",
    "TextBackend",
    "TextRequest",
    "TokenSink",
    "WordsBackend",
]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class TextRequest:
    """One generation. ``raw_prompt`` set: a prompt already in the model's format (no chat
    template, special tokens parsed), and ``messages`` is empty."""

    messages: tuple[ChatMessage, ...]
    max_tokens: int
    temperature: float = 0.0
    seed: int = 0
    raw_prompt: str | None = None


@dataclass(frozen=True)
class BackendResult:
    """What a generation produced.

    ``finish_reason`` is ``"stop"`` when the model emitted end-of-generation (that token is
    neither counted nor shown) and ``"length"`` when ``max_tokens`` ran out. ``timings`` are the
    backend's own counters; llama-cli's perf lines read ``prefill_ms``, ``prefill_tokens``,
    ``decode_ms`` and ``decode_tokens`` from it (absent keys count as 0).
    """

    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: Literal["stop", "length"] = "length"
    timings: Mapping[str, float] = field(default_factory=dict)


class TokenSink(Protocol):
    """Where a backend reports progress while it generates; the phone keeps the clock."""

    def sent(self) -> None:
        """The prompt goes to the model now: prefill starts."""

    def token(self, text: str) -> None:
        """One output token was decoded, to ``text`` (may be "" inside a UTF-8 character).

        May raise: the backend must let the exception end the generation and propagate.
        """


class TextBackend(Protocol):
    """A model on the host. Loaded lazily, used by one generation at a time.

    ``model_path`` is the weights file: the phone reports its size as the memory the model's
    process holds.
    """

    @property
    def model_path(self) -> Path: ...

    def load(self) -> None:
        """Load the model; a second call does nothing. Raise with a clear message on failure."""

    def close(self) -> None:
        """Free the model (a later :meth:`load` loads it again)."""

    def context_window(self) -> int: ...

    def tokenize(self, text: str) -> list[int]:
        """The model's tokens for ``text``, without special tokens or chat template."""
        ...

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """How many tokens ``messages`` take once the model's chat template is applied."""
        ...

    def generate(self, request: TextRequest, sink: TokenSink) -> BackendResult:
        """Generate from a cold context: call ``sink.sent()`` once, then ``sink.token`` per
        output token."""
        ...


class BackendFactory(Protocol):
    """Makes the backend for a model file; ``None`` means the backend's default model."""

    def __call__(self, model_path: Path | None, *, n_ctx: int, threads: int) -> TextBackend: ...


class WordsBackend:
    """A model that answers every prompt at once with numbered words (``word0 word1 ...``),
    one token each, up to ``max_tokens`` (and ``words``, when given): text enough to overflow
    a list, with no model run. For tests of the phone's behaviour, not of inference."""

    def __init__(self, path: Path, words: int | None = None) -> None:
        self._path = path
        self._words = words

    @property
    def model_path(self) -> Path:
        return self._path

    def load(self) -> None:
        pass

    def close(self) -> None:
        pass

    def context_window(self) -> int:
        return 4096

    def tokenize(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content.split()) for m in messages)

    def generate(self, request: TextRequest, sink: TokenSink) -> BackendResult:
        sink.sent()
        n = request.max_tokens if self._words is None else min(self._words, request.max_tokens)
        words = [f"word{i} " for i in range(n)]
        for word in words:
            sink.token(word)
        return BackendResult("".join(words), 10, len(words), "length", {})
