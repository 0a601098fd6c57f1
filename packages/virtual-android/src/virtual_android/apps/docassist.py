"""DocAssist (`ai.devicelab.docassist/.MainActivity`), a classic View app with resource-ids that
runs the reference study's prompt."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..device import VirtualS24
from ..shell.shellio import CancelToken
from .llmapp import LLMApp, LLMFactory, rates, text_height
from .u2server import DeviceScreen
from .ui import Rect, UiNode

__all__ = [
    "DOCASSIST_PACKAGE",
    "DOCASSIST_SYSTEM_PROMPT",
    "DocAssistApp",
    "docassist_user_message",
]

DOCASSIST_PACKAGE = "ai.devicelab.docassist"

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

        response_height = text_height(self.response, max(1, (x1 - x0) // 22))
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
