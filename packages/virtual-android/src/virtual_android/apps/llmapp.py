"""The part every LLM app on the phone shares: the chat model it loads (ChatModel, what
inference.llm.DeviceLLM satisfies), its process and memory, and cancellable generation."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Protocol

from ..device import VirtualS24
from ..shell.shellio import CancelToken, ShellCancelled
from .process import AppProcess
from .u2server import DeviceScreen
from .ui import Rect, UiNode

log = logging.getLogger(__name__)

__all__ = [
    "APP_BASE_PSS_KB",
    "DEFAULT_MAX_TOKENS",
    "MAIN_ACTIVITY",
    "ChatModel",
    "GenerationStatsLike",
    "LLMApp",
    "LLMFactory",
    "loaded_pss_kb",
    "rates",
    "text_height",
]

MAIN_ACTIVITY = ".MainActivity"
DEFAULT_MAX_TOKENS = 256  # what the reference study's demos allowed

# `dumpsys meminfo PKG` (commands.py) reports PSS as 0.62 x the process's RSS, so RSS is set
# to PSS / 0.62 to make it show the PSS an app really has.
_PSS_PER_RSS = 0.62
APP_BASE_PSS_KB = 40 * 1024  # the app's runtime without the model (Java heap, code, UI)
_FALLBACK_MODEL_KB = 90 * 1024  # SmolLM2-135M q4 weights, when the model cannot say


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
        *,
        owner: int | None = None,
    ) -> GenerationStatsLike:
        """Stream a reply to `messages` through `on_text`; raise ShellCancelled (or a
        subclass) once `cancel` is set. `owner` is the app process doing the work: its
        /proc/PID/stat counts the CPU time, as a real phone charges an app's inference."""
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
class LLMApp(AppProcess):
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

    # ScreenApp
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
            owner=pid,
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


def text_height(text: str, chars_per_line: int) -> int:
    """The height of a TextView showing ``text`` at ``chars_per_line``."""
    lines = sum(max(1, -(-len(line) // chars_per_line)) for line in text.split("\n"))
    return 40 + 56 * lines
