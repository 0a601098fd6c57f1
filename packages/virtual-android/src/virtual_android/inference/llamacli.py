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
"""

from __future__ import annotations

import contextlib
import math
import posixpath
import queue
import random
import re
import struct
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..device import VirtualS24
from ..fs.filesystem import FsError, VirtualFS
from ..shell.interpreter import SH, CommandContext
from ..shell.shellio import ShellCancelled
from .llm import DeviceLLM, GenerationStats, materialize_gguf, shared_llm
from .realcli import allowed_binary, run_host_binary

__all__ = ["TOOLS", "install_llama_cli"]

TOOLS = ("llama-cli", "llama-completion")

DEFAULT_MODEL_PATH = "models/7B/ggml-model-f16.gguf"
DEFAULT_THREADS = 10  # llama.cpp's default: the S24's physical cores
LLAMA_DEFAULT_SEED = 0xFFFFFFFF
_POLL_S = 0.05


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


# -- arguments -----------------------------------------------------------------------------
@dataclass
class _Params:
    model: str = DEFAULT_MODEL_PATH
    prompt: str = ""
    system_prompt: str = ""
    n_predict: int = -1
    n_ctx: int = 4096
    threads: int = DEFAULT_THREADS
    threads_batch: int = -1
    n_batch: int = 2048
    n_ubatch: int = 512
    temp: float = 0.8
    seed: int = LLAMA_DEFAULT_SEED
    conversation: bool | None = None  # None: on, because the model has a chat template
    single_turn: bool = False
    display_prompt: bool = True
    escape: bool = True
    gpu_layers: bool = False
    help: bool = False


class _ArgError(Exception):
    """A command-line error; str() is what llama.cpp prints before exiting with 1."""


# What this build says it is, in llama.cpp's words: ``build: N (COMMIT) with CC for TARGET``
# at start, and ``--version``'s two lines as current builds print them
# (llama_print_build_info), then exit 0.
VERSION, BUILD_NUMBER, COMMIT = "0.0.0-virtual", 0, "virtual"
COMPILER, TARGET = "devicelab_virtual", "aarch64-linux-android"


class _ShowVersion(Exception):
    """``--version``: llama.cpp prints its build and exits as soon as it reads the flag."""


def _version(params: _Params, value: str, ctx: CommandContext) -> None:
    raise _ShowVersion


def _stoi(value: str) -> int:
    # std::stoi: leading blanks, a sign and digits; whatever follows is ignored.
    match = re.match(r"\s*([+-]?\d+)", value)
    if match is None:
        raise ValueError("stoi")
    return int(match.group(1))


def _stoul(value: str) -> int:
    match = re.match(r"\s*([+-]?\d+)", value)
    if match is None:
        raise ValueError("stoul")
    return int(match.group(1)) & 0xFFFFFFFF  # "-1" wraps to LLAMA_DEFAULT_SEED, as in C


def _stof(value: str) -> float:
    match = re.match(r"\s*([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan))", value, re.I)
    if match is None:
        raise ValueError("stof")
    return float(match.group(1))


@dataclass(frozen=True)
class _Option:
    names: tuple[str, ...]
    hint: str | None  # the value's name; None for a flag
    help: str
    apply: Callable[[_Params, str, CommandContext], None] = field(repr=False)

    def usage(self) -> str:
        """The option's block in llama.cpp's usage layout (common_arg::to_string)."""
        first, *rest = self.names
        head = first if not rest else (first + ", ").ljust(7) + ", ".join(rest)
        if self.hint:
            head += " " + self.hint
        pad = " " * 40
        head = head + "\n" + pad if len(head) > 37 else head.ljust(40)
        lines = textwrap.wrap(self.help, 70) or [""]
        return head + lines[0] + "\n" + "".join(pad + line + "\n" for line in lines[1:])


def _set(name: str, convert: Callable[[str], object]) -> Callable[..., None]:
    def apply(params: _Params, value: str, ctx: CommandContext) -> None:
        setattr(params, name, convert(value))

    return apply


def _flag(name: str, value: object) -> Callable[..., None]:
    def apply(params: _Params, _: str, ctx: CommandContext) -> None:
        setattr(params, name, value)

    return apply


def _read_prompt_file(params: _Params, value: str, ctx: CommandContext) -> None:
    try:
        data = ctx.fs.read(value, ctx.cwd)
    except FsError:
        raise ValueError(f"error: failed to open file '{value}'\n") from None
    text = data.decode("utf-8", errors="replace")
    params.prompt = text[:-1] if text.endswith("\n") else text


def _ignore(params: _Params, value: str, ctx: CommandContext) -> None:
    return None


def _gpu_layers(params: _Params, value: str, ctx: CommandContext) -> None:
    _stoi(value)  # validated like llama.cpp's, then ignored: the phone's build is CPU-only
    params.gpu_layers = True


_OPTIONS: tuple[_Option, ...] = (
    _Option(("-h", "--help", "--usage"), None, "print usage and exit", _flag("help", True)),
    _Option(("--version",), None, "show version and build info", _version),
    _Option(
        ("-m", "--model"),
        "FNAME",
        f"model path (default: {DEFAULT_MODEL_PATH})",
        _set("model", str),
    ),
    _Option(
        ("-p", "--prompt"),
        "PROMPT",
        "prompt to start generation with; for system message, use -sys",
        _set("prompt", str),
    ),
    _Option(
        ("-f", "--file"), "FNAME", "a file containing the prompt (default: none)", _read_prompt_file
    ),
    _Option(
        ("-sys", "--system-prompt"),
        "PROMPT",
        "system prompt to use with model (if applicable, depending on chat template)",
        _set("system_prompt", str),
    ),
    _Option(
        ("-n", "--predict", "--n-predict"),
        "N",
        "number of tokens to predict (default: -1, -1 = infinity)",
        _set("n_predict", _stoi),
    ),
    _Option(
        ("-c", "--ctx-size"),
        "N",
        "size of the prompt context (default: 4096, 0 = loaded from model)",
        _set("n_ctx", _stoi),
    ),
    _Option(
        ("-t", "--threads"),
        "N",
        f"number of threads to use during generation (default: {DEFAULT_THREADS})",
        _set("threads", _stoi),
    ),
    _Option(
        ("-tb", "--threads-batch"),
        "N",
        "number of threads to use during batch and prompt processing (default: same as --threads)",
        _set("threads_batch", _stoi),
    ),
    _Option(
        ("-b", "--batch-size"),
        "N",
        "logical maximum batch size (default: 2048)",
        _set("n_batch", _stoi),
    ),
    _Option(
        ("-ub", "--ubatch-size"),
        "N",
        "physical maximum batch size (default: 512)",
        _set("n_ubatch", _stoi),
    ),
    _Option(("--temp",), "N", "temperature (default: 0.8)", _set("temp", _stof)),
    _Option(
        ("-s", "--seed"),
        "SEED",
        "RNG seed (default: -1, use random seed for -1)",
        _set("seed", _stoul),
    ),
    _Option(
        ("-cnv", "--conversation"),
        None,
        "run in conversation mode: does not print special tokens and suffix/prefix (default: "
        "auto enabled if chat template is available)",
        _flag("conversation", True),
    ),
    _Option(
        ("-no-cnv", "--no-conversation"),
        None,
        "force disable conversation mode (default: false)",
        _flag("conversation", False),
    ),
    _Option(
        ("-st", "--single-turn"),
        None,
        "run conversation for a single turn only, then exit when done",
        _flag("single_turn", True),
    ),
    _Option(
        ("--no-display-prompt",),
        None,
        "don't print prompt at generation (default: false)",
        _flag("display_prompt", False),
    ),
    _Option(
        ("--simple-io",),
        None,
        "use basic IO for better compatibility in subprocesses and limited consoles",
        _ignore,
    ),
    _Option(
        ("-e", "--escape"),
        None,
        "process escapes sequences (\\n, \\r, \\t, \\', \\\", \\\\) (default: true)",
        _flag("escape", True),
    ),
    _Option(("--no-escape",), None, "do not process escape sequences", _flag("escape", False)),
    _Option(
        ("-ngl", "--gpu-layers", "--n-gpu-layers"),
        "N",
        "number of layers to store in VRAM",
        _gpu_layers,
    ),
    _Option(("--no-warmup",), None, "skip warming up the model with an empty run", _ignore),
)
_BY_NAME = {name: option for option in _OPTIONS for name in option.names}


def _parse(ctx: CommandContext) -> _Params:
    params = _Params()
    args = ctx.argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        option = _BY_NAME.get(arg)
        if option is None:
            raise _ArgError(f"error: invalid argument: {arg}")
        value = ""
        try:
            if option.hint is not None:
                if i + 1 >= len(args):
                    raise ValueError("expected value for argument")
                i += 1
                value = args[i]
            option.apply(params, value, ctx)
        except ValueError as exc:
            raise _ArgError(
                f'error while handling argument "{arg}": {exc}\n\nusage:\n{option.usage()}\n\n'
                "to show complete usage, run with -h"
            ) from None
        i += 1
    if params.escape:
        params.prompt = _process_escapes(params.prompt)
        params.system_prompt = _process_escapes(params.system_prompt)
    return params


_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", 39: b"'", 34: b'"', 92: b"\\"}
_HEX = b"0123456789abcdefABCDEF"


def _process_escapes(text: str) -> str:
    """llama.cpp's string_process_escapes: on the UTF-8 bytes, \\xHH included."""
    raw = text.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte != 92 or i + 1 >= len(raw):
            out.append(byte)
            i += 1
            continue
        code = raw[i + 1]
        if code in _ESCAPES:
            out += _ESCAPES[code]
            i += 2
        elif code == ord("x") and i + 3 < len(raw) and all(c in _HEX for c in raw[i + 2 : i + 4]):
            out.append(int(raw[i + 2 : i + 4], 16))
            i += 4
        else:
            out += raw[i : i + 2]
            i += 2
    return out.decode("utf-8", errors="replace")


def _usage_text(name: str) -> str:
    blocks = "".join(option.usage() for option in _OPTIONS)
    return (
        f"usage: {name} [options]\n\n{blocks}\n"
        "example usage:\n\n"
        f'  text generation:     {name} -m your_model.gguf -p "I believe the meaning of life is"'
        " -n 128 -no-cnv\n\n"
        f'  chat (conversation): {name} -m your_model.gguf -sys "You are a helpful assistant"\n\n'
    )


# -- GGUF ----------------------------------------------------------------------------------
class _GGUFError(Exception):
    """The header is unusable; str() is llama.cpp's gguf error line."""


@dataclass
class _GGUFHeader:
    version: int
    n_tensors: int
    metadata: dict[str, object]
    n_params: int
    data_bytes: int


# GGUF value types with a fixed size, as struct formats (8 is a string, 9 an array).
_SCALARS: dict[int, str] = dict(
    zip((0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12), "BbHhIif?Qqd", strict=True)
)
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise EOFError
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str) -> int | float | bool:
        value: int | float | bool = struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]
        return value

    def u32(self) -> int:
        return int(self.unpack("I"))

    def u64(self) -> int:
        return int(self.unpack("Q"))

    def string(self) -> str:
        return self.take(self.u64()).decode("utf-8", errors="replace")

    def value(self, kind: int) -> object:
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.u32(), self.u64()
            if item_kind in _SCALARS:  # skipped in one step: vocabularies hold 10^5 entries
                self.take(struct.calcsize(_SCALARS[item_kind]) * count)
            else:
                for _ in range(count):
                    self.value(item_kind)
            return f"array[{count}]"
        fmt = _SCALARS.get(kind)
        if fmt is None:
            raise ValueError(f"bad value type {kind}")
        return self.unpack(fmt)


def _read_gguf(data: bytes) -> _GGUFHeader:
    """Check and read a GGUF header the way gguf_init_from_file_impl does."""
    where = "gguf_init_from_file_impl"
    if len(data) < 4:
        raise _GGUFError(f"{where}: failed to read magic")
    if data[:4] != b"GGUF":
        magic = data[:4].decode("latin-1")
        raise _GGUFError(f"{where}: invalid magic characters: '{magic}', expected 'GGUF'")
    cur = _Cursor(data)
    cur.pos = 4
    try:
        version = cur.u32()
    except EOFError:
        raise _GGUFError(f"{where}: failed to read header") from None
    if version == 1:
        raise _GGUFError(
            f"{where}: GGUFv1 is no longer supported, please use a more up-to-date version"
        )
    if version == 0 or version > 3:
        raise _GGUFError(
            f"{where}: this GGUF file is version {version} but this software only supports up "
            "to version 3"
        )
    try:
        n_tensors, n_kv = cur.u64(), cur.u64()
    except EOFError:
        raise _GGUFError(f"{where}: failed to read header") from None
    metadata: dict[str, object] = {}
    try:
        for _ in range(n_kv):
            key = cur.string()
            metadata[key] = cur.value(cur.u32())
    except (EOFError, ValueError, struct.error):
        raise _GGUFError(f"{where}: failed to read key-value pairs") from None
    n_params = 0
    try:
        for _ in range(n_tensors):
            cur.string()
            dims = [cur.u64() for _ in range(cur.u32())]
            cur.u32()  # ggml type
            cur.u64()  # offset
            n_params += math.prod(dims)
    except EOFError:
        raise _GGUFError(f"{where}: failed to read tensor info") from None
    alignment = metadata.get("general.alignment", 32)
    align = alignment if isinstance(alignment, int) and alignment > 0 else 32
    data_start = -(-cur.pos // align) * align
    return _GGUFHeader(version, n_tensors, metadata, n_params, max(0, len(data) - data_start))


# llama_model_ftype_name for the LLAMA_FTYPE_* values a phone benchmark meets.
_FTYPES = {
    0: "all F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K - Medium",
    11: "Q3_K - Small",
    12: "Q3_K - Medium",
    13: "Q3_K - Large",
    14: "Q4_K - Small",
    15: "Q4_K - Medium",
    16: "Q5_K - Small",
    17: "Q5_K - Medium",
    18: "Q6_K",
    30: "IQ4_XS - 4.25 bpw",
    32: "BF16",
}
_GGUF_VERSIONS = {1: "GGUF V1 (support until nov 2023)", 2: "GGUF V2", 3: "GGUF V3 (latest)"}


def _load_failure(ctx: CommandContext, model: str, cause: str, from_gguf: bool = True) -> int:
    """llama.cpp's cascade of errors when a model does not load; exit status 1."""
    if from_gguf:  # gguf_init failed: the loader throws with its own message (and a newline)
        cause += (
            "\nllama_model_load: error loading model: llama_model_loader: failed to load "
            f"model from {model}\n"
        )
    else:
        cause = f"llama_model_load: error loading model: {cause}"
    ctx.error(
        f"{cause}\n"
        "llama_model_load_from_file_impl: failed to load model\n"
        f"common_init_from_params: failed to load model '{model}'\n"
        "main: error: unable to load model\n"
    )
    return 1


def _loader_log(model: str, header: _GGUFHeader, n_ctx: int, params: _Params) -> str:
    meta = header.metadata
    arch = str(meta.get("general.architecture", "unknown"))
    mib = header.data_bytes / 1024 / 1024
    bpw = header.data_bytes * 8 / header.n_params if header.n_params else float("nan")
    file_type = meta.get("general.file_type")
    ftype = _FTYPES.get(file_type, "unknown, may not work") if isinstance(file_type, int) else "?"
    n_params = header.n_params
    size = f"{n_params / 1e9:.2f} B" if n_params >= 1e9 else f"{n_params / 1e6:.2f} M"
    lines = [
        f"llama_model_loader: loaded meta data with {len(meta)} key-value pairs and "
        f"{header.n_tensors} tensors from {model} "
        f"(version {_GGUF_VERSIONS.get(header.version, '?')})",
        f"print_info: file format = {_GGUF_VERSIONS.get(header.version, '?')}",
        f"print_info: file type   = {ftype}",
        f"print_info: file size   = {mib:.2f} MiB ({bpw:.2f} BPW) ",
        f"print_info: arch             = {arch}",
        f"print_info: n_ctx_train      = {meta.get(f'{arch}.context_length', 0)}",
        f"print_info: model params     = {size}",
        f"print_info: general.name     = {meta.get('general.name', '')}",
        f"load_tensors:   CPU_Mapped model buffer size = {mib:8.2f} MiB",
        f"llama_context: n_ctx         = {n_ctx}",
        f"llama_context: n_batch       = {min(params.n_batch, n_ctx)}",
        f"llama_context: n_ubatch      = {min(params.n_ubatch, params.n_batch, n_ctx)}",
    ]
    return "".join(line + "\n" for line in lines)


# -- perf ----------------------------------------------------------------------------------
@dataclass
class _Perf:
    load_ms: float = 0.0
    p_eval_ms: float = 0.0
    n_p_eval: int = 0
    eval_ms: float = 0.0
    n_eval: int = 0
    sample_ms: float = 0.0
    n_sample: int = 0

    def add(self, stats: GenerationStats) -> None:
        timings = stats.engine_timings
        p_ms, e_ms = float(timings.get("prefill_ms", 0.0)), float(timings.get("decode_ms", 0.0))
        self.p_eval_ms += p_ms
        self.n_p_eval += int(timings.get("prefill_tokens", 0))
        self.eval_ms += e_ms
        self.n_eval += int(timings.get("decode_tokens", 0))
        wall_ms = (stats.prefill_s + stats.decode_s) * 1000.0
        self.sample_ms += max(0.0, wall_ms - p_ms - e_ms)
        sampled = stats.output_tokens + (1 if stats.finish_reason == "stop" else 0)
        self.n_sample += stats.prompt_tokens + sampled


def _div(a: float, b: float) -> float:
    """a / b with IEEE semantics, as the C printf in llama.cpp sees them (no exception)."""
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b


def _perf_lines(perf: _Perf, total_ms: float) -> str:
    """llama-completion's common_perf_print block, format for format.

    As in llama.cpp, ``total time`` is the generation window (from the perf reset once the
    model is loaded and warmed up), so load time is not part of it.
    """
    unaccounted = total_ms - (perf.sample_ms + perf.p_eval_ms + perf.eval_ms)
    return (
        f"common_perf_print:    sampling time = {perf.sample_ms:10.2f} ms\n"
        f"common_perf_print:    samplers time = {perf.sample_ms:10.2f} ms / "
        f"{perf.n_sample:5d} tokens\n"
        f"common_perf_print:        load time = {perf.load_ms:10.2f} ms\n"
        f"common_perf_print: prompt eval time = {perf.p_eval_ms:10.2f} ms / "
        f"{perf.n_p_eval:5d} tokens ({_div(perf.p_eval_ms, perf.n_p_eval):8.2f} ms per token, "
        f"{_div(1e3 * perf.n_p_eval, perf.p_eval_ms):8.2f} tokens per second)\n"
        f"common_perf_print:        eval time = {perf.eval_ms:10.2f} ms / "
        f"{perf.n_eval:5d} runs   ({_div(perf.eval_ms, perf.n_eval):8.2f} ms per token, "
        f"{_div(1e3 * perf.n_eval, perf.eval_ms):8.2f} tokens per second)\n"
        f"common_perf_print:       total time = {total_ms:10.2f} ms / "
        f"{perf.n_p_eval + perf.n_eval:5d} tokens\n"
        f"common_perf_print: unaccounted time = {unaccounted:10.2f} ms / "
        f"{_div(100.0 * unaccounted, total_ms):5.1f} %      "
        "(total - sampling - prompt eval - eval) / (total)\n"
        f"common_perf_print:    graphs reused = {max(perf.n_eval - 1, 0):10d}\n"
    )


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
        params = _parse(ctx)
    except _ArgError as exc:
        ctx.error(f"{exc}\n")
        return 1
    except _ShowVersion:
        ctx.error(
            f"version: {VERSION} (build {BUILD_NUMBER}, commit {COMMIT})\n"
            f"built with {COMPILER} for {TARGET}\n"
        )
        return 0
    if params.help:
        ctx.write(_usage_text(ctx.argv[0]))
        return 0
    return _Run(ctx, params).run()


class _Run:
    def __init__(self, ctx: CommandContext, params: _Params) -> None:
        self.ctx = ctx
        self.params = params
        self.perf = _Perf()
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
        log_text = _loader_log(params.model, header, n_ctx, params)
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
        ctx.error(_perf_lines(self.perf, total_ms))
        return 0

    def _load_model(self) -> tuple[DeviceLLM, _GGUFHeader] | int:
        ctx, model = self.ctx, self.params.model
        start = time.perf_counter()
        try:
            data = ctx.fs.read(model, ctx.cwd)
        except FsError:
            return _load_failure(
                ctx, model, f"gguf_init_from_file: failed to open GGUF file '{model}'"
            )
        try:
            header = _read_gguf(data)
        except _GGUFError as exc:
            return _load_failure(ctx, model, str(exc))
        host_path = materialize_gguf(data)
        del data  # the pushed model can be large; the host copy is what loads
        try:
            llm = shared_llm(ctx.device, host_path)
        except Exception as exc:  # llama.cpp refused what the header promised
            cause = str(exc).replace(str(host_path), model)
            return _load_failure(ctx, model, cause, from_gguf=False)
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
            pending = _process_escapes(text) if params.escape else text
