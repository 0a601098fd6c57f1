"""llama.cpp on the phone: the user's arm64 ``llama-cli`` build, driven over adb shell.

The binary and the GGUF are pushed to the phone once (skipped when the phone's ``md5sum``
matches). Each trial pushes its prompt as a file, already in the model's chat template
(formatted on the host with the same GGUF's template, so the phone and the host see the same
tokens), and runs ``llama-cli -no-cnv`` so the text is used as given.

Timing: stdout streams back as the phone writes it; the host timestamps each piece and
counts tokens with the model's own tokenizer. llama-cli loads the model on every run, so
the request counts as sent when prefill began, placed by llama.cpp's own numbers (see
:meth:`CliRun.prefill_start`). llama.cpp's perf lines are kept as ``engine_timings``.

The binary: the classic completion tool, ``llama-cli`` in older llama.cpp and
``llama-completion`` since the CLI split (the new ``llama-cli`` refuses ``-no-cnv``). The
reader is tested against the real one built for the host (:mod:`.hostcli`) and against
real-device output from public issue threads.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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

# The perf summary's prefix is the printing function's name, which llama.cpp has renamed:
# ``llama_print_timings`` (to mid-2024), ``llama_perf_context_print`` (to late 2025), then
# ``common_perf_print`` (llama-completion). Phones run whichever build their user made.
_PREFIX = r"(?:llama_print_timings|llama_perf_context_print|common_perf_print):"
PERF = {
    "load_ms": re.compile(_PREFIX + r"\s+load time =\s*([\d.]+) ms"),
    "prefill": re.compile(_PREFIX + r"\s+prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens"),
    "decode": re.compile(_PREFIX + r"\s+eval time =\s*([\d.]+) ms /\s*(\d+) runs"),
    "total_ms": re.compile(_PREFIX + r"\s+total time =\s*([\d.]+) ms"),
}

# What llama.cpp's completion tool prints after the answer when the model ends it itself
# (`` [end of text]\n``), and after every answer (``\n\n``): neither is generated text.
END_OF_TEXT = " [end of text]\n"
TRAILER = "\n\n"


# A shell reports a process killed by signal N as exit 128 + N: SIGKILL, SIGTERM.
KILLED = {137: 9, 143: 15}


def parse_perf(stderr: str) -> dict[str, float]:
    """llama.cpp's perf summary lines -> engine_timings."""
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


# ``--version`` (llama_print_build_info), on stderr: newer builds "version: 0.5.0-dev (build
# 7120, commit 0c1e570)", older ones "version: 4932 (5f4a5f17)"; then "built with CC for
# TARGET" (the target may hold a space: "Linux x86_64").
VERSION = re.compile(
    r"^version: (?:(\S+) \(build (\d+), commit ([^)]*)\)|(\d+) \(([^)]*)\))\s*$", re.M
)
BUILT_WITH = re.compile(r"^built with (.+) for (.+?)\s*$", re.MULTILINE)


def parse_version(text: str) -> dict[str, str]:
    """llama.cpp's ``--version`` output -> version (newer builds only), build number, commit,
    compiler and target."""
    out: dict[str, str] = {}
    if m := VERSION.search(text):
        if m.group(1) is not None:
            out["llama_cpp_version"] = m.group(1)
            out["llama_cpp_build"], out["llama_cpp_commit"] = m.group(2), m.group(3)
        else:
            out["llama_cpp_build"], out["llama_cpp_commit"] = m.group(4), m.group(5)
    if m := BUILT_WITH.search(text):
        out["compiler"], out["target"] = m.group(1), m.group(2)
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


class HostTokens:
    """Tokens for an engine on a phone, whose own tokenizer is out of reach: from the host's
    engine on the same GGUF, which ``load`` sets (``_tok = host_tokenizer(...)``) and
    ``close_tokens`` closes."""

    _tok: HostTokenizer | None = None

    @property
    def tok(self) -> Engine:
        if self._tok is None:
            raise devicelab.DevicelabError("the engine is not loaded")
        return self._tok.engine

    def tokenize(self, text: str) -> list[int]:
        return self.tok.tokenize(text)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.tok.detokenize(tokens)

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        return self.tok.prompt_tokens(messages)

    def close_tokens(self) -> None:
        if self._tok is not None:
            self._tok.close()
            self._tok = None


@dataclass
class CliRun:
    """One llama-cli run, as the engine reads it."""

    text: str
    stopped: bool
    output_tokens: int
    timings: dict[str, float]
    # When the perf summary's "total time" line arrived (perf_counter), if it did.
    t_total_line: float | None = None

    def prefill_start(self, t_cmd: float) -> float:
        """When prefill began, for a run started at ``t_cmd``.

        Two bounds, each from llama.cpp's own numbers: loading (``load time``, counted from
        when the model load began, which is after the command started) was over, and the
        ``total time`` window (in builds since 2024: from the perf reset after the warm-up
        run, i.e. just before prefill, to the summary) had begun. The later one is the
        closer; older builds counted loading into total time, so there the first one is.
        """
        t = t_cmd + self.timings.get("load_ms", 0.0) / 1000
        if self.t_total_line is not None and "total_ms" in self.timings:
            t = max(t, self.t_total_line - self.timings["total_ms"] / 1000)
        return t


class OutputReader:
    """Reads llama-cli's stdout as it streams and its stderr at the end.

    Each stdout chunk is decoded incrementally (llama.cpp writes token pieces, and a piece can
    be part of a UTF-8 character; a pipe can split anywhere too) and the text so far is
    counted with the model's tokenizer, so ``on_tokens(n, piece, t)`` fires when new tokens
    have arrived, ``t`` being when their bytes arrived. llama.cpp's closing marks are not
    text: a tail that could be their start is held back until later output or the end
    decides, and is then passed on with the time it arrived.
    """

    def __init__(
        self,
        tokenize: Callable[[str], list[int]],
        on_tokens: Callable[[int, str, float], None],
    ) -> None:
        self._tokenize = tokenize
        self._on_tokens = on_tokens
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._raw = ""
        self._arrivals: list[tuple[int, float]] = []  # (end offset in _raw, arrival time)
        self._shown = 0  # characters of _raw already read as text
        self._given = 0  # characters of _raw already passed on with tokens
        self._err: list[bytes] = []
        self._t_total_line: float | None = None
        self.counted = 0

    def stderr(self, data: bytes) -> None:
        self._err.append(data)
        if self._t_total_line is None and PERF["total_ms"].search(self._stderr_tail()):
            self._t_total_line = time.perf_counter()

    def _stderr_tail(self) -> str:
        # The line can straddle chunks; the last few hold all of it.
        return b"".join(self._err[-4:]).decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        return b"".join(self._err).decode("utf-8", errors="replace")

    def stdout(self, data: bytes) -> None:
        self._raw += self._decoder.decode(data)
        self._arrivals.append((len(self._raw), time.perf_counter()))
        self._advance(self._safe_end())

    def _safe_end(self) -> int:
        raw = self._raw
        for mark in (END_OF_TEXT + TRAILER, TRAILER):
            for k in range(min(len(mark), len(raw)), 0, -1):
                if raw.endswith(mark[:k]):
                    return len(raw) - k
        return len(raw)

    def _advance(self, end: int) -> None:
        for upto, t in self._arrivals:
            if self._shown >= end:
                break
            if upto <= self._shown:
                continue
            upto = min(upto, end)
            n = len(self._tokenize(self._raw[:upto]))
            if n > self.counted:
                # Text that added no token yet (part of a word) goes with the next that does.
                self._on_tokens(n - self.counted, self._raw[self._given : upto], t)
                self.counted, self._given = n, upto
            self._shown = upto

    def result(self) -> CliRun:
        """The run, once llama-cli has exited: its text without the closing marks."""
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._raw += tail
            self._arrivals.append((len(self._raw), time.perf_counter()))
        raw = self._raw
        if raw.endswith(TRAILER):
            raw = raw[: -len(TRAILER)]
        stopped = raw.endswith(END_OF_TEXT)
        if stopped:
            raw = raw[: -len(END_OF_TEXT)]
        self._advance(len(raw))
        if self._given < len(raw):
            self._on_tokens(0, raw[self._given :], self._arrivals[-1][1])
            self._given = len(raw)
        timings = parse_perf(self.stderr_text)
        output_tokens = self.counted
        if "decode_tokens" in timings:
            # llama.cpp evaluates each output token but the last one it samples (which is
            # the end-of-text token when the model stopped by itself).
            output_tokens = int(timings["decode_tokens"]) + (0 if stopped else 1)
        return CliRun(raw, stopped, output_tokens, timings, self._t_total_line)


class LlamaCliEngine(HostTokens, Engine):
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
            if binary is None:
                # Built for the phone on first use (devicelab android build-llama), which
                # needs the cross compiler; its absence is bad input: say what to install.
                from . import crossbuild

                crossbuild.check_cross_tools()
            elif not binary.is_file():
                raise ModelError(
                    f"llama.cpp on Android: the binary {binary} does not exist. Give "
                    '[models.options] binary = "path/to/llama-completion" (an arm64 build; a '
                    "path from the directory you run devicelab in) or DEVICELAB_LLAMA_CLI, or "
                    "leave it out: devicelab then builds one (devicelab android build-llama)."
                )

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

    def _binary(self) -> Path:
        """The given build, or the static arm64 one for this phone's cores (built once)."""
        given = self.binary_path(self.options)
        if given is not None:
            return given
        from . import crossbuild

        arch = crossbuild.profile_arch(self.phone.profile)
        return crossbuild.build_arm64(arch, lambda line: print(line, file=sys.stderr, flush=True))

    def load(self) -> None:
        binary = self._binary()
        adb = self.phone.require_adb()
        adb.check(["mkdir", "-p", self.options.remote_dir])
        adb.push_if_changed(binary, self._remote("llama-cli"))
        adb.check(["chmod", "755", self._remote("llama-cli")])
        assert self.model.path is not None
        adb.push_if_changed(self.model.path, self._remote(self.model.path.name))
        self._tok = host_tokenizer(self.phone.registry, self.model)

    def context_window(self) -> int:
        return int(self.options.n_ctx)

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        return self.tok.chat_prompt(messages)

    def prompt_format(self) -> Literal["chat", "completion"]:
        # The same GGUF as the host's engine: a base model there is one here.
        return self.tok.prompt_format()

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

    def prompt_file(self, request: GenerationRequest) -> str:
        """What the prompt file that ``command`` names (``-f``) holds."""
        # llama.cpp drops one trailing newline of a -f file; the template ends in one, and a
        # completion prompt (which ends in its cue) must reach the model as it is.
        if request.raw_prompt is not None:
            return request.raw_prompt + "\n"
        return self.chat_prompt(request.messages) + "\n"

    def generate(self, request: GenerationRequest, stream: TokenStream) -> GenerationResult:
        adb: Adb = self.phone.require_adb()
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            fh.write(self.prompt_file(request))
        try:
            adb.push(Path(fh.name), self._remote("prompt.txt"))
        finally:
            os.unlink(fh.name)

        watching = threading.Event()
        reader = OutputReader(self.tokenize, lambda n, piece, t: stream.token(n, t, text=piece))

        def on_stderr(data: bytes) -> None:
            reader.stderr(data)
            if not watching.is_set():
                watching.set()
                threading.Thread(target=self._watch_process, daemon=True).start()

        left = stream.seconds_left()
        deadline = None if left is None else time.monotonic() + left
        t_cmd = time.perf_counter()
        stream.sent(t_cmd)
        code = adb.stream(self.command(request), reader.stdout, on_stderr, deadline=deadline)
        if code != 0:
            stderr = reader.stderr_text.strip()[-300:]
            if code in KILLED:
                # Killed from outside (the low-memory killer, a kill -9): a device fault the
                # trial is retried after, not an answer about the model.
                raise devicelab.DeviceLostError(
                    f"llama-cli killed by signal {KILLED[code]} (exit {code}): {stderr}"
                )
            raise devicelab.EngineError(f"llama-cli exited with {code}: {stderr}")
        run = reader.result()
        # llama-cli loads the model on every run: the request counts as sent when prefill
        # began, which llama.cpp's own timings place.
        stream.t_sent = run.prefill_start(t_cmd)
        # llama-cli has no stop strings outside its interactive mode (-r hands control back
        # to a user there; with -no-cnv it decodes on to -n or the end of text), so a stop is
        # applied here to the text only: its output_tokens and times include what the model
        # wrote past the stop.
        text = devicelab.stop_at(run.text, request.stop) if request.stop else run.text
        if request.raw_prompt is not None:
            input_tokens = len(self.tokenize(request.raw_prompt)) + 1  # + the BOS llama-cli adds
        else:
            input_tokens = self.prompt_tokens(request.messages)
        return GenerationResult(
            text=text,
            input_tokens=input_tokens,
            output_tokens=run.output_tokens,
            engine_timings=run.timings,
            finish_reason="stop" if run.stopped else "length",
            # A new llama-cli process per trial starts with an empty KV cache; its "prompt
            # eval time ... / N tokens" line proves how much of the prompt it evaluated.
            prefilled_tokens=_int(run.timings.get("prefill_tokens")),
            engine_prefill_tps=run.timings.get("prefill_tok_s"),
            engine_decode_tps=run.timings.get("decode_tok_s"),
        )

    def _watch_process(self) -> None:
        # Memory telemetry is best effort; the trial itself goes on without it.
        with contextlib.suppress(devicelab.DevicelabError):
            self.phone.watch(self.phone.pids("llama-cli"))

    def build_info(self) -> dict[str, str]:
        """The phone's llama-cli as it reports itself (``--version``), and the sha256 of the
        binary that was pushed."""
        binary = self._binary()
        res = self.phone.require_adb().run([self._remote("llama-cli"), "--version"], timeout=30)
        out = parse_version(res.stdout + "\n" + res.stderr)
        if not out:
            out["version_output"] = (res.stdout + res.stderr).strip()[-200:]
        out["binary_sha256"] = devicelab.sha256_file(binary)
        from . import crossbuild

        # A build devicelab made: how (the llama.cpp commit, target and flags).
        built = crossbuild.build_info_of(binary)
        if built is not None and built.get("target"):
            out["binary_built"] = (
                f"llama.cpp {built.get('llama_cpp_commit')} {built.get('binary')} for "
                f"{built.get('target')} -march={built.get('arch')} "
                f"{' '.join(built.get('flags', []))}"
            )
        return out

    def close(self) -> None:
        self.close_tokens()
