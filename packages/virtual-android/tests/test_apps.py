"""MLCChat and DocAssist on the virtual S24: real SmolLM2 inference, driven by uiautomator2.

Generations are kept to a few tokens. The model is the real DeviceLLM; a thin wrapper records
each call and, where a test must interrupt a generation, holds each text piece back a little
(a slow phone) so there is a "middle" to kill it in. No test asserts a speed.
"""

from __future__ import annotations

import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import adbutils
import pytest
import uiautomator2 as u2
from virtual_android.apps.apps import (
    DOCASSIST_PACKAGE,
    DOCASSIST_SYSTEM_PROMPT,
    MLCCHAT_PACKAGE,
    InstalledApps,
    apps_of,
    install_apps,
    rates,
)
from virtual_android.apps.screen import screen_of
from virtual_android.apps.ui import LAUNCHER_PACKAGE
from virtual_android.device import VirtualS24
from virtual_android.inference.llm import DeviceLLM, GenerationCancelled, GenerationStats
from virtual_android.shell.shellio import CancelToken

pytestmark = pytest.mark.real_model


MODEL_ID = "SmolLM2-135M-Instruct-q4f16_1-MLC"
RID = f"{DOCASSIST_PACKAGE}:id/"
STATS_RE = re.compile(r"prefill: (\d+\.\d) tok/s, decode: (\d+\.\d) tok/s")
DOC_STATS_RE = re.compile(r"prefill: (\d+\.\d) tok/s, decode: (\d+\.\d) tok/s, ttft: (\d+\.\d\d) s")
DOCUMENT = "The lighthouse on Pell Island was built in 1871 and automated in 1989."
TIMEOUT = 60.0  # generous: the host may be busy; nothing here measures speed


@dataclass
class Call:
    messages: list[tuple[str, str]]
    max_tokens: int
    pieces: list[str] = field(default_factory=list)
    stats: GenerationStats | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Recorder:
    """What the apps' models did, and how slowly each piece reaches the app (`delay`)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.delay = 0.0

    def last(self) -> Call:
        assert self.calls, "no generation was started"
        return self.calls[-1]


class RecordingLLM:
    """The real DeviceLLM with its chat calls recorded."""

    def __init__(self, llm: DeviceLLM, recorder: Recorder) -> None:
        self._llm = llm
        self._recorder = recorder

    def load(self) -> float:
        return self._llm.load()

    def close(self) -> None:
        self._llm.close()

    def resident_kb(self) -> int:
        return self._llm.resident_kb()

    def chat(
        self,
        messages: list[tuple[str, str]],
        max_tokens: int,
        on_text: Callable[[str], None],
        cancel: CancelToken | None = None,
        temperature: float = 0.0,
        seed: int = 0,
        *,
        owner: int | None = None,
    ) -> GenerationStats:
        call = Call(list(messages), max_tokens)
        self._recorder.calls.append(call)

        def piece(text: str) -> None:
            call.pieces.append(text)
            if self._recorder.delay:
                time.sleep(self._recorder.delay)
            on_text(text)

        try:
            call.stats = self._llm.chat(
                messages, max_tokens, piece, cancel, temperature, seed, owner=owner
            )
            return call.stats
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            call.done.set()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def apps(virtual_s24: VirtualS24, recorder: Recorder) -> InstalledApps:
    install_apps(virtual_s24, lambda dev: RecordingLLM(DeviceLLM(dev), recorder), max_tokens=8)
    return apps_of(virtual_s24)


@pytest.fixture
def d(apps: InstalledApps, d: u2.Device) -> Iterator[u2.Device]:
    """The conftest's ``d`` on a phone with the recording apps, which stop after the test."""
    yield d
    for app in apps.all():
        app.force_stop()


def texts_of(d: u2.Device, package: str) -> list[str]:
    root = ET.fromstring(d.dump_hierarchy().encode())
    return [
        n.get("text", "")
        for n in root.iter("node")
        if n.get("package") == package and n.get("class") == "android.widget.TextView"
    ]


def total_pss_kb(device: adbutils.AdbDevice, package: str) -> int:
    match = re.search(r"TOTAL PSS:\s+(\d+)", device.shell(["dumpsys", "meminfo", package]))
    assert match, f"no TOTAL PSS for {package}"
    return int(match.group(1))


def open_chat(d: u2.Device) -> None:
    d.app_start(MLCCHAT_PACKAGE, ".MainActivity")
    assert d(text=MODEL_ID).wait(timeout=10)
    d(description="start chatting").click()
    assert d(text="Ready to chat").wait(timeout=TIMEOUT)


def test_mlcchat_chat_end_to_end(
    d: u2.Device,
    device: adbutils.AdbDevice,
    virtual_s24: VirtualS24,
    recorder: Recorder,
    apps: InstalledApps,
) -> None:
    d.app_start(MLCCHAT_PACKAGE, ".MainActivity")
    assert d(text=MODEL_ID).wait(timeout=10)
    assert d.info["currentPackageName"] == MLCCHAT_PACKAGE
    pid = device.shell(["pidof", MLCCHAT_PACKAGE]).strip()
    assert pid.isdigit()
    app_only = total_pss_kb(device, MLCCHAT_PACKAGE)

    d(description="start chatting").click()
    assert d(text="Ready to chat").wait(timeout=TIMEOUT)
    assert screen_of(virtual_s24).toast_history[-2:] == ["Initialize...", "Ready to chat"]
    assert d(description="send message", enabled=True).exists
    assert {"reset the chat", "back home page"} <= {
        n.get("content-desc") for n in ET.fromstring(d.dump_hierarchy().encode()).iter("node")
    }
    # With the model loaded the app holds the weights plus about 40 MB (dumpsys meminfo PSS).
    model_kb = DeviceLLM(virtual_s24).model_path.stat().st_size // 1024
    loaded = total_pss_kb(device, MLCCHAT_PACKAGE)
    assert abs(loaded - (model_kb + 40 * 1024)) <= 64
    assert app_only < loaded

    d(text="Input").set_text("Say hi")
    assert d(text="Say hi", className="android.widget.EditText").exists
    d(description="send message").click()
    report = d(textStartsWith="prefill:")
    assert report.wait(timeout=TIMEOUT)
    match = STATS_RE.fullmatch(report.get_text())
    assert match, report.get_text()

    call = recorder.last()
    assert call.done.wait(TIMEOUT) and call.stats is not None
    assert call.messages == [("user", "Say hi")] and call.max_tokens == 8
    assert 1 <= call.stats.output_tokens <= 8
    prefill, decode = rates(call.stats)
    assert match.groups() == (f"{prefill:.1f}", f"{decode:.1f}")
    texts = texts_of(d, MLCCHAT_PACKAGE)
    answer = texts[texts.index("Say hi") + 1]
    assert answer.strip() and answer == call.stats.text == "".join(call.pieces)
    assert d(description="send message").info["enabled"] is True
    assert d(text="Input", className="android.widget.EditText").exists  # the input was sent

    # A second turn carries the conversation; "reset the chat" forgets it.
    d(text="Input").set_text("Thanks")
    d(description="send message").click()
    assert d(text="Thanks").wait(timeout=10)
    wait_for(lambda: len(recorder.calls) == 2 and recorder.last().done.is_set())
    assert recorder.last().messages == [
        ("user", "Say hi"),
        ("assistant", answer),
        ("user", "Thanks"),
    ]
    wait_for(lambda: d(description="send message").info["enabled"])
    d(description="reset the chat").click()
    assert d(text="Say hi").wait_gone(timeout=10)
    assert d(text="Ready to chat").exists
    d(description="back home page").click()
    assert d(description="start chatting").wait(timeout=10)
    assert apps.mlcchat.last_stats is recorder.last().stats


def wait_for(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_mlcchat_streams_the_answer_and_disables_send_while_generating(
    d: u2.Device, recorder: Recorder
) -> None:
    open_chat(d)
    recorder.delay = 0.15  # each piece reaches the app a little late: the answer grows visibly
    d(text="Input").set_text("Tell me about the sea.")
    d(description="send message").click()
    assert d(description="send message", enabled=False).wait(timeout=10)
    seen: list[str] = []
    while not recorder.calls or not recorder.last().done.is_set():
        texts = texts_of(d, MLCCHAT_PACKAGE)
        if "Tell me about the sea." in texts:
            partial = texts[texts.index("Tell me about the sea.") + 1]
            if partial and (not seen or seen[-1] != partial):
                seen.append(partial)
        time.sleep(0.05)
    assert d(textStartsWith="prefill:").wait(timeout=TIMEOUT)
    final = recorder.last().stats
    assert final is not None
    # The assistant's text was seen growing before the generation ended.
    assert len(seen) >= 2 and all(final.text.startswith(p) for p in seen)
    assert d(description="send message", enabled=True).wait(timeout=10)


def test_mlcchat_force_stopped_mid_generation(
    d: u2.Device,
    device: adbutils.AdbDevice,
    recorder: Recorder,
    apps: InstalledApps,
) -> None:
    open_chat(d)
    apps.mlcchat.max_tokens = 64
    recorder.delay = 0.3
    d(text="Input").set_text("Write a long story about a cat.")
    d(description="send message").click()
    wait_for(lambda: recorder.calls and recorder.last().pieces)
    d.app_stop(MLCCHAT_PACKAGE)  # am force-stop

    call = recorder.last()
    assert call.done.wait(10), "the generation did not stop"
    assert isinstance(call.error, GenerationCancelled)
    assert len(call.pieces) < 64
    assert device.shell2(["pidof", MLCCHAT_PACKAGE]).returncode == 1
    assert d.info["currentPackageName"] == LAUNCHER_PACKAGE  # the u2 server still answers
    assert not d(text="Write a long story about a cat.").exists
    assert d(text="MLCChat", packageName=LAUNCHER_PACKAGE).exists

    # A cold start: the home page again, and the phone can generate again.
    recorder.delay = 0.0
    apps.mlcchat.max_tokens = 4
    open_chat(d)
    d(text="Input").set_text("Hi")
    d(description="send message").click()
    assert d(textStartsWith="prefill:").wait(timeout=TIMEOUT)


def test_docassist_end_to_end_with_resource_ids(
    d: u2.Device, device: adbutils.AdbDevice, recorder: Recorder
) -> None:
    d.app_start(DOCASSIST_PACKAGE, ".MainActivity")
    assert d(resourceId=RID + "status", text="idle").wait(timeout=10)
    assert d(resourceId=RID + "document").get_text() == "Document"  # the hint, while empty
    d(resourceId=RID + "document").set_text(DOCUMENT)
    d(resourceId=RID + "request").set_text("Summarize the given document.")
    d(resourceId=RID + "max_tokens").set_text("6")
    d(resourceId=RID + "run").click()
    assert d(resourceId=RID + "status", text="done").wait(timeout=TIMEOUT)

    stats_text = d(resourceId=RID + "stats").get_text()
    match = DOC_STATS_RE.fullmatch(stats_text)
    assert match, stats_text
    call = recorder.last()
    assert call.stats is not None and call.max_tokens == 6
    assert 1 <= call.stats.output_tokens <= 6
    assert call.messages == [
        ("system", DOCASSIST_SYSTEM_PROMPT),
        (
            "user",
            f"<document>\n{DOCUMENT}\n</document>\n\n"
            "<request>\nSummarize the given document.\n</request>",
        ),
    ]
    assert "<intent>: " in DOCASSIST_SYSTEM_PROMPT and "<response>" in DOCASSIST_SYSTEM_PROMPT
    prefill, decode = rates(call.stats)
    assert match.group(1, 2) == (f"{prefill:.1f}", f"{decode:.1f}")
    assert float(match.group(3)) > 0
    response = d(resourceId=RID + "response").get_text()
    assert response.strip() and response == call.stats.text
    assert d(resourceId=RID + "run").info["enabled"] is True
    # The app logs each generation, as a real app does, where logcat shows it.
    logged = device.shell(["logcat", "-d", "-s", "DocAssist", "-v", "tag"])
    assert f"I/DocAssist: generated {call.stats.output_tokens} tokens" in logged


def test_docassist_killed_mid_generation(
    d: u2.Device,
    device: adbutils.AdbDevice,
    virtual_s24: VirtualS24,
    recorder: Recorder,
) -> None:
    # Max tokens and the texts as launch extras, as a test harness would start it.
    result = device.shell2(
        [
            "am", "start", "-n", f"{DOCASSIST_PACKAGE}/.MainActivity",
            "--ei", "max_tokens", "48",
            "--es", "document", DOCUMENT,
            "--es", "request", "Suggest 3 questions about the document.",
        ]
    )  # fmt: skip
    assert result.returncode == 0 and "cmp=ai.devicelab.docassist/.MainActivity" in result.output
    assert d(resourceId=RID + "document", text=DOCUMENT).wait(timeout=10)
    assert d(resourceId=RID + "max_tokens").get_text() == "48"
    recorder.delay = 0.3
    d(resourceId=RID + "run").click()
    assert d(resourceId=RID + "status", text="generating").wait(timeout=TIMEOUT)
    wait_for(lambda: recorder.calls and recorder.last().pieces)
    assert d(resourceId=RID + "response", textMatches=r"(?s).+").wait(timeout=10)

    pid = int(device.shell(["pidof", DOCASSIST_PACKAGE]).strip())
    virtual_s24.kill_process(pid)  # the low-memory killer, not am force-stop
    call = recorder.last()
    assert call.done.wait(10), "the generation did not stop"
    assert isinstance(call.error, GenerationCancelled) and len(call.pieces) < 48
    assert d(packageName=LAUNCHER_PACKAGE, text="DocAssist").wait(timeout=10)
    assert d.info["currentPackageName"] == LAUNCHER_PACKAGE
    assert device.shell2(["pidof", DOCASSIST_PACKAGE]).returncode == 1

    # Launched again from its launcher icon: a fresh process with a fresh screen.
    d(text="DocAssist", packageName=LAUNCHER_PACKAGE).click()
    assert d(resourceId=RID + "status", text="idle").wait(timeout=10)
    assert d(resourceId=RID + "response").get_text() == ""
    new_pid = device.shell(["pidof", DOCASSIST_PACKAGE]).strip()
    assert new_pid.isdigit() and int(new_pid) != pid


def test_am_monkey_pm_dumpsys_and_input_see_the_apps(
    d: u2.Device, device: adbutils.AdbDevice
) -> None:
    third_party = device.shell(["pm", "list", "packages", "-3"]).split()
    assert third_party == [f"package:{DOCASSIST_PACKAGE}", f"package:{MLCCHAT_PACKAGE}"]
    assert d.app_info(DOCASSIST_PACKAGE)["versionName"] == "1.0"

    d.app_start(DOCASSIST_PACKAGE)  # no activity: monkey -p PKG -c ...LAUNCHER 1
    assert d.app_current()["package"] == DOCASSIST_PACKAGE
    assert DOCASSIST_PACKAGE in d.app_list_running()
    assert "mCurrentFocus=Window{" in device.shell(["dumpsys", "window", "windows"])
    ps = device.shell(["ps", "-A"])
    assert any(line.endswith(DOCASSIST_PACKAGE) for line in ps.splitlines())
    # Without the model loaded the app holds its ~40 MB runtime.
    assert 30 * 1024 < total_pss_kb(device, DOCASSIST_PACKAGE) < 60 * 1024

    device.shell(["input", "keyevent", "HOME"])  # the app keeps running behind the launcher
    assert d.app_current()["package"] == LAUNCHER_PACKAGE
    assert device.shell(["pidof", DOCASSIST_PACKAGE]).strip().isdigit()
    left, top, right, bottom = d(text="MLCChat", packageName=LAUNCHER_PACKAGE).bounds()
    device.shell(["input", "tap", str((left + right) // 2), str((top + bottom) // 2)])
    assert d(description="start chatting").wait(timeout=10)
    d.press("back")  # BACK on MLCChat's home leaves the app
    assert d.app_current()["package"] == LAUNCHER_PACKAGE

    failed = device.shell2(["am", "start", "-n", f"{MLCCHAT_PACKAGE}/.NoSuchActivity"])
    assert failed.returncode != 0 and "does not exist" in failed.output
    assert device.shell2(["monkey", "-p", "com.example.none", "1"]).returncode != 0
    d.app_stop(DOCASSIST_PACKAGE)
    assert device.shell2(["pidof", DOCASSIST_PACKAGE]).returncode == 1
    assert "No process found" in device.shell(["dumpsys", "meminfo", DOCASSIST_PACKAGE])


def test_a_long_prompt_stays_in_the_chat_above_its_answer(virtual_s24: VirtualS24) -> None:
    """Like a LazyColumn, a message taller than the list is clipped, not dropped."""
    from virtual_android.apps.mlcchat import MLCChatApp, _Message

    def no_model(dev: VirtualS24) -> RecordingLLM:
        raise AssertionError("no model is needed to lay out the chat")

    screen = screen_of(virtual_s24)
    app = MLCChatApp(virtual_s24, screen, no_model, 8)
    screen.register_app(app)
    app.launch(".MainActivity", {})
    prompt = "word " * 2000
    app.page, app.messages = "chat", [_Message("user", prompt), _Message("assistant", "Sure.")]
    window = screen.windows()[0]
    messages = next(n for n in window.root.walk() if n.scrollable)
    assert [n.text for n in messages.children] == [prompt, "Sure."]
    top, bottom = messages.bounds[1], messages.bounds[3]
    assert all(top <= n.bounds[1] < n.bounds[3] <= bottom for n in messages.children)
