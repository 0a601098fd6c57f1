"""Two apps with real inference on the virtual S24: MLCChat and DocAssist.

    install_uiautomator(dev)                       # u2server.py
    install_apps(dev)                              # models: inference.llm.DeviceLLM(dev)
    apps_of(dev).mlcchat.max_tokens = 8            # keep test generations short

Each app is a process while it runs (`pidof PKG`, `ps`, `dumpsys meminfo PKG`), is started by
`am start -n PKG/.MainActivity`, `monkey -p PKG -c android.intent.category.LAUNCHER 1` or a tap
on its launcher icon, and is stopped by `am force-stop PKG` or by killing its process. Its
screen is a `UiNode` tree the uiautomator2 server (u2server.py) renders and clicks.

- MLCChat (`ai.mlc.mlcchat/.MainActivity`) mirrors MLC-LLM's Jetpack Compose app: no
  resource-ids. Home: a row per model id with a `start chatting` button. Chat: a report text
  (`Initialize...`, `Ready to chat`, then `prefill: X tok/s, decode: Y tok/s` after each
  answer), the messages, an EditText showing `Input` when empty, and buttons described
  `send message` (enabled when the model is ready and not generating), `reset the chat` and
  `back home page`.
- DocAssist (`ai.devicelab.docassist/.MainActivity`) is a classic View app with resource-ids
  `ai.devicelab.docassist:id/{document,request,max_tokens,run,status,response,stats}`. Run
  builds the reference study's prompt, streams the answer into `response`, shows `status`
  (`idle`, `loading`, `generating`, `done`, `stopped`, `error: ...`) and `stats`
  (`prefill: X tok/s, decode: Y tok/s, ttft: Z s`). Max tokens come from the `max_tokens`
  field, the launch extra `--ei max_tokens N`, or `apps_of(dev).docassist.max_tokens`.

The apps reach the framework by attaching to its services (system/): their task stack to the
activity manager (`am`, `monkey`, `dumpsys activity|window` see it) and the screen to the input
manager (`input` taps, keys, swipes and text reach it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..device import VirtualS24
from ..shell.shellio import CancelToken, ShellCancelled
from ..system.activity import ActivityApp
from ..system.input import InputEvent
from ..system.packages import BROWSER_PACKAGE, Package
from .installed import InstalledApp, follow_package_manager
from .u2server import DeviceScreen, screen_of
from .ui import Rect, UiNode

log = logging.getLogger(__name__)

__all__ = [
    "DOCASSIST_PACKAGE",
    "DOCASSIST_SYSTEM_PROMPT",
    "MLCCHAT_PACKAGE",
    "ChatModel",
    "DocAssistApp",
    "GenerationStatsLike",
    "InstalledApps",
    "LLMFactory",
    "MLCChatApp",
    "apps_of",
    "docassist_user_message",
    "install_apps",
    "loaded_pss_kb",
    "rates",
]

MLCCHAT_PACKAGE = "ai.mlc.mlcchat"
DOCASSIST_PACKAGE = "ai.devicelab.docassist"
MAIN_ACTIVITY = ".MainActivity"
DEFAULT_MAX_TOKENS = 256  # what the reference study's demos allowed
_PREINSTALLED = 1_726_826_400.0  # 2024-09-20 10:00 UTC: the apps came with the phone's image
MLC_MODELS = ("SmolLM2-135M-Instruct-q4f16_1-MLC",)

# `dumpsys meminfo PKG` (commands.py) reports PSS as 0.62 x the process's RSS, so RSS is set
# to PSS / 0.62 to make it show the PSS an app really has.
_PSS_PER_RSS = 0.62
APP_BASE_PSS_KB = 40 * 1024  # the app's runtime without the model (Java heap, code, UI)
_FALLBACK_MODEL_KB = 90 * 1024  # SmolLM2-135M q4 weights, when the model cannot say

# The reference study's DocAssist prompt (same wording as the devicelab_docassist tasks; the
# app on the phone carries its own copy, as a real app would).
DOCASSIST_SYSTEM_PROMPT = (
    "You are DocAssist, an assistant that analyses documents. The user gives you a document "
    "and a request. First decide which task the request asks for: summarization, "
    "question_suggestion or question_answering. Reply with a first line "
    "'<intent>: TASK' naming that task, then give your answer inside "
    "<response>...</response>. Use only the information in the document."
)


def docassist_user_message(document: str, request: str) -> str:
    return f"<document>\n{document}\n</document>\n\n<request>\n{request}\n</request>"


# -- the inference interface (inference.llm.DeviceLLM satisfies it) ----------------------
class GenerationStatsLike(Protocol):
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def prefill_s(self) -> float: ...
    @property
    def decode_s(self) -> float: ...
    @property
    def text(self) -> str: ...


class ChatModel(Protocol):
    def chat(
        self,
        messages: list[tuple[str, str]],
        max_tokens: int,
        on_text: Callable[[str], None],
        cancel: CancelToken | None = None,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> GenerationStatsLike:
        """Stream a reply to `messages` through `on_text`; raise ShellCancelled (or a
        subclass) once `cancel` is set."""
        ...


LLMFactory = Callable[[VirtualS24], ChatModel]


def rates(stats: GenerationStatsLike) -> tuple[float, float]:
    """(prefill, decode) tok/s of one generation, as the project defines ITPS and OTPS.

    prefill_s is request -> first token and decode_s first -> last token, so the first
    output token belongs to the prefill and decode covers the other output_tokens - 1.
    """
    prefill = stats.prompt_tokens / stats.prefill_s if stats.prefill_s > 0 else 0.0
    decoded = stats.output_tokens - 1
    decode = decoded / stats.decode_s if decoded > 0 and stats.decode_s > 0 else 0.0
    return prefill, decode


def loaded_pss_kb(model: ChatModel) -> int:
    """The app's PSS with `model` loaded: the weights plus about 40 MB of runtime.

    DeviceLLM says it (`resident_kb()`: model file + its runtime overhead); for other models
    the file at `model_path` (or a SmolLM2-135M sized estimate) plus the app's base.
    """
    resident = getattr(model, "resident_kb", None)
    if callable(resident):
        value = resident()
        if isinstance(value, int) and value > 0:
            return value
    path = getattr(model, "model_path", None)
    if isinstance(path, (str, os.PathLike)):
        with contextlib.suppress(OSError):
            return os.path.getsize(path) // 1024 + APP_BASE_PSS_KB
    return _FALLBACK_MODEL_KB + APP_BASE_PSS_KB


def _rss_for_pss(pss_kb: int) -> int:
    return int(pss_kb / _PSS_PER_RSS) + 1


def _close_later(model: ChatModel) -> None:
    """Unload a model the app no longer holds, without blocking the caller.

    DeviceLLM.close() waits until the device's running generation has ended, which can take
    one more token after a kill; nobody needs to wait for that.
    """
    close = getattr(model, "close", None)
    if callable(close):
        threading.Thread(target=close, name="app-model-close", daemon=True).start()


# -- the app base ------------------------------------------------------------------------
class LLMApp:
    """An app process with a chat model: lifecycle, memory and cancellable generation.

    All state is guarded by the screen's lock (see DeviceScreen). Model loads and
    generations run in worker threads outside that lock; their callbacks take it briefly
    and check that the process they belong to is still the app's live process, so a killed
    app's late tokens fall on the floor.
    """

    package = ""
    label = ""
    main_activity = MAIN_ACTIVITY
    activities: tuple[str, ...] = (MAIN_ACTIVITY,)

    def __init__(
        self, device: VirtualS24, screen: DeviceScreen, llm_factory: LLMFactory, max_tokens: int
    ) -> None:
        self.device = device
        self.screen = screen
        self._factory = llm_factory
        self.max_tokens = max_tokens
        self.temperature = 0.0
        self.seed = 0
        self._pid: int | None = None
        self._model: ChatModel | None = None
        self._cancel: CancelToken | None = None
        self._worker: threading.Thread | None = None
        self.last_stats: GenerationStatsLike | None = None
        self.last_error: BaseException | None = None

    @property
    def lock(self) -> threading.RLock:
        return self.screen.lock

    @property
    def pid(self) -> int | None:
        with self.lock:
            return self._pid if self.running() else None

    # ScreenApp
    def running(self) -> bool:
        pid = self._pid
        return pid is not None and self.device.fs.exists(f"/proc/{pid}")

    def current_activity(self) -> str:
        return self.main_activity

    def launch(self, activity: str, extras: dict[str, str]) -> None:
        with self.lock:
            if not self.running():
                self._cold_start()
            self.apply_extras(extras)
            self.screen.bring_to_front(self.package)

    def back(self) -> bool:
        return False

    def render(self, area: Rect) -> UiNode:
        raise NotImplementedError

    # lifecycle
    def _cold_start(self) -> None:
        self._abandon_generation()
        self._drop_model()
        self.reset_state()
        self._pid = self.device.register_process(self.package)
        self.device.set_process_rss(self._pid, _rss_for_pss(APP_BASE_PSS_KB))

    def force_stop(self) -> None:
        """`am force-stop`: kill the process, drop the model and the UI state."""
        with self.lock:
            pid, self._pid = self._pid, None
            worker = self._abandon_generation()
            self._drop_model()
            self.reset_state()
            self.screen.remove(self.package)
        if pid is not None:
            self.device.kill_process(pid)
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=10)  # so the generation has stopped when am returns

    def _abandon_generation(self) -> threading.Thread | None:
        if self._cancel is not None:
            self._cancel.set()
        self._cancel = None
        worker, self._worker = self._worker, None
        return worker

    def _drop_model(self) -> None:
        model, self._model = self._model, None
        if model is not None:
            _close_later(model)

    def reset_state(self) -> None:
        """Back to the state of a freshly started process (override)."""

    def apply_extras(self, extras: dict[str, str]) -> None:
        value = extras.get("max_tokens", "")
        if value.isdigit() and int(value) > 0:
            self.max_tokens = int(value)

    @property
    def generating(self) -> bool:
        return self._cancel is not None

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    # model and generation
    def _load_model(self, pid: int) -> ChatModel | None:
        """Load the model for process `pid` (outside the lock); None when it died meanwhile."""
        with self.lock:
            if self._model is not None:
                return self._model
        model = self._factory(self.device)
        load = getattr(model, "load", None)
        if callable(load):
            load()
        with self.lock:
            if self._pid != pid or not self.running():
                _close_later(model)  # the process died while loading
                return None
            if self._model is None:
                self._model = model
                self.device.set_process_rss(pid, _rss_for_pss(loaded_pss_kb(model)))
            else:
                _close_later(model)
            return self._model

    def _start_worker(self, target: Callable[[CancelToken, int], None]) -> None:
        """Run `target(cancel, pid)` in a thread; cancel is set when the process dies."""
        assert self._pid is not None
        self._abandon_generation()  # one piece of work at a time per app
        cancel = CancelToken()
        pid = self._pid
        self._cancel = cancel

        def watch() -> None:
            # kill_process has no callback: poll the process table while the work runs.
            while not cancel.wait(0.05):
                if not self.running() or self._pid != pid:
                    cancel.set()

        def run() -> None:
            watcher = threading.Thread(target=watch, name=f"{self.package}-watch", daemon=True)
            watcher.start()
            try:
                target(cancel, pid)
            except ShellCancelled:
                pass  # stopped by the user, force-stop or a kill: the app already shows it
            except Exception as exc:  # the app shows it; the device keeps going
                log.exception("%s: generation failed", self.package)
                self.device.logs.write(
                    self.label, f"generation failed: {exc}", priority="E", pid=pid, uid="u0_a201"
                )
                with self.lock:
                    self.last_error = exc
                    if self._cancel is cancel:
                        self.on_error(exc)
            finally:
                with self.lock:
                    if self._cancel is cancel:
                        self._cancel = None
                        self._worker = None
                cancel.set()  # ends the watcher

        worker = threading.Thread(target=run, name=f"{self.package}-worker", daemon=True)
        self._worker = worker
        worker.start()

    def _generate(
        self,
        cancel: CancelToken,
        pid: int,
        messages: list[tuple[str, str]],
        on_text: Callable[[str], None],
        before: Callable[[], None] | None = None,
    ) -> GenerationStatsLike | None:
        """Load if needed, then stream a chat; None when cancelled or killed."""
        model = self._load_model(pid)
        if model is None or cancel.is_set():
            return None
        with self.lock:
            if self._cancel is not cancel:
                return None
            if before is not None:
                before()
            max_tokens = self.max_tokens

        def piece(text: str) -> None:
            with self.lock:
                if self._cancel is cancel and not cancel.is_set():
                    on_text(text)

        stats = model.chat(
            messages,
            max_tokens,
            piece,
            cancel=cancel,
            temperature=self.temperature,
            seed=self.seed,
        )
        with self.lock:
            if self._cancel is not cancel or cancel.is_set():
                return None
            self.last_stats = stats
        prefill, decode = rates(stats)
        self.device.logs.write(
            self.label,
            f"generated {stats.output_tokens} tokens for a {stats.prompt_tokens}-token prompt: "
            f"prefill {prefill:.1f} tok/s, decode {decode:.1f} tok/s",
            pid=pid,
            uid="u0_a201",
        )
        return stats

    def on_error(self, exc: BaseException) -> None:
        """Show a failed load or generation (override); called under the lock."""

    def cancel_generation(self) -> None:
        with self.lock:
            self._abandon_generation()


# -- MLCChat ---------------------------------------------------------------------------------
@dataclass
class _Message:
    role: str  # "user" | "assistant"
    text: str


class MLCChatApp(LLMApp):
    """MLC-LLM's Android app (Jetpack Compose: match text and content-desc)."""

    package = MLCCHAT_PACKAGE
    label = "MLCChat"

    def __init__(
        self,
        device: VirtualS24,
        screen: DeviceScreen,
        llm_factory: LLMFactory,
        max_tokens: int,
        models: tuple[str, ...] = MLC_MODELS,
    ) -> None:
        super().__init__(device, screen, llm_factory, max_tokens)
        self.models = models
        self.reset_state()

    def reset_state(self) -> None:
        self.page = "home"
        self.model_id = ""
        self.report = ""
        self.ready = False
        self.input = ""
        self.messages: list[_Message] = []

    def back(self) -> bool:
        with self.lock:
            if self.page == "chat":
                self._back_home()
                return True
            return False

    @property
    def chatable(self) -> bool:
        return self.ready and not self.generating

    # actions
    def _open_chat(self, model_id: str) -> None:
        self.page = "chat"
        if self.model_id == model_id and (self.ready or self.generating):
            return  # loaded, or still loading
        self.model_id = model_id
        self.messages = []
        self.ready = False
        self.report = "Initialize..."
        self.screen.show_toast("Initialize...", package=self.package)
        self._start_worker(self._initialize)

    def _initialize(self, cancel: CancelToken, pid: int) -> None:
        model = self._load_model(pid)
        with self.lock:
            if model is None or self._cancel is not cancel:
                return
            self.ready = True
            self.report = "Ready to chat"
            self.screen.show_toast("Ready to chat", package=self.package)

    def _send(self) -> None:
        text = self.input
        if not self.chatable or not text.strip():
            return
        self.messages.append(_Message("user", text))
        history = [(m.role, m.text) for m in self.messages]
        reply = _Message("assistant", "")
        self.messages.append(reply)
        self.input = ""

        def run(cancel: CancelToken, pid: int) -> None:
            def grow(piece: str) -> None:
                reply.text += piece

            stats = self._generate(cancel, pid, history, grow)
            if stats is None:
                return
            with self.lock:
                if self._cancel is not cancel:
                    return
                if stats.text and not reply.text:
                    reply.text = stats.text
                prefill, decode = rates(stats)
                self.report = f"prefill: {prefill:.1f} tok/s, decode: {decode:.1f} tok/s"

        self._start_worker(run)

    def _reset_chat(self) -> None:
        self.messages = []
        if not self.ready and self.generating:
            return  # still initializing: the load goes on
        self._abandon_generation()
        if self.model_loaded:
            self.ready = True
            self.report = "Ready to chat"
        else:  # the last load failed: try again
            self._open_chat(self.model_id)

    def _back_home(self) -> None:
        # The model stays loaded; an answer in progress is stopped.
        if self.generating and self.ready:
            self._abandon_generation()
        self.page = "home"

    def _set_input(self, text: str) -> None:
        self.input = text

    def on_error(self, exc: BaseException) -> None:
        self.report = f"Error: {exc}"
        self.ready = self.model_loaded

    # screen
    def render(self, area: Rect) -> UiNode:
        root = UiNode("androidx.compose.ui.platform.ComposeView", area)
        content = UiNode("android.view.View", area)
        root.children.append(content)
        if self.page == "home":
            content.children = self._home(area)
        else:
            content.children = self._chat(area)
        return root

    def _home(self, area: Rect) -> list[UiNode]:
        left, top, right, _ = area
        nodes = [
            UiNode(
                "android.widget.TextView",
                (left + 40, top + 30, right - 40, top + 130),
                text="MLCChat",
            )
        ]
        for i, model_id in enumerate(self.models):
            y = top + 180 + i * 180
            nodes.append(
                UiNode(
                    "android.view.View",
                    (left, y, right, y + 160),
                    children=[
                        UiNode(
                            "android.widget.TextView",
                            (left + 40, y + 40, right - 220, y + 120),
                            text=model_id,
                        ),
                        UiNode(
                            "android.widget.Button",
                            (right - 180, y + 20, right - 40, y + 140),
                            content_desc="start chatting",
                            clickable=True,
                            focusable=True,
                            on_click=self._opener(model_id),
                        ),
                    ],
                )
            )
        return nodes

    def _chat(self, area: Rect) -> list[UiNode]:
        left, top, right, bottom = area
        bar = UiNode(
            "android.view.View",
            (left, top, right, top + 150),
            children=[
                UiNode(
                    "android.widget.Button",
                    (left + 20, top + 20, left + 140, top + 130),
                    content_desc="back home page",
                    clickable=True,
                    focusable=True,
                    on_click=self._back_home,
                ),
                UiNode(
                    "android.widget.TextView",
                    (left + 160, top + 30, right - 160, top + 120),
                    text=f"MLCChat: {self.model_id}",
                ),
                UiNode(
                    "android.widget.Button",
                    (right - 140, top + 20, right - 20, top + 130),
                    content_desc="reset the chat",
                    clickable=True,
                    focusable=True,
                    on_click=self._reset_chat,
                ),
            ],
        )
        nodes = [bar]
        report_box = (left + 40, top + 160, right - 40, top + 230)
        nodes.append(UiNode("android.widget.TextView", report_box, text=self.report))
        input_top = bottom - 240
        messages_box = (left, top + 240, right, input_top - 20)
        nodes.append(
            UiNode(
                "android.view.View",
                messages_box,
                scrollable=True,
                key="messages",
                children=_message_nodes(self.messages, messages_box),
            )
        )
        shown = self.input or "Input"
        nodes.append(
            UiNode(
                "android.widget.EditText",
                (left + 40, input_top, right - 200, bottom - 40),
                text=shown,
                hint="Input",
                clickable=True,
                focusable=True,
                long_clickable=True,
                key="input",
                on_text=self._set_input,
            )
        )
        nodes.append(
            UiNode(
                "android.widget.Button",
                (right - 180, input_top, right - 40, bottom - 40),
                content_desc="send message",
                clickable=True,
                focusable=True,
                enabled=self.chatable,
                on_click=self._send,
            )
        )
        return nodes

    def _opener(self, model_id: str) -> Callable[[], None]:
        def open_chat() -> None:
            self._open_chat(model_id)

        return open_chat


def _text_height(text: str, chars_per_line: int) -> int:
    lines = sum(max(1, -(-len(line) // chars_per_line)) for line in text.split("\n"))
    return 40 + 56 * lines


def _message_nodes(messages: list[_Message], box: Rect) -> list[UiNode]:
    """Every message, laid out bottom-aligned as the list follows the conversation.

    Older messages lie above the list: the screen clips them away until the list is
    scrolled back (a message only partly inside stays, clipped, as in a LazyColumn).
    """
    left, _top, right, bottom = box
    nodes: list[UiNode] = []
    y = bottom
    for message in reversed(messages):
        height = _text_height(message.text, 36)
        x0, x1 = (left + 200, right - 40) if message.role == "user" else (left + 40, right - 200)
        nodes.append(UiNode("android.widget.TextView", (x0, y - height, x1, y), text=message.text))
        y -= height + 20
    nodes.reverse()
    return nodes


# -- DocAssist ---------------------------------------------------------------------------------
class DocAssistApp(LLMApp):
    """A document assistant in the reference study's prompt layout (View app, resource-ids)."""

    package = DOCASSIST_PACKAGE
    label = "DocAssist"

    def __init__(
        self, device: VirtualS24, screen: DeviceScreen, llm_factory: LLMFactory, max_tokens: int
    ) -> None:
        super().__init__(device, screen, llm_factory, max_tokens)
        self.reset_state()

    def rid(self, name: str) -> str:
        return f"{self.package}:id/{name}"

    def reset_state(self) -> None:
        self.document = ""
        self.request = ""
        self.max_tokens_field = ""
        self.status = "idle"
        self.response = ""
        self.stats = ""

    def apply_extras(self, extras: dict[str, str]) -> None:
        super().apply_extras(extras)
        if "document" in extras:
            self.document = extras["document"]
        if "request" in extras:
            self.request = extras["request"]

    def messages(self) -> list[tuple[str, str]]:
        return [
            ("system", DOCASSIST_SYSTEM_PROMPT),
            ("user", docassist_user_message(self.document, self.request)),
        ]

    def _run(self) -> None:
        if self.generating:
            return
        field = self.max_tokens_field.strip()
        if field.isdigit() and int(field) > 0:
            self.max_tokens = int(field)
        messages = self.messages()
        self.response = ""
        self.stats = ""
        self.status = "generating" if self.model_loaded else "loading"
        timing: dict[str, float] = {}

        def grow(piece: str) -> None:
            if "first" not in timing:
                timing["first"] = time.perf_counter()
            self.response += piece

        def started() -> None:
            self.status = "generating"
            timing["sent"] = time.perf_counter()

        def run(cancel: CancelToken, pid: int) -> None:
            stats = self._generate(cancel, pid, messages, grow, before=started)
            if stats is None:
                return
            with self.lock:
                if self._cancel is not cancel:
                    return
                if stats.text:
                    self.response = stats.text
                prefill, decode = rates(stats)
                sent = timing.get("sent", 0.0)
                ttft = timing.get("first", sent + stats.prefill_s) - sent
                self.stats = (
                    f"prefill: {prefill:.1f} tok/s, decode: {decode:.1f} tok/s, ttft: {ttft:.2f} s"
                )
                self.status = "done"

        self._start_worker(run)

    def _stop(self) -> None:
        if self.generating:
            self._abandon_generation()
            self.status = "stopped"

    def on_error(self, exc: BaseException) -> None:
        self.status = f"error: {exc}"

    def _setter(self, name: str) -> Callable[[str], None]:
        def set_value(text: str) -> None:
            setattr(self, name, text)

        return set_value

    def render(self, area: Rect) -> UiNode:
        left, top, right, bottom = area
        x0, x1 = left + 40, right - 40

        def edit(name: str, attr: str, hint: str, box: Rect) -> UiNode:
            value: str = getattr(self, attr)
            return UiNode(
                "android.widget.EditText",
                box,
                text=value or hint,
                hint=hint,
                resource_id=self.rid(name),
                clickable=True,
                focusable=True,
                long_clickable=True,
                enabled=not self.generating,
                key=name,
                on_text=self._setter(attr),
            )

        response_height = _text_height(self.response, max(1, (x1 - x0) // 22))
        field_value = self.max_tokens_field or str(self.max_tokens)
        max_field = edit(
            "max_tokens", "max_tokens_field", "Max tokens", (x0, top + 760, left + 520, top + 860)
        )
        max_field.text = field_value
        button = UiNode(
            "android.widget.Button",
            (left + 560, top + 760, x1, top + 860),
            text="Stop" if self.generating else "Run",
            resource_id=self.rid("run"),
            clickable=True,
            focusable=True,
            on_click=self._stop if self.generating else self._run,
        )
        children = [
            UiNode(
                "android.widget.TextView",
                (x0, top + 20, x1, top + 120),
                text="DocAssist",
                resource_id=self.rid("title"),
            ),
            edit("document", "document", "Document", (x0, top + 140, x1, top + 540)),
            edit("request", "request", "Request", (x0, top + 560, x1, top + 740)),
            max_field,
            button,
            UiNode(
                "android.widget.TextView",
                (x0, top + 880, x1, top + 960),
                text=self.status,
                resource_id=self.rid("status"),
            ),
            UiNode(
                "android.widget.TextView",
                (x0, top + 970, x1, top + 1050),
                text=self.stats,
                resource_id=self.rid("stats"),
            ),
            UiNode(
                "android.widget.ScrollView",
                (x0, top + 1070, x1, bottom - 40),
                scrollable=True,
                key="response_scroll",
                children=[
                    UiNode(
                        "android.widget.TextView",
                        # As tall as its text: the ScrollView shows a window onto it.
                        (
                            x0,
                            top + 1070,
                            x1,
                            top + 1070 + max(bottom - 40 - top - 1070, response_height),
                        ),
                        text=self.response,
                        resource_id=self.rid("response"),
                    )
                ],
            ),
        ]
        content = UiNode(
            "android.widget.LinearLayout",
            area,
            resource_id=self.rid("content"),
            children=children,
        )
        return UiNode("android.widget.FrameLayout", area, children=[content])


# -- the installed apps ---------------------------------------------------------------------------
@dataclass
class InstalledApps:
    mlcchat: MLCChatApp
    docassist: DocAssistApp

    def all(self) -> list[LLMApp]:
        return [self.mlcchat, self.docassist]


_INSTALLED: weakref.WeakKeyDictionary[VirtualS24, InstalledApps] = weakref.WeakKeyDictionary()


def apps_of(dev: VirtualS24) -> InstalledApps:
    """The apps install_apps put on `dev` (to set max_tokens, temperature, read last_stats)."""
    apps = _INSTALLED.get(dev)
    if apps is None:
        raise LookupError(f"no apps installed on {dev!r}: call install_apps(dev, llm_factory)")
    return apps


def install_apps(
    dev: VirtualS24,
    llm_factory: LLMFactory | None = None,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> None:
    """Install MLCChat and DocAssist, attached to the activity and input managers.

    `llm_factory(dev)` makes the model an app process loads (default: inference.DeviceLLM,
    one per process, as each app on a phone loads its own copy of the weights).
    """
    if dev in _INSTALLED:
        raise ValueError(f"apps are already installed on {dev!r}")
    if llm_factory is None:
        from ..inference.llm import DeviceLLM

        llm_factory = DeviceLLM
    screen = screen_of(dev)
    apps = InstalledApps(
        MLCChatApp(dev, screen, llm_factory, max_tokens),
        DocAssistApp(dev, screen, llm_factory, max_tokens),
    )
    for app in apps.all():
        screen.register_app(app)
        dev.packages.register(
            Package(
                app.package,
                activities=tuple(app.package + a for a in app.activities),
                launcher_activity=app.package + app.main_activity,
                permissions=("android.permission.INTERNET",),
                label=app.label,
                first_install=_PREINSTALLED,
                last_update=_PREINSTALLED,
            )
        )
    follow_package_manager(dev, screen)
    browser = dev.packages.get(BROWSER_PACKAGE)
    if browser is not None and screen.app(BROWSER_PACKAGE) is None:
        screen.register_app(InstalledApp(dev, screen, browser))
    _INSTALLED[dev] = apps

    def stop_everything() -> None:  # the phone goes down: every app process ends
        for app in screen.apps():
            if isinstance(app, (LLMApp, InstalledApp)):
                app.force_stop()

    dev.on_reboot(stop_everything)
    dev.activity.attach(_TaskStack(screen))
    dev.input.on_event(_screen_reacts(screen))


_POWER_KEYS = (26, 223, 224)  # POWER, SLEEP, WAKEUP: the power manager's, not the screen's


def _screen_reacts(screen: DeviceScreen) -> Callable[[InputEvent], None]:
    """What an injected event does to the apps' screen."""

    def react(event: InputEvent) -> None:
        if event.kind == "tap":
            screen.tap(float(event.args[0]), float(event.args[1]))
        elif event.kind == "keyevent" and int(event.args[0]) not in _POWER_KEYS:
            screen.press_key(int(event.args[0]))
        elif event.kind == "motionevent":
            action, x, y = event.args[:3]
            screen.touch(int(action), float(x), float(y))
        elif event.kind in ("swipe", "draganddrop"):
            x1, y1, x2, y2 = (float(v) for v in event.args[:4])
            screen.swipe(x1, y1, x2, y2)
        elif event.kind == "text":
            screen.type_text(str(event.args[0]))

    return react


class _TaskStack:
    """The screen's apps as the activity manager sees them (system/activity.py's ActivityHost):
    only apps with activities, LLM apps and installed packages."""

    def __init__(self, screen: DeviceScreen) -> None:
        self._screen = screen

    def app(self, package: str) -> LLMApp | InstalledApp | None:
        app = self._screen.app(package)
        return app if isinstance(app, (LLMApp, InstalledApp)) else None

    def apps(self) -> list[ActivityApp]:
        return [a for a in self._screen.apps() if isinstance(a, (LLMApp, InstalledApp))]

    def top_app(self) -> LLMApp | InstalledApp | None:
        app = self._screen.top_app()
        return app if isinstance(app, (LLMApp, InstalledApp)) else None

    def launch(self, app: ActivityApp, activity: str, extras: dict[str, str], data: str) -> None:
        if isinstance(app, InstalledApp):
            app.data = data  # a browser's address bar
        if isinstance(app, (LLMApp, InstalledApp)):
            app.launch(activity, extras)
