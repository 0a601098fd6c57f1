"""The plugins' tests import the built-in plugins from plugins/. Their adb fixtures (a private
adb server, a connected virtual S24) come from virtual-android's pytest plugin; the shipped
models' files (``gemma_path``) from tests/conftest.py."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devicelab.testing import make_scenario

ROOT = Path(__file__).resolve().parents[2]
_PLUGINS = ROOT / "plugins"
# The virtual S24's llama-cli: the script the Android engine pushes to the phone.
VIRTUAL_LLAMA_CLI = ROOT / "devices" / "virtual-s24" / "llama-cli"
if str(_PLUGINS) not in sys.path:
    sys.path.insert(0, str(_PLUGINS))


@pytest.fixture
def virtual_llama_cli() -> Path:
    """The virtual S24's llama-cli (a script the phone answers as llama.cpp's CLI would)."""
    return VIRTUAL_LLAMA_CLI


@pytest.fixture
def phone_scenario(tmp_path: Path) -> Callable[..., Path]:
    """Writes a scenario of QA trials by the Android llama.cpp engine on a phone (the virtual
    S24 unless ``device`` is given) through ``binary``, with 4 output tokens; the other keys
    are :func:`devicelab.testing.make_scenario`'s and override these."""

    def write(binary: Path = VIRTUAL_LLAMA_CLI, **keys: Any) -> Path:
        defaults: dict[str, Any] = {
            "kinds": ["QA"],
            "device": "virtual-s24",
            "model_keys": {"engine": "llama.cpp"},
            "model_options": {"binary": str(binary)},
            "max_output_tokens": 4,
        }
        return make_scenario(tmp_path, **{**defaults, **keys})

    return write


@pytest.fixture(scope="module")
def load_llama() -> Iterator[Callable[..., Any]]:
    """``load_llama(spec, **options)``: the llama.cpp engine on ``spec``'s GGUF with these
    options, on no device (the host's own process), loaded once for the module's tests and
    closed after them."""
    from devicelab_llamacpp import LlamaCppEngine

    engines: list[LlamaCppEngine] = []

    def load(spec: Any, **options: Any) -> LlamaCppEngine:
        LlamaCppEngine.check_model(spec)
        engine = LlamaCppEngine(None, spec, LlamaCppEngine.Options(**options))  # type: ignore[arg-type]
        engine.load()
        engines.append(engine)
        return engine

    yield load
    for engine in engines:
        engine.close()
