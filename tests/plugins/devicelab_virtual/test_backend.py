"""The adapter's backend: the virtual S24's models run on devicelab's own llama.cpp engine."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
from devicelab_virtual.backend import DEFAULT_MODEL, EngineBackend, engine_backend
from devicelab_virtual.launch import make_virtual_s24, shutdown
from virtual_android import DeviceLLM, VirtualS24
from virtual_android.inference.llm import backend_factory, release_llms

from devicelab import GenerationRequest, Message, ModelError, TokenStream
from devicelab import _plugins as plugin_manager


@pytest.fixture(scope="module")
def phone() -> Iterator[VirtualS24]:
    dev = VirtualS24()
    yield dev
    release_llms(dev)


def test_a_virtual_s24_from_the_adapter_runs_its_models_on_the_engine() -> None:
    dev = make_virtual_s24()
    try:
        factory = backend_factory(dev)
        assert isinstance(factory, functools.partial) and factory.func is EngineBackend
        registered = plugin_manager.get_registry().models[DEFAULT_MODEL][1].path
        assert DeviceLLM(dev).model_path == registered
    finally:
        shutdown(dev)


def test_the_phone_answers_as_the_engine_does(phone: VirtualS24) -> None:
    messages = [("user", "Name a colour.")]
    llm = DeviceLLM(phone, backend=engine_backend(plugin_manager.get_registry()))
    pieces: list[str] = []
    stats = llm.chat(messages, 8, pieces.append)

    registry = plugin_manager.get_registry()
    spec = registry.models[DEFAULT_MODEL][1]
    host = registry.devices["host"][1].open("host", {})
    engine_cls = registry.engine_for("llama.cpp", "host")
    engine = engine_cls(host, spec, engine_cls.Options(n_ctx=llm.n_ctx, threads=llm.threads))
    engine.load()
    try:
        direct = engine.generate(
            GenerationRequest([Message("user", "Name a colour.")], 8, 0.0, 0), TokenStream()
        )
        assert stats.prompt_tokens == engine.prompt_tokens([Message("user", "Name a colour.")])
    finally:
        engine.close()
    assert stats.text == direct.text == "".join(pieces)
    assert stats.output_tokens == direct.output_tokens
    assert stats.finish_reason == direct.finish_reason
    assert {"prefill_ms", "prefill_tokens", "decode_ms", "decode_tokens"} <= set(
        stats.engine_timings
    )
    assert llm.prompt_tokens(messages) == stats.prompt_tokens


def test_a_model_file_that_is_not_gguf_is_refused_by_the_engine(
    phone: VirtualS24, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model")
    llm = DeviceLLM(phone, bogus, backend=engine_backend(plugin_manager.get_registry()))
    with pytest.raises(ModelError, match="not a GGUF file"):
        llm.load()
