"""devicelab_openai: a model behind an OpenAI-compatible server, as the ``openai`` engine."""

from __future__ import annotations

from collections.abc import Callable

import devicelab
from devicelab import Engine

from .engine import OpenAIEngine, ServerError

__all__ = ["OpenAIEngine", "ServerError"]


@devicelab.hookimpl
def devicelab_register_engines(register: Callable[[type[Engine]], None]) -> None:
    register(OpenAIEngine)
