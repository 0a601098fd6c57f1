"""The backend protocol: the phone runs whatever TextBackend it is given, and adds the phone.

A scripted backend answers with fixed tokens, so what the phone and its apps make of them can
be checked exactly, without a model.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import adbutils
import pytest
import uiautomator2 as u2
import virtual_android.inference.llama_cpp_backend as llama_cpp_backend
from virtual_android import (
    BackendResult,
    ChatMessage,
    DeviceLLM,
    GenerationCancelled,
    NoBackendError,
    TextRequest,
    TokenSink,
    VirtualS24,
    apps_of,
    make_phone,
    shutdown_phone,
    use_backend,
)
from virtual_android.apps.apps import MLCCHAT_PACKAGE
from virtual_android.inference.llm import RUNTIME_OVERHEAD_KB
from virtual_android.pytest_plugin import connected
from virtual_android.shell.shellio import CancelToken

SCRIPT = ["Hello", " from", " a", " scripted", " model."]
TIMINGS = {"prefill_ms": 12.5, "prefill_tokens": 3.0, "decode_ms": 40.0, "decode_tokens": 4.0}
TIMEOUT = 30.0


class ScriptedBackend:
    """Answers every prompt with SCRIPT, one token per piece; a prompt token per word."""

    def __init__(self, model_path: Path, gate: threading.Event | None = None) -> None:
        self._path = model_path
        self.gate = gate  # when set: each token waits for it (cleared after each)
        self.loaded = False
        self.requests: list[TextRequest] = []
        self.stopped_by_phone = threading.Event()

    @property
    def model_path(self) -> Path:
        return self._path

    def load(self) -> None:
        self.loaded = True

    def close(self) -> None:
        self.loaded = False

    def context_window(self) -> int:
        return 64

    def tokenize(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content.split()) + 2 for m in messages)

    def generate(self, request: TextRequest, sink: TokenSink) -> BackendResult:
        assert self.loaded, "the phone generated before loading"
        self.requests.append(request)
        sink.sent()
        out: list[str] = []
        for piece in SCRIPT[: request.max_tokens]:
            if self.gate is not None:
                self.gate.wait(TIMEOUT)
                self.gate.clear()
            try:
                sink.token(piece)
            except BaseException:
                self.stopped_by_phone.set()
                raise
            out.append(piece)
        prompt = (
            len(self.tokenize(request.raw_prompt)) + 1
            if request.raw_prompt is not None
            else self.prompt_tokens(request.messages)
        )
        return BackendResult(
            text="".join(out),
            prompt_tokens=prompt,
            output_tokens=len(out),
            finish_reason="stop" if len(out) == len(SCRIPT) else "length",
            timings=TIMINGS,
        )


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "scripted.gguf"
    path.write_bytes(b"GGUF" + bytes(3 * 1024 * 1024))
    return path


@pytest.fixture
def made(weights: Path) -> list[ScriptedBackend]:
    return []


@pytest.fixture
def factory(weights: Path, made: list[ScriptedBackend]):  # type: ignore[no-untyped-def]
    def make(model_path: Path | None, *, n_ctx: int, threads: int) -> ScriptedBackend:
        backend = ScriptedBackend(model_path or weights)
        made.append(backend)
        return backend

    return make


def _vm_rss(phone: VirtualS24, pid: int) -> int:
    status = phone.fs.read(f"/proc/{pid}/status").decode()
    match = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M)
    assert match, status
    return int(match.group(1))


def test_the_phone_streams_the_backends_tokens_and_holds_its_weights_in_rss(
    factory, made: list[ScriptedBackend], weights: Path
) -> None:
    phone = VirtualS24()
    use_backend(phone, factory)
    llm = DeviceLLM(phone)
    pid = phone.register_process("llama-cli")
    pieces: list[str] = []

    stats = llm.chat([("user", "say hello")], 3, pieces.append, pid=pid)

    assert pieces == SCRIPT[:3]
    assert stats.text == "Hello from a" and stats.output_tokens == 3
    assert stats.finish_reason == "length" and stats.prompt_tokens == 4
    assert stats.engine_timings == TIMINGS
    assert stats.prefill_s >= 0 and stats.decode_s >= 0
    assert made[0].requests[0] == TextRequest((ChatMessage("user", "say hello"),), 3)
    assert _vm_rss(phone, pid) == weights.stat().st_size // 1024 + RUNTIME_OVERHEAD_KB

    whole = llm.complete("<|im_start|>user", 50, lambda _: None)
    assert whole.finish_reason == "stop" and whole.text == "".join(SCRIPT)
    assert made[0].requests[1].raw_prompt == "<|im_start|>user"
    llm.close()
    assert not made[0].loaded


def test_the_context_window_caps_max_tokens_and_a_full_prompt_is_refused(factory) -> None:
    phone = VirtualS24()
    llm = DeviceLLM(phone, backend=factory)
    stats = llm.chat([("user", " ".join(["w"] * 60))], 10, lambda _: None)
    assert stats.output_tokens == 2  # 64 - (60 + 2) tokens left
    with pytest.raises(ValueError, match="leaves no room in the 64-token context window"):
        llm.chat([("user", " ".join(["w"] * 62))], 10, lambda _: None)
    with pytest.raises(ValueError, match="unknown role 'robot'"):
        llm.chat([("robot", "hi")], 10, lambda _: None)


def test_cancel_returns_at_once_and_the_phone_is_free_once_the_backend_stops(
    weights: Path,
) -> None:
    gate = threading.Event()
    backend = ScriptedBackend(weights, gate)
    phone = VirtualS24()
    llm = DeviceLLM(phone, backend=lambda path, *, n_ctx, threads: backend)
    cancel = CancelToken()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        cancel.set()  # the client goes away after the first piece

    gate.set()
    with pytest.raises(GenerationCancelled):
        llm.chat([("user", "hi")], 5, on_text, cancel)
    assert pieces == ["Hello"]
    gate.set()  # the backend's next token: the phone stops it there
    assert backend.stopped_by_phone.wait(TIMEOUT)

    backend.gate = None
    assert llm.chat([("user", "again")], 2, lambda _: None).text == "Hello from"


def test_without_a_backend_running_a_model_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(llama_cpp_backend, "llama_cpp_available", lambda: False)
    with pytest.raises(NoBackendError, match=r"pip install 'virtual-android\[llm\]'"):
        DeviceLLM(VirtualS24())


@pytest.fixture
def scripted_phone(
    adb_server: adbutils.AdbClient, factory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[VirtualS24, u2.Device]]:
    with connected(adb_server, make_phone(backend=factory), stop=shutdown_phone) as phone:
        # u2.connect(serial) uses adbutils' module-level client: the private server here.
        monkeypatch.setattr(adbutils, "adb", adb_server)
        d = u2.connect(phone.serial)
        try:
            yield phone, d
        finally:
            d.stop_uiautomator(wait=False)


def test_mlcchat_shows_exactly_what_the_backend_answered(
    scripted_phone: tuple[VirtualS24, u2.Device], made: list[ScriptedBackend]
) -> None:
    phone, d = scripted_phone
    d.app_start(MLCCHAT_PACKAGE, ".MainActivity")
    d(description="start chatting").click()
    assert d(text="Ready to chat").wait(timeout=TIMEOUT)
    d(text="Input").set_text("Say hi")
    d(description="send message").click()
    assert d(text="Hello from a scripted model.").wait(timeout=TIMEOUT)
    assert d(textStartsWith="prefill:").wait(timeout=TIMEOUT)
    stats = apps_of(phone).mlcchat.last_stats
    assert stats is not None and stats.text == "Hello from a scripted model."
    assert made[-1].requests[-1].messages == (ChatMessage("user", "Say hi"),)
