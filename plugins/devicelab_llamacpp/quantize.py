"""GGUF quantisation through llama.cpp's own quantiser (``llama_model_quantize``).

llama.cpp quantises from F32/F16/BF16 weights. The shipped SmolLM2 file is already Q4_1, so it
is first dequantised to an F16 GGUF with the ``gguf`` package (every metadata key, tokenizer and
chat template included; 1-D norm tensors stay F32, as llama.cpp's converter writes them), and
every other type is made from that F16 file. Quantising the Q4_1 weights directly
(``allow_requantize``) would stack a second rounding on the first; going through F16 adds no
error of its own (F16 holds every Q4_1 value exactly), so the result is as close to "quantised
from the original weights" as a Q4_1 source allows -- still not equal to it: the Q4_1 error is
in the weights for good. The F16 file is cached, keyed by the source's SHA-256.

llama.cpp's AMX problem on some CPUs (see the engine's ``extra_buffer_types``) is in decoding
only; quantising does not touch it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import devicelab
from devicelab import Quantizer, QuantizeResult, cache_dir, is_gguf

GGUF_INSTALL = "pip install gguf numpy"
LLAMA_INSTALL = "pip install llama-cpp-python"

# llama.cpp's LLAMA_FTYPE_MOSTLY_* names for each type this backend offers. Looked up on the
# llama_cpp module at run time (file types, not ggml tensor types: Q8_0 is 7 here, 8 there).
FTYPES = {
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
}
F16_FTYPE = 1
_FLOAT_TYPES = ("F32", "F16", "BF16")


class GgufQuantizer(Quantizer):
    backend = "gguf"
    types: ClassVar[tuple[str, ...]] = tuple(FTYPES)
    engines: ClassVar[tuple[str, ...]] = ("llama.cpp",)
    description = "llama.cpp's quantiser (llama_model_quantize); quantised sources via F16"
    suffix = ".gguf"

    def check(self) -> None:
        import importlib.util

        for module, install in (("gguf", GGUF_INSTALL), ("llama_cpp", LLAMA_INSTALL)):
            if importlib.util.find_spec(module) is None:
                raise devicelab.MissingDependencyError(
                    f"GGUF quantisation needs the {module!r} package. Install it: {install}"
                )

    def quantize(
        self, source: Path, qtype: str, out: Path, progress: Callable[[str], None]
    ) -> QuantizeResult:
        if not source.is_file() or not is_gguf(source):
            raise devicelab.ModelError(
                f"{source} is not a GGUF file. The gguf quantiser takes a .gguf model; convert "
                "a Hugging Face checkpoint with llama.cpp's convert_hf_to_gguf.py first."
            )
        t0 = time.perf_counter()
        base = source if _is_float(source) else f16_for(source, progress)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.part")
        if qtype == "F16" and base != source:
            # The cached F16 is the asked-for file already: link it rather than hold it twice.
            progress(f"linking the F16 file to {out}")
            tmp.unlink(missing_ok=True)
            try:
                os.link(base, tmp)
            except OSError:  # another filesystem, or one without hard links
                shutil.copyfile(base, tmp)
        else:
            progress(f"llama.cpp: quantising {base.name} to {qtype}")
            llama_quantize(base, tmp, qtype)
        os.replace(tmp, out)
        seconds = time.perf_counter() - t0
        stats = tensor_stats(out)
        return QuantizeResult(
            path=out,
            size_bytes=out.stat().st_size,
            bits_per_weight=stats["bits_per_weight"],
            params=stats["params"],
            backend=self.backend,
            qtype=qtype,
            seconds=round(seconds, 2),
            details={
                "file_bits_per_weight": stats["file_bits_per_weight"],
                "tensor_types": stats["tensor_types"],
                "made_from": str(base),
            },
        )


def _is_float(path: Path) -> bool:
    """Whether every 2-D tensor is F32/F16/BF16: llama.cpp can quantise it without loss stacking."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return all(t.tensor_type.name in _FLOAT_TYPES for t in reader.tensors if len(t.shape) >= 2)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def f16_for(source: Path, progress: Callable[[str], None]) -> Path:
    """The cached F16 GGUF dequantised from ``source``; made on first use."""
    digest = _sha256(source)[:16]
    target = cache_dir() / "models" / "f16" / f"{source.stem}-{digest}.F16.gguf"
    if target.is_file():
        progress(f"using the cached F16 file {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(f"dequantising {source.name} to F16 (once, cached in {target.parent})")
    tmp = target.with_name(f".{target.name}.part")
    try:
        dequantize_to_f16(source, tmp, progress)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def dequantize_to_f16(source: Path, out: Path, progress: Callable[[str], None]) -> None:
    """Write ``source`` as an F16 GGUF: every metadata key copied, file_type set to F16,
    2-D weights dequantised to F16, 1-D tensors (norms) kept F32.

    Tensors are dequantised and written one at a time, so memory stays near one tensor.
    """
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import dequantize

    reader = GGUFReader(str(source))
    arch_field = reader.fields.get("general.architecture")
    if arch_field is None:
        raise devicelab.ModelError(f"{source} has no general.architecture key; not a model GGUF.")
    writer = GGUFWriter(str(out), arch=str(arch_field.contents()), endianess=reader.endianess)
    for fld in reader.fields.values():
        # GGUF.* are the header's own fields; the writer adds the architecture itself.
        if fld.name.startswith("GGUF.") or fld.name == "general.architecture":
            continue
        if fld.name == "general.file_type":
            writer.add_file_type(F16_FTYPE)
            continue
        vtype = fld.types[0]
        sub = fld.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(fld.name, fld.contents(), vtype, sub_type=sub)

    def target(t: Any) -> tuple[Any, GGMLQuantizationType]:
        keep_f32 = len(t.shape) < 2 or t.tensor_type == GGMLQuantizationType.F32
        return (
            (np.float32, GGMLQuantizationType.F32)
            if keep_f32
            else (
                np.float16,
                GGMLQuantizationType.F16,
            )
        )

    for t in reader.tensors:
        dtype, raw = target(t)
        shape = tuple(int(d) for d in reversed(t.shape))  # numpy order: GGUF dims reversed
        nbytes = int(t.n_elements) * np.dtype(dtype).itemsize
        writer.add_tensor_info(t.name, shape, np.dtype(dtype), nbytes, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    total = len(reader.tensors)
    step = max(1, total // 10)
    for i, t in enumerate(reader.tensors, 1):
        dtype, _ = target(t)
        values = dequantize(t.data, t.tensor_type)
        shape = tuple(int(d) for d in reversed(t.shape))
        writer.write_tensor_data(np.ascontiguousarray(values.reshape(shape).astype(dtype)))
        if i % step == 0 or i == total:
            progress(f"dequantised {i}/{total} tensors")
    writer.close()


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send the process's stderr (fd 2: llama.cpp's per-tensor log) to ``path`` meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("wb") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def llama_quantize(source: Path, out: Path, qtype: str) -> None:
    """``llama_model_quantize(source -> out)`` with llama.cpp's defaults for ``qtype``.

    llama.cpp logs a line per tensor; that goes to a temporary log, shown only on failure.
    """
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(getattr(llama_cpp, FTYPES[qtype]))
    with tempfile.TemporaryDirectory(prefix="devicelab-quant-") as tmp:
        log = Path(tmp) / "llama_quantize.log"
        with _stderr_to(log):
            rc = llama_cpp.llama_model_quantize(
                str(source).encode(), str(out).encode(), ctypes.byref(params)
            )
        if rc != 0:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
            out.unlink(missing_ok=True)
            raise devicelab.ModelError(
                f"llama.cpp could not quantise {source} to {qtype} (llama_model_quantize "
                f"returned {rc}). Its log ended with: {' | '.join(tail) or '(nothing)'}"
            )


def tensor_stats(path: Path) -> dict[str, Any]:
    """Bits per weight of the 2-D (quantisable) tensors, of the whole file, and the weights
    per tensor type."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    q_bytes = q_weights = params = 0
    types: dict[str, int] = {}
    for t in reader.tensors:
        n = int(t.n_elements)
        params += n
        if len(t.shape) >= 2:
            q_bytes += int(t.n_bytes)
            q_weights += n
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + n
    size = path.stat().st_size
    return {
        "bits_per_weight": round(8 * q_bytes / q_weights, 3) if q_weights else None,
        "file_bits_per_weight": round(8 * size / params, 3) if params else None,
        "params": params,
        "tensor_types": types,
    }
