"""What the emulated llama-cli (llamacli.py) prints about the model and the run, in
llama.cpp's formats: the GGUF header read as gguf_init_from_file does and the loader log made
from it, the cascade of errors when a model does not load, and common_perf_print's block.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from ..errors import VirtualAndroidError
from ..shell.interpreter import CommandContext
from .llamacli_args import Params
from .llm import GenerationStats

__all__ = [
    "GGUFError",
    "GGUFHeader",
    "Perf",
    "load_failure",
    "loader_log",
    "perf_lines",
    "read_gguf",
]


class GGUFError(VirtualAndroidError):
    """The header is unusable; str() is llama.cpp's gguf error line."""


@dataclass
class GGUFHeader:
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


def read_gguf(data: bytes) -> GGUFHeader:
    """Check and read a GGUF header the way gguf_init_from_file_impl does."""
    where = "gguf_init_from_file_impl"
    if len(data) < 4:
        raise GGUFError(f"{where}: failed to read magic")
    if data[:4] != b"GGUF":
        magic = data[:4].decode("latin-1")
        raise GGUFError(f"{where}: invalid magic characters: '{magic}', expected 'GGUF'")
    cur = _Cursor(data)
    cur.pos = 4
    try:
        version = cur.u32()
    except EOFError:
        raise GGUFError(f"{where}: failed to read header") from None
    if version == 1:
        raise GGUFError(
            f"{where}: GGUFv1 is no longer supported, please use a more up-to-date version"
        )
    if version == 0 or version > 3:
        raise GGUFError(
            f"{where}: this GGUF file is version {version} but this software only supports up "
            "to version 3"
        )
    try:
        n_tensors, n_kv = cur.u64(), cur.u64()
    except EOFError:
        raise GGUFError(f"{where}: failed to read header") from None
    metadata: dict[str, object] = {}
    try:
        for _ in range(n_kv):
            key = cur.string()
            metadata[key] = cur.value(cur.u32())
    except (EOFError, ValueError, struct.error):
        raise GGUFError(f"{where}: failed to read key-value pairs") from None
    n_params = 0
    try:
        for _ in range(n_tensors):
            cur.string()
            dims = [cur.u64() for _ in range(cur.u32())]
            cur.u32()  # ggml type
            cur.u64()  # offset
            n_params += math.prod(dims)
    except EOFError:
        raise GGUFError(f"{where}: failed to read tensor info") from None
    alignment = metadata.get("general.alignment", 32)
    align = alignment if isinstance(alignment, int) and alignment > 0 else 32
    data_start = -(-cur.pos // align) * align
    return GGUFHeader(version, n_tensors, metadata, n_params, max(0, len(data) - data_start))


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


def load_failure(ctx: CommandContext, model: str, cause: str, from_gguf: bool = True) -> int:
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


def loader_log(model: str, header: GGUFHeader, n_ctx: int, params: Params) -> str:
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
class Perf:
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


def perf_lines(perf: Perf, total_ms: float) -> str:
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
