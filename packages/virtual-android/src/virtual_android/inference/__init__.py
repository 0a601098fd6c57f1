"""Models on the phone: the backend protocol a host supplies, the device-side wrapper that adds
the phone's lock, heat and memory (llm), and the emulated llama.cpp CLI (llamacli)."""

from .backend import (
    BackendFactory,
    BackendResult,
    ChatMessage,
    TextBackend,
    TextRequest,
    TokenSink,
)
from .llamacli import install_llama_cli
from .llm import (
    DeviceLLM,
    GenerationCancelled,
    GenerationStats,
    NoBackendError,
    NotGGUFError,
    backend_factory,
    materialize_gguf,
    release_llms,
    shared_llm,
    use_backend,
)

__all__ = [
    "BackendFactory",
    "BackendResult",
    "ChatMessage",
    "DeviceLLM",
    "GenerationCancelled",
    "GenerationStats",
    "NoBackendError",
    "NotGGUFError",
    "TextBackend",
    "TextRequest",
    "TokenSink",
    "backend_factory",
    "install_llama_cli",
    "materialize_gguf",
    "release_llms",
    "shared_llm",
    "use_backend",
]
