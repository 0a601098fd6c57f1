"""devicelab_mlc: MLC-LLM (the study's engine) as the ``mlc`` engine."""

from __future__ import annotations

from collections.abc import Callable

import devicelab
from devicelab import Engine

from .engine import MlcEngine


@devicelab.hookimpl
def devicelab_register_engines(register: Callable[[type[Engine]], None]) -> None:
    register(MlcEngine)


@devicelab.hookimpl
def devicelab_register_quantizers(register: Callable[[devicelab.Quantizer], None]) -> None:
    from .quantize import MlcQuantizer

    register(MlcQuantizer())
