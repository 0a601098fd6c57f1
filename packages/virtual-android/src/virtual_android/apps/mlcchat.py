"""MLCChat (`ai.mlc.mlcchat/.MainActivity`), MLC-LLM's Jetpack Compose app: no resource-ids; a
row per model id with a `start chatting` button, then the chat."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..device import VirtualS24
from ..shell.shellio import CancelToken
from .llmapp import LLMApp, LLMFactory, rates, text_height
from .u2server import DeviceScreen
from .ui import Rect, UiNode

__all__ = ["MLCCHAT_PACKAGE", "MLC_MODELS", "MLCChatApp"]

MLCCHAT_PACKAGE = "ai.mlc.mlcchat"
MLC_MODELS = ("SmolLM2-135M-Instruct-q4f16_1-MLC",)


@dataclass
class _Message:
    role: str  # "user" | "assistant"
    text: str


def _icon_button(
    box: Rect, description: str, on_click: Callable[[], None], enabled: bool = True
) -> UiNode:
    """A Compose IconButton: no text, found by its content description."""
    return UiNode(
        "android.widget.Button",
        box,
        content_desc=description,
        clickable=True,
        focusable=True,
        enabled=enabled,
        on_click=on_click,
    )


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
                        _icon_button(
                            (right - 180, y + 20, right - 40, y + 140),
                            "start chatting",
                            self._opener(model_id),
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
                _icon_button(
                    (left + 20, top + 20, left + 140, top + 130), "back home page", self._back_home
                ),
                UiNode(
                    "android.widget.TextView",
                    (left + 160, top + 30, right - 160, top + 120),
                    text=f"MLCChat: {self.model_id}",
                ),
                _icon_button(
                    (right - 140, top + 20, right - 20, top + 130),
                    "reset the chat",
                    self._reset_chat,
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
            _icon_button(
                (right - 180, input_top, right - 40, bottom - 40),
                "send message",
                self._send,
                enabled=self.chatable,
            )
        )
        return nodes

    def _opener(self, model_id: str) -> Callable[[], None]:
        def open_chat() -> None:
            self._open_chat(model_id)

        return open_chat


def _message_nodes(messages: list[_Message], box: Rect) -> list[UiNode]:
    """Every message, laid out bottom-aligned as the list follows the conversation.

    Older messages lie above the list: the screen clips them away until the list is
    scrolled back (a message only partly inside stays, clipped, as in a LazyColumn).
    """
    left, _top, right, bottom = box
    nodes: list[UiNode] = []
    y = bottom
    for message in reversed(messages):
        height = text_height(message.text, 36)
        x0, x1 = (left + 200, right - 40) if message.role == "user" else (left + 40, right - 200)
        nodes.append(UiNode("android.widget.TextView", (x0, y - height, x1, y), text=message.text))
        y -= height + 20
    nodes.reverse()
    return nodes
