"""llama.cpp on the phone: the user's arm64 ``llama-cli`` build, driven over adb shell.

The binary and the GGUF are pushed to the phone once (skipped when the phone's ``md5sum``
matches). Each trial pushes its prompt as a file, already in the model's chat template
(formatted on the host with the same GGUF's template, so the phone and the host see the same
tokens), and runs ``llama-cli -no-cnv`` so the text is used as given.

Timing: stdout streams back as the phone writes it; the host timestamps each piece and
counts tokens with the model's own tokenizer. llama-cli loads the model on every run, so
the request counts as sent once loading is done: command start + llama.cpp's own reported
``load time``. llama.cpp's perf lines are kept as ``engine_timings``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import devicelab
from devicelab import (
    Engine,
    GenerationRequest,
    GenerationResult,
    Message,
    ModelError,
    ModelSpec,
    TokenStream,
    is_gguf,
)

from .adb import Adb, adbutils_module
from .device import AndroidDevice

PERF = {
    "load_ms": re.compile(r"llama_perf_context_print:\s+load time =\s*([\d.]+) ms"),
    "prefill": re.compile(
        r"llama_perf_context_print:\s+prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens"
    ),
    "decode": re.compile(r"llama_perf_context_print:\s+eval time =\s*([\d.]+) ms /\s*(\d+) runs"),
    "total_ms": re.compile(r"llama_perf_context_print:\s+total time =\s*([\d.]+) ms"),
}


END_OF_TEXT = "[end of text]"


def parse_perf(stderr: str) -> dict[str, float]:
    """llama.cpp's ``llama_perf_context_print`` lines -> engine_timings."""
    out: dict[str, float] = {}
    if m := PERF["load_ms"].search(stderr):
        out["load_ms"] = float(m.group(1))
    if m := PERF["prefill"].search(stderr):
        out["prefill_ms"], out["prefill_tokens"] = float(m.group(1)), int(m.group(2))
    if m := PERF["decode"].search(stderr):
        out["decode_ms"], out["decode_tokens"] = float(m.group(1)), int(m.group(2))
    if m := PERF["total_ms"].search(stderr):
        out["total_ms"] = float(m.group(1))
    if out.get("prefill_ms"):
        out["prefill_tok_s"] = round(1000 * out["prefill_tokens"] / out["prefill_ms"], 2)
    if out.get("decode_ms"):
        out["decode_tok_s"] = round(1000 * out["decode_tokens"] / out["decode_ms"], 2)
    return out


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def host_tokenizer(registry: devicelab.Registry, model: ModelSpec) -> HostTokenizer:
    """The host's engine on the same GGUF, used only for tokens and templates; resolved
    exactly as a scenario's model on the host would be."""
    stack = contextlib.ExitStack()
    try:
        engine = stack.enter_context(devicelab.open_engine(registry, model, "host"))
    except BaseException:
        stack.close()
        raise
    return HostTokenizer(engine, stack)


@dataclass
class HostTokenizer:
    engine: Engine
    stack: contextlib.ExitStack[bool | None]

    def close(self) -> None:
        self.stack.close()


class LlamaCliEngine(Engine):
    name = "llama.cpp"
    device_kinds = ("android",)

    @dataclass(frozen=True)
    class Options:
        binary: str | None = None
        threads: int | None = None
        n_ctx: int = 2048
        remote_dir: str = "/data/local/tmp/devicelab"

        def __post_init__(self) -> None:
            # Checked while the scenario is read, so a missing build stops the run before it
            # starts rather than failing every trial.
            binary = LlamaCliEngine.binary_path(self)
            if binary is None or not binary.is_file():
                raise ModelError(
                    "llama.cpp on Android needs your arm64 llama-cli build: set "
                    '[models.options] binary = "path/to/llama-cli" (a path from the directory '
                    "you run devicelab in) or DEVICELAB_LLAMA_CLI. Build it with the Android "
                    "NDK: cmake -DCMAKE_TOOLCHAIN_FILE=$NDK/build/cmake/android.toolchain.cmake "
                    "-DANDROID_ABI=arm64-v8a."
                    + (f" {binary} does not exist." if binary is not None else "")
                )

    def __init__(self, device: devicelab.Device, model: ModelSpec, options: Any) -> None:
        super().__init__(device, model, options)
        self._tok: HostTokenizer | None = None

    @staticmethod
    def binary_path(options: Any) -> Path | None:
        value = options.binary or os.environ.get("DEVICELAB_LLAMA_CLI")
        return Path(value) if value else None

    @classmethod
    def check_model(cls, model: ModelSpec) -> None:
        adbutils_module()
        if model.path is None or not model.path.is_file():
            raise ModelError(f"model {model.name!r}: GGUF file {model.path} does not exist.")
        if not is_gguf(model.path):
            raise ModelError(f"model {model.name!r}: {model.path} is not a GGUF file.")

    @property
    def phone(self) -> AndroidDevice:
        assert isinstance(self.device, AndroidDevice)
        return self.device

    def _remote(self, name: str) -> str:
        return f"{self.options.remote_dir.rstrip('/')}/{name}"

    def load(self) -> None:
        binary = self.binary_path(self.options)
        assert binary is not None  # Options checked it
        adb = self.phone.require_adb()
        adb.check(["mkdir", "-p", self.options.remote_dir])
        adb.push_if_changed(binary, self._remote("llama-cli"))
        adb.check(["chmod", "755", self._remote("llama-cli")])
        assert self.model.path is not None
        adb.push_if_changed(self.model.path, self._remote(self.model.path.name))
        self._tok = host_tokenizer(self.phone.registry, self.model)

    @property
    def tok(self) -> Engine:
        if self._tok is None:
            raise devicelab.DevicelabError("the engine is not loaded")
        return self._tok.engine

    def context_window(self) -> int:
        return int(self.options.n_ctx)

    def tokenize(self, text: str) -> list[int]:
        return self.tok.tokenize(text)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.tok.detokenize(tokens)

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        return self.tok.prompt_tokens(messages)

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        return self.tok.chat_prompt(messages)

    def command(self, request: GenerationRequest) -> list[str]:
        assert self.model.path is not None
        argv = [
            self._remote("llama-cli"),
            "-m", self._remote(self.model.path.name),
            "-f", self._remote("prompt.txt"),
            "-n", str(request.max_tokens),
            "-c", str(self.options.n_ctx),
            "--temp", str(request.temperature),
            "--seed", str(request.seed),
            "-no-cnv",
            "--no-display-prompt",
        ]  # fmt: skip
        if self.options.threads:
            argv += ["-t", str(self.options.threads)]
        return argv

    def generate(self, request: GenerationRequest, stream: TokenStream) -> GenerationResult:
        adb: Adb = self.phone.require_adb()
        prompt = self.chat_prompt(request.messages)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            # llama.cpp drops one trailing newline of a -f file; the template ends in one.
            fh.write(prompt + "\n")
        try:
            adb.push(Path(fh.name), self._remote("prompt.txt"))
        finally:
            os.unlink(fh.name)

        text = ""
        counted = 0
        err: list[bytes] = []
        watching = threading.Event()

        def on_stdout(data: bytes) -> None:
            nonlocal text, counted
            piece = data.decode("utf-8", errors="replace")
            text += piece
            n = len(self.tokenize(text))
            if n > counted:
                stream.token(n - counted, text=piece)
                counted = n

        def on_stderr(data: bytes) -> None:
            err.append(data)
            if not watching.is_set():
                watching.set()
                threading.Thread(target=self._watch_process, daemon=True).start()

        left = stream.seconds_left()
        deadline = None if left is None else time.monotonic() + left
        t_cmd = time.perf_counter()
        stream.sent(t_cmd)
        code = adb.stream(self.command(request), on_stdout, on_stderr, deadline=deadline)
        stderr = b"".join(err).decode("utf-8", errors="replace")
        if code != 0:
            reason = "killed" if code in (137, 143) else f"exited with {code}"
            raise devicelab.EngineError(f"llama-cli {reason}: {stderr.strip()[-300:]}")
        timings = parse_perf(stderr)
        if "load_ms" in timings:
            stream.t_sent = t_cmd + timings["load_ms"] / 1000
        stopped = text.rstrip().endswith(END_OF_TEXT)
        if stopped:
            text = text.rstrip()[: -len(END_OF_TEXT)]
        output_tokens = counted
        if "decode_tokens" in timings:
            # llama.cpp evaluates each output token but the last one it samples (which is
            # the end-of-text token when the model stopped by itself).
            output_tokens = int(timings["decode_tokens"]) + (0 if stopped else 1)
        return GenerationResult(
            text=text,
            input_tokens=self.prompt_tokens(request.messages),
            output_tokens=output_tokens,
            engine_timings=timings,
            finish_reason="stop" if stopped else "length",
            # A new llama-cli process per trial starts with an empty KV cache; its "prompt
            # eval time ... / N tokens" line proves how much of the prompt it evaluated.
            prefilled_tokens=_int(timings.get("prefill_tokens")),
            engine_prefill_tps=timings.get("prefill_tok_s"),
            engine_decode_tps=timings.get("decode_tok_s"),
        )

    def _watch_process(self) -> None:
        # Memory telemetry is best effort; the trial itself goes on without it.
        with contextlib.suppress(devicelab.DevicelabError):
            self.phone.watch(self.phone.pids("llama-cli"))

    def close(self) -> None:
        if self._tok is not None:
            self._tok.close()
            self._tok = None
