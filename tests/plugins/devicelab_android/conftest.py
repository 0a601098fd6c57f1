"""Fixtures of the Android plugin's tests: a virtual S24 opened as an Android device, the model
its engines load, its llama-cli and apps' engines, a token stream that hurts the phone mid-answer, and
MLCChat's answers capped on the virtual phones a run starts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import adbutils
import pytest
from devicelab_android.app import AppEngine
from devicelab_android.device import AndroidDevice, AndroidType
from devicelab_android.llamacli import LlamaCliEngine
from devicelab_virtual import VirtualType
from devicelab_virtual.launch import make_virtual_s24
from virtual_android import apps_of
from virtual_android.pytest_plugin import connected

import devicelab
from devicelab import ModelSpec, TokenStream


@pytest.fixture
def phone(adb_server: adbutils.AdbClient) -> Iterator[AndroidDevice]:
    """A virtual S24 on the private adb server, opened as the Android plugin's device; the
    virtual phone itself is its ``virtual`` attribute (to hurt it mid-trial)."""
    with connected(adb_server, make_virtual_s24()) as vdev:
        device = AndroidType(devicelab.load_plugins()).open(
            "s24", {"options": {"serial": vdev.serial}}
        )
        device.open()
        device.virtual = vdev  # type: ignore[attr-defined]
        try:
            yield device
        finally:
            device.close()


@pytest.fixture
def smollm2() -> ModelSpec:
    return devicelab.load_plugins().models["smollm2-135m-instruct"][1]


@pytest.fixture
def capped_mlcchat(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """MLCChat has no setting for its answer's length: ``capped_mlcchat(n)`` caps it at ``n``
    tokens on each virtual S24 the virtual device type starts from then on."""

    def cap(max_tokens: int) -> None:
        original = VirtualType.open

        def open_capped(self: VirtualType, name: str, profile: dict[str, object]) -> object:
            device = original(self, name, profile)
            apps_of(self._launched[id(device)]).mlcchat.max_tokens = max_tokens
            return device

        monkeypatch.setattr(VirtualType, "open", open_capped)

    return cap


@pytest.fixture
def cli_engine(
    phone: AndroidDevice, smollm2: ModelSpec, virtual_llama_cli: Path
) -> Iterator[LlamaCliEngine]:
    """The llama-cli engine on ``phone`` with the virtual S24's llama-cli, loaded (binary and
    model pushed); closed after the test."""
    engine = LlamaCliEngine(phone, smollm2, LlamaCliEngine.Options(binary=str(virtual_llama_cli)))
    LlamaCliEngine.check_model(engine.model)
    engine.load()
    yield engine
    engine.close()


@pytest.fixture
def app_engine(phone: AndroidDevice, smollm2: ModelSpec) -> Iterator[Callable[..., AppEngine]]:
    """``app_engine(app, load=True)``: the engine of app profile ``app`` on ``phone``, loaded
    (the app started, its model chosen); every one is closed after the test."""
    engines: list[AppEngine] = []

    def open_app(app: str, load: bool = True) -> AppEngine:
        engine = AppEngine(phone, smollm2, AppEngine.Options(app=app))
        engines.append(engine)
        if load:
            engine.load()
        return engine

    yield open_app
    for engine in engines:
        engine.close()


@pytest.fixture
def on_first_token() -> Callable[[Callable[[], object]], TokenStream]:
    """``on_first_token(act)``: a token stream (60 s to its deadline) that calls ``act()`` once,
    when the first token arrives: a fault injected mid-answer."""

    def stream(act: Callable[[], object]) -> TokenStream:
        acted: list[bool] = []

        class OnFirstToken(TokenStream):
            def token(self, n: int = 1, t: float | None = None, text: str = "") -> None:
                super().token(n, t, text)
                if not acted:
                    acted.append(True)
                    act()

        return OnFirstToken(deadline=time.perf_counter() + 60)

    return stream
