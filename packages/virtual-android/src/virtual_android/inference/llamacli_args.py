"""llama-cli's command line, as the emulated tool (llamacli.py) reads it: the options it
knows, their values converted as llama.cpp converts them (std::stoi and friends), its
escape processing and its usage text. A bad argument is an `ArgError` whose text is what
llama.cpp prints before exiting with 1.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import VirtualAndroidError
from ..fs.filesystem import FsError
from ..shell.interpreter import CommandContext

__all__ = [
    "DEFAULT_MODEL_PATH",
    "DEFAULT_THREADS",
    "LLAMA_DEFAULT_SEED",
    "ArgError",
    "Params",
    "ShowVersion",
    "parse",
    "process_escapes",
    "usage_text",
]

DEFAULT_MODEL_PATH = "models/7B/ggml-model-f16.gguf"
DEFAULT_THREADS = 10  # llama.cpp's default: the S24's physical cores
LLAMA_DEFAULT_SEED = 0xFFFFFFFF


@dataclass
class Params:
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


class ArgError(VirtualAndroidError):
    """A command-line error; str() is what llama.cpp prints before exiting with 1."""


class ShowVersion(VirtualAndroidError):
    """``--version``: llama.cpp prints its build and exits as soon as it reads the flag."""


def _version(params: Params, value: str, ctx: CommandContext) -> None:
    raise ShowVersion


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
    apply: Callable[[Params, str, CommandContext], None] = field(repr=False)

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
    def apply(params: Params, value: str, ctx: CommandContext) -> None:
        setattr(params, name, convert(value))

    return apply


def _flag(name: str, value: object) -> Callable[..., None]:
    def apply(params: Params, _: str, ctx: CommandContext) -> None:
        setattr(params, name, value)

    return apply


def _read_prompt_file(params: Params, value: str, ctx: CommandContext) -> None:
    try:
        data = ctx.fs.read(value, ctx.cwd)
    except FsError:
        raise ValueError(f"error: failed to open file '{value}'\n") from None
    text = data.decode("utf-8", errors="replace")
    params.prompt = text[:-1] if text.endswith("\n") else text


def _ignore(params: Params, value: str, ctx: CommandContext) -> None:
    return None


def _gpu_layers(params: Params, value: str, ctx: CommandContext) -> None:
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


def parse(ctx: CommandContext) -> Params:
    params = Params()
    args = ctx.argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        option = _BY_NAME.get(arg)
        if option is None:
            raise ArgError(f"error: invalid argument: {arg}")
        value = ""
        try:
            if option.hint is not None:
                if i + 1 >= len(args):
                    raise ValueError("expected value for argument")
                i += 1
                value = args[i]
            option.apply(params, value, ctx)
        except ValueError as exc:
            raise ArgError(
                f'error while handling argument "{arg}": {exc}\n\nusage:\n{option.usage()}\n\n'
                "to show complete usage, run with -h"
            ) from None
        i += 1
    if params.escape:
        params.prompt = process_escapes(params.prompt)
        params.system_prompt = process_escapes(params.system_prompt)
    return params


_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", 39: b"'", 34: b'"', 92: b"\\"}
_HEX = b"0123456789abcdefABCDEF"


def process_escapes(text: str) -> str:
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


def usage_text(name: str) -> str:
    blocks = "".join(option.usage() for option in _OPTIONS)
    return (
        f"usage: {name} [options]\n\n{blocks}\n"
        "example usage:\n\n"
        f'  text generation:     {name} -m your_model.gguf -p "I believe the meaning of life is"'
        " -n 128 -no-cnv\n\n"
        f'  chat (conversation): {name} -m your_model.gguf -sys "You are a helpful assistant"\n\n'
    )
