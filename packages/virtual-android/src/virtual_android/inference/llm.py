"""Real inference inside the virtual phone: a model run by a :class:`.backend.TextBackend`.

The phone's "NPU" is the host: :class:`DeviceLLM` hands the model to the backend the device
was given (:func:`.backend.use_backend`) and adds what the phone sees while a generation runs:

- one generation at a time per device (a phone runs one model): a per-device lock, shared by
  every :class:`DeviceLLM` of that device;
- heat: the device's thermal model gets ``add_work`` at intensity 1.0, in 0.1 s steps while the
  host computes, so telemetry sampled during a long prefill already sees the zones warm up;
- memory: the emulated process running the model (``pid=``) gets an RSS of the model file plus
  :data:`RUNTIME_OVERHEAD_KB` (KV cache, compute buffers, the runtime).

The backend runs in a worker thread and text pieces are handed to ``on_text`` in the caller's
thread. That is what makes cancelling prompt: llama.cpp cannot be interrupted inside one decode
(a whole prefill is one), so on cancel the caller returns at once with
:class:`GenerationCancelled` while the worker stops at its next token and only then frees the
phone for the next generation.

A GGUF pushed to the virtual filesystem is materialised to a host temp file once per content
checksum (:func:`materialize_gguf`), so what the user pushed is exactly what runs.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import queue
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..device import VirtualS24
from ..errors import VirtualAndroidError
from ..shell.shellio import CancelToken, ShellCancelled
from .backend import (
    BackendFactory,
    BackendResult,
    ChatMessage,
    Role,
    TextBackend,
    TextRequest,
)

__all__ = [
    "RUNTIME_OVERHEAD_KB",
    "DeviceLLM",
    "GenerationCancelled",
    "GenerationStats",
    "NoBackendError",
    "NotGGUFError",
    "backend_factory",
    "default_threads",
    "materialize_gguf",
    "release_llms",
    "shared_llm",
    "use_backend",
]

GGUF_MAGIC = b"GGUF"
DEFAULT_N_CTX = 4096
# What a llama.cpp process holds beyond its mmapped weights: the KV cells it has touched, the
# compute buffers and the runtime's heap (a rounded figure for a small model and short context).
RUNTIME_OVERHEAD_KB = 40 * 1024
HEAT_INTENSITY = 1.0
HEAT_PERIOD_S = 0.1
_POLL_S = 0.05


def default_threads() -> int:
    """Host threads for the phone's model: half the host's cores, 1 to 4.

    The virtual phone shares the host with its own adb transport, shell and telemetry threads
    (and often with a test run): llama.cpp's threads wait for each other at every barrier, so
    one descheduled thread stalls them all, and oversubscribing a small host made decoding 20x
    slower in practice.
    """
    return max(1, min(4, (os.cpu_count() or 2) // 2))


# Models kept loaded per device by shared_llm(); llama-cli on a phone loads per run, so a small
# cache only saves the host's time, and memory matters more (each engine holds its weights).
_SHARED_PER_DEVICE = 2

_ROLES: dict[str, Role] = {"system": "system", "user": "user", "assistant": "assistant"}


class GenerationCancelled(ShellCancelled):
    """The generation was cancelled (the client closed the stream, the process was killed).

    A :class:`ShellCancelled`, so an emulated command can let it propagate and the shell
    unwinds exactly as for any other cancelled command.
    """


class NotGGUFError(VirtualAndroidError, ValueError):
    """The bytes are not a GGUF model (they do not start with the ``GGUF`` magic)."""

    def __init__(self, magic: bytes) -> None:
        super().__init__(f"not a GGUF file (magic {magic!r}, expected b'GGUF')")
        self.magic = magic


@dataclass
class GenerationStats:
    """One generation as the host saw it.

    ``prefill_s`` is request -> first token and ``decode_s`` first -> last token, both on the
    host's clock; ``engine_timings`` are the backend's own counters (``prefill_ms``,
    ``prefill_tokens``, ``decode_ms``, ``decode_tokens``, ...). ``finish_reason`` is ``"stop"``
    when the model emitted end-of-generation (that token is not counted or shown) and
    ``"length"`` when ``max_tokens`` ran out.
    """

    prompt_tokens: int
    output_tokens: int
    prefill_s: float
    decode_s: float
    text: str
    engine_timings: dict[str, float]
    finish_reason: str = "length"


# -- the backend each device runs its models on ---------------------------------------------
class NoBackendError(VirtualAndroidError, RuntimeError):
    """The phone was asked to run a model but has no backend to run it on."""


_FACTORY_LOCK = threading.Lock()
_FACTORIES: weakref.WeakKeyDictionary[VirtualS24, BackendFactory] = weakref.WeakKeyDictionary()


def use_backend(device: VirtualS24, factory: BackendFactory) -> None:
    """Run ``device``'s models (its apps', its llama-cli's) on backends made by ``factory``."""
    with _FACTORY_LOCK:
        _FACTORIES[device] = factory


def backend_factory(device: VirtualS24) -> BackendFactory:
    """The factory given to ``device``; else llama-cpp-python's if it is installed."""
    with _FACTORY_LOCK:
        factory = _FACTORIES.get(device)
    if factory is not None:
        return factory
    from .llama_cpp_backend import LlamaCppBackend, llama_cpp_available

    if not llama_cpp_available():
        raise NoBackendError(
            "this virtual phone has no text-generation backend: install one with "
            "pip install 'virtual-android[llm]' (llama-cpp-python), or pass your own to "
            "make_phone(backend=...) / use_backend(device, factory)"
        )
    return LlamaCppBackend


# -- per-device state -------------------------------------------------------------------------
_STATE_LOCK = threading.Lock()
_DEVICE_LOCKS: weakref.WeakKeyDictionary[VirtualS24, threading.Lock] = weakref.WeakKeyDictionary()
_SHARED: weakref.WeakKeyDictionary[VirtualS24, dict[Path | None, DeviceLLM]] = (
    weakref.WeakKeyDictionary()
)


def _device_lock(device: VirtualS24) -> threading.Lock:
    # A plain Lock, not an RLock: the worker thread that finishes a generation releases the
    # lock that the calling thread acquired.
    with _STATE_LOCK:
        lock = _DEVICE_LOCKS.get(device)
        if lock is None:
            lock = _DEVICE_LOCKS[device] = threading.Lock()
        return lock


def shared_llm(device: VirtualS24, model_path: Path | None = None) -> DeviceLLM:
    """The device's shared, loaded :class:`DeviceLLM` for ``model_path`` (None: the default).

    Emulated tools use this so repeated runs reuse the loaded engine. The least recently used
    model is unloaded when more than two are in use on one device; a model that fails to load
    is not kept (the error propagates).
    """
    key = Path(model_path).resolve() if model_path is not None else None
    evicted: list[DeviceLLM] = []
    with _STATE_LOCK:
        models = _SHARED.setdefault(device, {})
        llm = models.pop(key, None)
        if llm is None:
            llm = DeviceLLM(device, model_path)
        models[key] = llm  # re-inserted last: dicts keep insertion order, so this is LRU
        while len(models) > _SHARED_PER_DEVICE:
            oldest = next(iter(models))
            evicted.append(models.pop(oldest))
    for old in evicted:
        old.close()  # outside _STATE_LOCK: close() waits for the device to be idle
    try:
        llm.load()
    except BaseException:
        with _STATE_LOCK:
            models = _SHARED.get(device, {})
            if models.get(key) is llm:
                del models[key]
        raise
    return llm


def release_llms(device: VirtualS24) -> None:
    """Unload every shared model of ``device`` (waits for a running generation to end)."""
    with _STATE_LOCK:
        models = _SHARED.pop(device, {})
    for llm in models.values():
        llm.close()


# -- pushed models ----------------------------------------------------------------------------
_MATERIALIZE_LOCK = threading.Lock()
_cache_dir: Path | None = None


def _materialized_dir() -> Path:
    global _cache_dir
    if _cache_dir is None:
        _cache_dir = Path(tempfile.mkdtemp(prefix="virtual-android-gguf-"))
        atexit.register(shutil.rmtree, _cache_dir, True)
    return _cache_dir


def materialize_gguf(data: bytes) -> Path:
    """A host file holding exactly ``data``, written once per content checksum.

    Raises :class:`NotGGUFError` when ``data`` does not start with the GGUF magic: llama.cpp
    would refuse it, and the host engine must never be handed arbitrary bytes.
    """
    if data[:4] != GGUF_MAGIC:
        raise NotGGUFError(bytes(data[:4]))
    digest = hashlib.sha256(data).hexdigest()
    with _MATERIALIZE_LOCK:
        path = _materialized_dir() / f"{digest}.gguf"
        if not path.exists():
            partial = path.with_suffix(".part")
            partial.write_bytes(data)
            os.replace(partial, path)  # a reader never sees a half-written model
    return path


# -- the backend ------------------------------------------------------------------------------
def _messages(pairs: Sequence[tuple[str, str]]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for role, content in pairs:
        checked = _ROLES.get(role)
        if checked is None:
            raise ValueError(f"unknown role {role!r}: use system, user or assistant")
        out.append(ChatMessage(checked, content))
    return out


class _Stopped(VirtualAndroidError):
    """Raised inside the engine's loop to end a generation nobody waits for any more."""


class _Relay:
    """A :class:`.backend.TokenSink` that keeps the generation's clock, hands each decoded
    piece to the waiting caller and stops the backend when told to."""

    def __init__(self, events: queue.Queue[tuple[str, object]], stop: threading.Event) -> None:
        self._events = events
        self._stop = stop
        self.t_sent: float | None = None
        self.token_times: list[float] = []

    def sent(self) -> None:
        self.t_sent = time.perf_counter()

    def token(self, text: str) -> None:
        if self._stop.is_set():
            raise _Stopped()
        now = time.perf_counter()
        if self.t_sent is None:
            self.t_sent = now
        self.token_times.append(now)
        if text:
            self._events.put(("text", text))


@contextlib.contextmanager
def _heating(device: VirtualS24, intensity: float, pid: int | None = None) -> Iterator[None]:
    """Feeds the device's thermal model while the host computes, in small real-time steps;
    the work is counted to process ``pid`` (its /proc/PID/stat)."""
    done = threading.Event()
    last = time.monotonic()

    def step() -> None:
        nonlocal last
        now = time.monotonic()
        device.add_work(now - last, intensity, pid)
        last = now

    def run() -> None:
        while not done.wait(HEAT_PERIOD_S):
            step()

    thread = threading.Thread(target=run, name="virtual-s24-heat", daemon=True)
    last = time.monotonic()
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        step()  # the last partial period


class DeviceLLM:
    """A model the virtual phone runs, for real, on the backend the device was given.

    ``model_path`` None means the backend's default model. ``backend`` overrides the device's
    factory (:func:`.backend.backend_factory`). The model loads lazily, once, and is reused;
    :meth:`close` unloads it (a later call loads it again).
    """

    def __init__(
        self,
        device: VirtualS24,
        model_path: Path | None = None,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        threads: int | None = None,
        backend: BackendFactory | None = None,
    ) -> None:
        self.device = device
        self.n_ctx = n_ctx
        self.threads = threads if threads is not None else default_threads()
        factory = backend if backend is not None else backend_factory(device)
        self._backend: TextBackend = factory(model_path, n_ctx=self.n_ctx, threads=self.threads)
        self.model_path: Path = self._backend.model_path
        self._loaded_flag = False
        self._load_lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._loaded_flag

    def load(self) -> float:
        """Load the model if needed; returns the seconds spent loading now (0.0 if loaded)."""
        with self._load_lock:
            if self._loaded_flag:
                return 0.0
            start = time.perf_counter()
            self._backend.load()
            self._loaded_flag = True
            return time.perf_counter() - start

    def _loaded(self) -> TextBackend:
        self.load()
        return self._backend

    def close(self) -> None:
        """Unload the model, after any generation running on the device has ended."""
        with _device_lock(self.device), self._load_lock:
            was_loaded, self._loaded_flag = self._loaded_flag, False
        if was_loaded:
            self._backend.close()

    # -- facts about the model -------------------------------------------------------------
    def resident_kb(self) -> int:
        """What the process running this model holds in RAM: the weights plus the runtime."""
        return self.model_path.stat().st_size // 1024 + RUNTIME_OVERHEAD_KB

    def context_window(self) -> int:
        return self._loaded().context_window()

    def tokenize(self, text: str) -> list[int]:
        """The model's tokens for ``text``, without special tokens or chat template."""
        return self._loaded().tokenize(text)

    def prompt_tokens(self, messages: Sequence[tuple[str, str]]) -> int:
        """How many tokens ``messages`` take once the model's chat template is applied."""
        return self._loaded().prompt_tokens(_messages(messages))

    # -- generation ------------------------------------------------------------------------
    def chat(
        self,
        messages: list[tuple[str, str]],
        max_tokens: int,
        on_text: Callable[[str], None],
        cancel: CancelToken | None = None,
        temperature: float = 0.0,
        seed: int = 0,
        *,
        pid: int | None = None,
        owner: int | None = None,
    ) -> GenerationStats:
        """Generate a reply to ``messages`` ((role, content) pairs), streaming to ``on_text``.

        ``on_text`` gets each decoded piece as it is generated, in this thread; an exception
        from it stops the generation and propagates. ``max_tokens`` is capped by what the
        context window leaves after the prompt. ``pid`` is the emulated process running the
        model: its RSS is set to :meth:`resident_kb`; ``owner`` is a process the work is
        charged to (its /proc/PID/stat) whose memory stays its own (an app's, which says its
        own PSS). Raises :class:`GenerationCancelled`
        as soon as ``cancel`` is set, also while waiting for another generation to end.
        """
        chat_messages = tuple(_messages(messages))
        return self._generate(
            lambda backend: backend.prompt_tokens(chat_messages),
            lambda n: TextRequest(chat_messages, n, temperature, seed),
            max_tokens, on_text, cancel, pid, owner,
        )  # fmt: skip

    def complete(
        self,
        prompt: str,
        max_tokens: int,
        on_text: Callable[[str], None],
        cancel: CancelToken | None = None,
        temperature: float = 0.0,
        seed: int = 0,
        *,
        pid: int | None = None,
    ) -> GenerationStats:
        """As :meth:`chat`, for a prompt already in the model's format (no chat template)."""
        return self._generate(
            lambda backend: len(backend.tokenize(prompt)) + 1,  # + BOS
            lambda n: TextRequest((), n, temperature, seed, raw_prompt=prompt),
            max_tokens, on_text, cancel, pid,
        )  # fmt: skip

    def _generate(
        self,
        count: Callable[[TextBackend], int],
        build: Callable[[int], TextRequest],
        max_tokens: int,
        on_text: Callable[[str], None],
        cancel: CancelToken | None,
        pid: int | None,
        owner: int | None = None,
    ) -> GenerationStats:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
        cancel = cancel if cancel is not None else CancelToken()
        lock = _device_lock(self.device)
        while not lock.acquire(timeout=_POLL_S):
            if cancel.is_set():
                raise GenerationCancelled()
        events: queue.Queue[tuple[str, object]] = queue.Queue()
        stop = threading.Event()
        handed_over = False
        try:
            if cancel.is_set():
                raise GenerationCancelled()
            backend = self._loaded()
            prompt_tokens = count(backend)
            room = backend.context_window() - prompt_tokens
            if room < 1:
                raise ValueError(
                    f"the prompt takes {prompt_tokens} tokens and leaves no room in the "
                    f"{backend.context_window()}-token context window"
                )
            request = build(min(max_tokens, room))
            if pid is not None:
                with contextlib.suppress(KeyError):  # the process may already be gone
                    self.device.set_process_rss(pid, self.resident_kb())
            charged = pid if pid is not None else owner
            worker = threading.Thread(
                target=self._work,
                args=(backend, request, _Relay(events, stop), events, lock, charged),
                name="virtual-s24-llm",
                daemon=True,
            )
            worker.start()
            handed_over = True  # from here on the worker releases the lock
        finally:
            if not handed_over:
                lock.release()
        try:
            return self._relay(events, on_text, cancel)
        except BaseException:
            stop.set()
            raise

    def _work(
        self,
        backend: TextBackend,
        request: TextRequest,
        stream: _Relay,
        events: queue.Queue[tuple[str, object]],
        lock: threading.Lock,
        pid: int | None = None,
    ) -> None:
        try:
            with _heating(self.device, HEAT_INTENSITY, pid):
                result = backend.generate(request, stream)
            events.put(("done", _stats(result, stream)))
        except _Stopped:
            events.put(("stopped", None))
        except BaseException as exc:  # re-raised in the caller's thread
            events.put(("error", exc))
        finally:
            lock.release()

    @staticmethod
    def _relay(
        events: queue.Queue[tuple[str, object]],
        on_text: Callable[[str], None],
        cancel: CancelToken,
    ) -> GenerationStats:
        while True:
            if cancel.is_set():
                raise GenerationCancelled()
            try:
                kind, payload = events.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if kind == "text":
                assert isinstance(payload, str)
                on_text(payload)
            elif kind == "done":
                assert isinstance(payload, GenerationStats)
                return payload
            elif kind == "error":
                assert isinstance(payload, BaseException)
                raise payload
            else:  # "stopped" is only sent after stop was set, i.e. after we raised
                raise GenerationCancelled()


def _stats(result: BackendResult, stream: _Relay) -> GenerationStats:
    end = time.perf_counter()
    sent = stream.t_sent if stream.t_sent is not None else end
    if stream.token_times:
        first, last = stream.token_times[0], stream.token_times[-1]
    else:  # end-of-generation straight after the prompt: all of it was prefill
        first = last = end
    return GenerationStats(
        prompt_tokens=result.prompt_tokens,
        output_tokens=result.output_tokens,
        prefill_s=first - sent,
        decode_s=last - first,
        text=result.text,
        engine_timings=dict(result.timings),
        finish_reason=result.finish_reason,
    )
