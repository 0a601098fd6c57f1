"""DeviceLLM: the virtual S24's real inference (SmolLM2 through the llama.cpp engine)."""

from __future__ import annotations

import os
import re
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from virtual_android.device import VirtualS24
from virtual_android.inference.llm import (
    RUNTIME_OVERHEAD_KB,
    DeviceLLM,
    GenerationCancelled,
    NotGGUFError,
    materialize_gguf,
    release_llms,
    shared_llm,
)
from virtual_android.shell.shellio import CancelToken

pytestmark = pytest.mark.real_model


STORY = [("user", "Write a long story about a robot who learns to paint.")]


@pytest.fixture(scope="module")
def phone() -> Iterator[VirtualS24]:
    # DeviceLLM needs the device's model, filesystem and processes, not its adb transport.
    dev = VirtualS24()
    yield dev
    release_llms(dev)


@pytest.fixture(scope="module")
def llm(phone: VirtualS24) -> Iterator[DeviceLLM]:
    model = DeviceLLM(phone)
    model.load()
    yield model
    model.close()


def _vm(status: str, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB$", status, re.M)
    assert match, status
    return int(match.group(1))


def test_chat_streams_text_heats_the_phone_and_holds_the_model_in_rss(
    phone: VirtualS24, llm: DeviceLLM
) -> None:
    pid = phone.register_process("llama-cli")
    before = phone.temperatures()
    pieces: list[str] = []
    rss_while_generating: list[int] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        status = phone.fs.read(f"/proc/{pid}/status").decode()
        rss_while_generating.append(_vm(status, "VmRSS"))

    stats = llm.chat(STORY, 6, on_text, pid=pid)

    assert stats.output_tokens == 6 and stats.finish_reason == "length"
    assert len(pieces) == 6 and "".join(pieces) == stats.text and stats.text.strip()
    assert stats.prompt_tokens == llm.prompt_tokens(STORY)
    assert stats.engine_timings["prefill_tokens"] == stats.prompt_tokens
    assert stats.engine_timings["decode_tokens"] == 5  # the last token is sampled, not decoded
    assert stats.prefill_s > 0 and stats.decode_s > 0
    model_kb = llm.model_path.stat().st_size // 1024
    assert rss_while_generating == [model_kb + RUNTIME_OVERHEAD_KB] * 6
    status = phone.fs.read(f"/proc/{pid}/status").decode()
    assert _vm(status, "VmHWM") >= model_kb + RUNTIME_OVERHEAD_KB
    after = phone.temperatures()
    assert after["BIG"] > before["BIG"]
    assert all(after[zone] >= before[zone] for zone in before)


def test_the_model_loads_once_and_tokenizes_without_the_template(llm: DeviceLLM) -> None:
    assert llm.loaded and llm.load() == 0.0
    one, three = llm.tokenize("paint"), llm.tokenize("paint paint paint")
    assert three == llm.tokenize("paint paint paint")
    assert 1 <= len(one) < len(three) and all(isinstance(t, int) for t in three)
    # the chat template (im_start markers, default system prompt) comes only with messages
    assert llm.prompt_tokens([("user", "paint")]) > len(one) + 5


def test_cancel_stops_the_generation_and_the_engine_stays_usable(llm: DeviceLLM) -> None:
    reference = llm.chat(STORY, 5, lambda piece: None).text

    cancel = CancelToken()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 2:
            cancel.set()

    with pytest.raises(GenerationCancelled):
        llm.chat(STORY, 200, on_text, cancel=cancel)
    assert len(pieces) < 10

    already = CancelToken()
    already.set()
    with pytest.raises(GenerationCancelled):
        llm.chat(STORY, 200, pieces.append, cancel=already)
    assert len(pieces) < 10

    assert llm.chat(STORY, 5, lambda piece: None).text == reference  # greedy, same answer


def test_one_generation_at_a_time_per_phone(llm: DeviceLLM) -> None:
    events: list[tuple[str, float]] = []
    errors: list[BaseException] = []

    def generate(name: str) -> None:
        try:
            llm.chat(STORY, 4, lambda piece: events.append((name, time.monotonic())))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=generate, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    names = [name for name, _ in sorted(events, key=lambda e: e[1])]
    assert sorted(names) == ["a"] * 4 + ["b"] * 4
    assert names in (["a"] * 4 + ["b"] * 4, ["b"] * 4 + ["a"] * 4)  # never interleaved


def test_bad_requests_are_refused_before_generating(llm: DeviceLLM) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        llm.chat(STORY, 0, lambda piece: None)
    with pytest.raises(ValueError, match="unknown role"):
        llm.chat([("robot", "hi")], 4, lambda piece: None)


def test_pushed_bytes_are_materialised_once_per_checksum() -> None:
    body = b"GGUF" + os.urandom(64)
    first = materialize_gguf(body)
    assert materialize_gguf(body) == first and first.read_bytes() == body
    other = materialize_gguf(b"GGUF" + os.urandom(64))
    assert other != first
    with pytest.raises(NotGGUFError) as info:
        materialize_gguf(b"<html>not a model</html>")
    assert info.value.magic == b"<htm"


def test_shared_llm_keeps_one_loaded_instance_per_model(phone: VirtualS24) -> None:
    default = shared_llm(phone)
    assert default.loaded and shared_llm(phone) is default
    # a GGUF v3 header announcing one tensor and no metadata, then nothing
    broken = materialize_gguf(b"GGUF" + struct.pack("<IQQ", 3, 1, 0))
    with pytest.raises(Exception, match="load"):
        shared_llm(phone, broken)
    assert shared_llm(phone) is default  # the failure neither stayed cached nor evicted it
