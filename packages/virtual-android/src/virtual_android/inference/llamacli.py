"""An emulated llama.cpp command-line tool (``llama-cli``, ``llama-completion``) for the S24.

On a real phone a benchmark pushes an arm64 ``llama-cli`` build and a GGUF to /data/local/tmp
and runs ``adb shell /data/local/tmp/llama-cli -m model.gguf -f prompt.txt -n 128 -no-cnv``.
:func:`install_llama_cli` makes the same work on a :class:`VirtualS24`, with real inference:
the GGUF that was pushed is materialised on the host and run by the device's text-generation
backend (:mod:`.llm`, :mod:`.backend`).

Invocation, as the phone's shell would allow it:

- by path (``/data/local/tmp/llama-cli``, ``./llama-cli``): the file must exist in the virtual
  filesystem (``inaccessible or not found``, exit 127) and be executable (``can't execute:
  Permission denied``, exit 126). Its content is compared with the host builds of llama.cpp
  the phone allows (:mod:`.realcli`): a match runs that real build instead of this imitation;
  anything else (a placeholder stands in for the arm64 binary) runs the imitation.
- by bare name: only if a directory of ``$PATH`` holds such a file (``not found``, 127).

Flags (values as separate arguments, like llama.cpp): ``-m/--model FNAME``, ``-p/--prompt
TEXT``, ``-f/--file FNAME`` (read from the virtual filesystem; one trailing newline dropped),
``-sys/--system-prompt TEXT``, ``-n/--predict/--n-predict N`` (-1 and -2: until end of text
or a full context), ``-c/--ctx-size N`` (0: the model's training context), ``-t/--threads N``,
``-tb/--threads-batch N``, ``-b/--batch-size N``, ``-ub/--ubatch-size N``, ``--temp T``
(default 0.8; 0 or less is greedy), ``-s/--seed S`` (-1: random), ``-cnv/--conversation``,
``-no-cnv/--no-conversation``, ``-st/--single-turn``, ``--no-display-prompt``,
``--simple-io``, ``-e/--escape``, ``--no-escape``, ``-ngl/--gpu-layers/--n-gpu-layers N``
(ignored with llama.cpp's no-GPU warning), ``--no-warmup``, ``-h/--help``, ``--version``
(llama.cpp's two build lines on stderr, exit 0). Any other
argument: ``error: invalid argument: ARG`` and exit 1; a missing or malformed value: llama.cpp's
``error while handling argument "-n": stoi`` block and exit 1.

Output, in llama.cpp's layout: the loading log (a short version of llama.cpp's) on stderr; the
prompt echoed on stdout unless ``--no-display-prompt`` (so, as on a phone, TTFT measured from
the first stdout bytes needs that flag); then each generated piece written to stdout as soon as
it is decoded; `` [end of text]`` when the model ends its answer; ``\\n\\n``; then on stderr
``common_perf_print`` (llama-completion's perf block) with llama.cpp's exact formats and
this run's real numbers. Exit 0. While it runs the process is ``llama-cli`` in ``ps``/``pidof``
and its VmRSS/VmHWM are the model file plus the runtime. Closing the stream or ``kill`` stops
it at once (no perf summary, like a killed process).

Where the emulation departs from llama.cpp, on purpose:

- With ``-no-cnv`` the prompt is raw text, as in llama.cpp: special tokens in it (such as
  ``<|im_start|>``) are parsed, and no chat template is applied. In conversation mode the
  model's chat template is applied to each turn.
- No context shift: generation stops when the context is full, with llama.cpp's
  ``context full and context shift is disabled => stopping`` warning.
- Timings: ``prompt eval`` and ``eval`` are the backend's own counters (llama.cpp's, for a
  llama.cpp backend);
  ``load time`` is what this run spent getting the model ready (reading and checksumming the
  pushed file, and loading it unless it was already loaded for this device); ``sampling time``
  is the generation's wall time not spent in prompt eval or eval (sampling plus the Python
  around it; the engine does not expose llama.cpp's sampler counters). Its ``runs`` count the
  prompt tokens plus the sampled tokens, as llama-cli's sampler chain does.
- ``-t``, ``-tb``, ``-b`` and ``-ub`` are reported but do not change how the host computes.
- In conversation mode (the default, as in llama.cpp for a model with a chat template) the
  prompt is not echoed, user turns are read from stdin after ``> `` until end of input.

The command line is read in :mod:`.llamacli_args`; the loader log, the load errors and the
perf block are formatted in :mod:`.llamacli_output`; this module runs the tool.
"""

from __future__ import annotations

import contextlib
import posixpath
import queue
import random
import threading
import time

from ..device import VirtualS24
from ..fs.filesystem import FsError, VirtualFS
from ..shell.interpreter import SH, CommandContext
from ..shell.shellio import ShellCancelled
from .llamacli_args import (
    DEFAULT_THREADS,
    LLAMA_DEFAULT_SEED,
    ArgError,
    Params,
    ShowVersion,
    parse,
    process_escapes,
    usage_text,
)
from .llamacli_output import (
    GGUFError,
    GGUFHeader,
    Perf,
    load_failure,
    loader_log,
    perf_lines,
    read_gguf,
)
from .llm import DeviceLLM, GenerationStats, materialize_gguf, shared_llm
from .realcli import allowed_binary, run_host_binary

__all__ = ["TOOLS", "install_llama_cli"]

TOOLS = ("llama-cli", "llama-completion")

_POLL_S = 0.05

# What this build says it is, in llama.cpp's words: ``build: N (COMMIT) with CC for TARGET``
# at start, and ``--version``'s two lines as current builds print them
# (llama_print_build_info), then exit 0.
VERSION, BUILD_NUMBER, COMMIT = "0.0.0-virtual", 0, "virtual"
COMPILER, TARGET = "devicelab_virtual", "aarch64-linux-android"


def install_llama_cli(dev: VirtualS24) -> None:
    """Register the emulated llama.cpp tools on ``dev``."""
    for name in TOOLS:
        dev.add_command(name, main)


# -- the shell's view of the binary --------------------------------------------------------
def _is_executable_file(fs: VirtualFS, path: str) -> bool:
    try:
        info = fs.stat(path)
    except FsError:
        return False
    return info.is_file and bool(info.mode & 0o111)


def _exec_problem(ctx: CommandContext) -> tuple[int, str] | str:
    """What sh would say before ever starting this binary, or the file's path when it may run.

    The shell finds an emulated command by its name alone; a real phone runs only what is
    on its filesystem, so that is checked here (see the module docstring).
    """
    name = ctx.argv[0]
    if "/" not in name:
        for directory in ctx.env.get("PATH", "").split(":"):
            found = posixpath.join(directory, name)
            if directory and _is_executable_file(ctx.fs, found):
                return found
        return 127, f"{SH}: {name}: inaccessible or not found\n"
    path = ctx.path(name)
    try:
        info = ctx.fs.stat(path)
    except FsError:
        return 127, f"{SH}: {name}: inaccessible or not found\n"
    if info.is_dir:
        return 126, f"{SH}: {name}: can't execute: Is a directory\n"
    if not info.mode & 0o111:
        return 126, f"{SH}: {name}: can't execute: Permission denied\n"
    return path


# -- stdin for conversation mode -------------------------------------------------------------
class _Lines:
    """Lines of stdin, read in a helper thread so a kill is noticed while waiting for input."""

    def __init__(self, ctx: CommandContext) -> None:
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._ctx = ctx
        threading.Thread(target=self._pump, name="llama-cli-stdin", daemon=True).start()

    def _pump(self) -> None:
        try:
            while True:
                line = self._ctx.stdin.readline()
                self._lines.put(line)
                if not line:
                    return
        except ShellCancelled:
            self._lines.put(b"")

    def next(self) -> bytes:
        """The next line with its newline; b"" at end of input."""
        while True:
            self._ctx.cancelled.check()
            with contextlib.suppress(queue.Empty):
                return self._lines.get(timeout=_POLL_S)


# -- the tool ------------------------------------------------------------------------------
def main(ctx: CommandContext) -> int:
    """The emulated tool: ``handler(ctx) -> exit status`` for VirtualS24.add_command."""
    found = _exec_problem(ctx)
    if isinstance(found, tuple):
        ctx.error(found[1])
        return found[0]
    real = allowed_binary(ctx.device, lambda: ctx.fs.read(found, ctx.cwd))
    if real is not None:  # the pushed file is a host build the phone's owner allowed
        return run_host_binary(ctx, real)
    try:
        params = parse(ctx)
    except ArgError as exc:
        ctx.error(f"{exc}\n")
        return 1
    except ShowVersion:
        ctx.error(
            f"version: {VERSION} (build {BUILD_NUMBER}, commit {COMMIT})\n"
            f"built with {COMPILER} for {TARGET}\n"
        )
        return 0
    if params.help:
        ctx.write(usage_text(ctx.argv[0]))
        return 0
    return _Run(ctx, params).run()


class _Run:
    def __init__(self, ctx: CommandContext, params: Params) -> None:
        self.ctx = ctx
        self.params = params
        self.perf = Perf()
        self.t_ready = time.perf_counter()  # model loaded: the perf window starts

    def run(self) -> int:
        ctx, params = self.ctx, self.params
        log = [f"build: {BUILD_NUMBER} ({COMMIT}) with {COMPILER} for {TARGET}"]
        if params.gpu_layers:
            log += [
                "warning: no usable GPU found, --gpu-layers option will be ignored",
                "warning: one possible reason is that llama.cpp was compiled without GPU support",
                "warning: consult docs/build.md for compilation instructions",
            ]
        if params.n_ctx != 0 and params.n_ctx < 8:
            log.append("main: warning: minimum context size is 8, using minimum size.")
            params.n_ctx = 8
        log += ["main: llama backend init", "main: load the model and apply lora adapter, if any"]
        ctx.error("".join(line + "\n" for line in log))

        loaded = self._load_model()
        if isinstance(loaded, int):
            return loaded
        llm, header = loaded
        with contextlib.suppress(KeyError):  # killed meanwhile: nothing left to account
            ctx.device.set_process_rss(ctx.pid, llm.resident_kb())

        meta = header.metadata
        arch = str(meta.get("general.architecture", ""))
        n_ctx_train = meta.get(f"{arch}.context_length")
        requested = params.n_ctx or (n_ctx_train if isinstance(n_ctx_train, int) else 4096)
        window = llm.context_window()
        n_ctx = min(requested, window)
        threads = params.threads if params.threads > 0 else DEFAULT_THREADS
        threads_batch = params.threads_batch if params.threads_batch > 0 else threads
        conversation = params.conversation is not False
        log_text = loader_log(params.model, header, n_ctx, params)
        if requested > window:
            log_text += (
                f"main: warning: the virtual S24 runs this model with n_ctx = {window}; "
                f"the requested {requested} is capped\n"
            )
        log_text += f"main: llama threadpool init, n_threads = {threads}\n"
        if conversation:
            log_text += (
                "main: chat template is available, enabling conversation mode "
                "(disable it with -no-cnv)\n"
            )
        seed = params.seed if params.seed != LLAMA_DEFAULT_SEED else random.getrandbits(31)
        temp = max(0.0, params.temp)
        sampling = (
            "temp = 0.000, top_k = 1, top_p = 1.000, min_p = 0.000"
            if temp == 0
            else f"temp = {temp:.3f}, top_k = 40, top_p = 0.950, min_p = 0.050"
        )
        log_text += (
            f"\nsystem_info: n_threads = {threads} (n_threads_batch = {threads_batch}) / 10 | "
            "CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | MATMUL_INT8 = 1 | DOTPROD = 1 | "
            "SVE = 1 | OPENMP = 1 | REPACK = 1 | \n\n"
            f"sampler seed: {seed}\n"
            f"sampler params: {sampling}, repeat_penalty = 1.000\n"
            f"generate: n_ctx = {n_ctx}, n_batch = {min(params.n_batch, n_ctx)}, "
            f"n_predict = {params.n_predict}, n_keep = 0\n\n"
        )
        ctx.error(log_text)

        generate = _Generator(self, llm, n_ctx, temp, seed)
        status = generate.conversation() if conversation else generate.completion()
        if status != 0:
            return status
        ctx.write("\n\n")
        total_ms = (time.perf_counter() - self.t_ready) * 1000.0
        ctx.error(perf_lines(self.perf, total_ms))
        return 0

    def _load_model(self) -> tuple[DeviceLLM, GGUFHeader] | int:
        ctx, model = self.ctx, self.params.model
        start = time.perf_counter()
        try:
            data = ctx.fs.read(model, ctx.cwd)
        except FsError:
            return load_failure(
                ctx, model, f"gguf_init_from_file: failed to open GGUF file '{model}'"
            )
        try:
            header = read_gguf(data)
        except GGUFError as exc:
            return load_failure(ctx, model, str(exc))
        host_path = materialize_gguf(data)
        del data  # the pushed model can be large; the host copy is what loads
        try:
            llm = shared_llm(ctx.device, host_path)
        except Exception as exc:  # llama.cpp refused what the header promised
            cause = str(exc).replace(str(host_path), model)
            return load_failure(ctx, model, cause, from_gguf=False)
        self.t_ready = time.perf_counter()
        self.perf.load_ms = (self.t_ready - start) * 1000.0
        return llm, header


class _Generator:
    def __init__(self, run: _Run, llm: DeviceLLM, n_ctx: int, temp: float, seed: int) -> None:
        self.run = run
        self.ctx = run.ctx
        self.params = run.params
        self.llm = llm
        self.n_ctx = n_ctx
        self.temp = temp
        self.seed = seed

    def _turn(self, messages: list[tuple[str, str]] | str) -> GenerationStats | int | None:
        """One answer streamed to stdout; None when nothing was to be generated.

        ``messages`` as a str is a raw prompt (``-no-cnv``): sent without the chat template.
        """
        ctx, params = self.ctx, self.params
        raw = isinstance(messages, str)
        if isinstance(messages, str):
            prompt_tokens = len(self.llm.tokenize(messages)) + 1  # + BOS
        else:
            prompt_tokens = self.llm.prompt_tokens(messages)
        if prompt_tokens > self.n_ctx - 4:
            ctx.error(f"main: prompt is too long ({prompt_tokens} tokens, max {self.n_ctx - 4})\n")
            return 1
        if params.n_predict == 0:
            return None
        room = self.n_ctx - prompt_tokens
        budget = room if params.n_predict < 0 else min(params.n_predict, room)
        generate = self.llm.complete if raw else self.llm.chat
        stats = generate(
            messages,  # type: ignore[arg-type]
            budget,
            ctx.write,
            cancel=ctx.cancelled,
            temperature=self.temp,
            seed=self.seed,
            pid=ctx.pid,
        )
        self.run.perf.add(stats)
        context_bound = params.n_predict < 0 or params.n_predict > room
        if context_bound and stats.finish_reason != "stop":
            ctx.error("\n\nmain: context full and context shift is disabled => stopping\n")
        return stats

    def _system(self) -> list[tuple[str, str]]:
        return [("system", self.params.system_prompt)] if self.params.system_prompt else []

    def completion(self) -> int:
        ctx, params = self.ctx, self.params
        if not params.prompt:
            ctx.error("input is empty\n")
            return 255  # llama-cli returns -1 here
        if params.display_prompt:
            ctx.write(params.prompt)
        # As llama.cpp: without conversation mode the prompt is raw text (the user applies
        # the chat template, if they want one) and a system prompt has no place to go.
        result = self._turn(params.prompt)
        if isinstance(result, int):
            return result
        if result is not None and result.finish_reason == "stop":
            ctx.write(" [end of text]\n")
        return 0

    def conversation(self) -> int:
        ctx, params = self.ctx, self.params
        history = self._system()
        lines: _Lines | None = None
        pending = params.prompt
        while True:
            if pending:
                history.append(("user", pending))
                result = self._turn(history)
                if isinstance(result, int):
                    return result
                if result is not None:
                    history.append(("assistant", result.text))
                    if result.finish_reason == "stop":
                        ctx.write("\n")
                if params.single_turn:
                    return 0
            ctx.write("\n> ")
            if lines is None:
                lines = _Lines(ctx)
            line = lines.next()
            if not line:
                ctx.write("EOF by user\n")
                return 0
            text = line.decode("utf-8", errors="replace").removesuffix("\n")
            pending = process_escapes(text) if params.escape else text
