"""The model catalogue: what a GGUF model file says about itself.

Every figure here is read from the file (its metadata and tensor table, through the ``gguf``
package), never typed by hand, so a catalogue entry cannot drift from the weights it
describes. Reading a header is cheap but not free (the tensor table of a 270M model has a few
hundred entries), so :func:`cached_info` keeps one answer per (path, size, mtime) for the
life of the process; the sha256, which reads the whole file, is computed only when asked for
and cached across processes by :func:`devicelab.sha256_file`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._api import ModelSpec, is_gguf
from ._errors import ModelError
from ._provenance import sha256_file

# f16 keys and values: llama.cpp's default KV cache type.
KV_BYTES_PER_VALUE = 2


@dataclass(frozen=True)
class GgufInfo:
    """One GGUF file as the catalogue shows it."""

    path: str
    architecture: str  # general.architecture: "llama", "gemma3", ...
    name: str  # general.name, where the file gives one
    params: int  # summed over every tensor's shape
    # Elements of token_embd.weight (0 if absent): a lookup, not a matrix product, in prefill.
    embedding_params: int
    quant: str  # the file type (general.file_type), else the dominant tensor type
    bits_per_weight: float  # 8 * tensor bytes / params
    size_bytes: int
    context_length: int | None  # <arch>.context_length: the context it was trained on
    layers: int | None
    heads: int | None
    kv_heads: int | None
    head_dim: int | None
    kv_bytes_per_token: int | None  # 2 (K and V) * layers * kv_heads * head_dim * 2 (f16)
    chat_template: bool  # tokenizer.chat_template present: instruct; absent: base
    license: str | None  # general.license, where the file gives one

    @property
    def kind(self) -> str:
        return "instruct" if self.chat_template else "base"

    @property
    def sha256(self) -> str:
        """The file's sha256, read on first use (about a second per 100 MB) and cached
        across processes by path, size and mtime; planning needs only the header."""
        return sha256_file(Path(self.path))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind, "sha256": self.sha256}


def read_gguf(path: Path) -> GgufInfo:
    """The catalogue entry of the GGUF file at ``path``.

    A file that is missing, not a GGUF, or truncated is a :class:`ModelError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} does not exist. Give the path to a .gguf model file.")
    if not is_gguf(path):
        raise ModelError(
            f"{path} is not a GGUF file (it does not start with the GGUF magic). llama.cpp "
            "needs a .gguf model; convert a checkpoint with llama.cpp's convert_hf_to_gguf.py."
        )
    try:
        from gguf import GGUFReader
    except ImportError:
        from ._errors import MissingDependencyError

        raise MissingDependencyError(
            "reading a model's catalogue entry needs the gguf package. Install it: pip install gguf"
        ) from None
    try:
        reader = GGUFReader(str(path))
        fields = {name: _value(f) for name, f in reader.fields.items()}
        tensors = [(t.tensor_type.name, int(t.n_elements), int(t.n_bytes)) for t in reader.tensors]
        embedding_params = sum(
            int(t.n_elements) for t in reader.tensors if t.name == "token_embd.weight"
        )
    except Exception as exc:  # gguf raises ValueError, IndexError, ... on a cut-off file
        raise ModelError(
            f"{path} cannot be read as a GGUF file ({type(exc).__name__}: {exc}); it is "
            "probably truncated or corrupted. Download or assemble it again."
        ) from None
    if not tensors:
        raise ModelError(f"{path} is a GGUF file without tensors: it holds no model weights.")
    arch = str(fields.get("general.architecture", "unknown"))
    params = sum(n for _, n, _ in tensors)
    layers = _int(fields.get(f"{arch}.block_count"))
    heads = _int(fields.get(f"{arch}.attention.head_count"))
    kv_heads = _int(fields.get(f"{arch}.attention.head_count_kv")) or heads
    head_dim = _int(fields.get(f"{arch}.attention.key_length"))
    embedding = _int(fields.get(f"{arch}.embedding_length"))
    if head_dim is None and embedding and heads:
        head_dim = embedding // heads
    kv = (
        2 * layers * kv_heads * head_dim * KV_BYTES_PER_VALUE
        if layers and kv_heads and head_dim
        else None
    )
    license_ = fields.get("general.license")
    return GgufInfo(
        path=str(path),
        architecture=arch,
        name=str(fields.get("general.name", "")),
        params=params,
        embedding_params=embedding_params,
        quant=_quant(fields.get("general.file_type"), tensors),
        bits_per_weight=round(8 * sum(b for _, _, b in tensors) / params, 2),
        size_bytes=path.stat().st_size,
        context_length=_int(fields.get(f"{arch}.context_length")),
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        kv_bytes_per_token=kv,
        chat_template=bool(fields.get("tokenizer.chat_template")),
        license=str(license_) if license_ else None,
    )


_CACHE: dict[tuple[str, int, int], GgufInfo] = {}
_LOCK = threading.Lock()


def cached_info(path: Path) -> GgufInfo:
    """:func:`read_gguf`, read once per (path, size, mtime) in this process."""
    resolved = Path(path).resolve()
    try:
        st = os.stat(resolved)
    except OSError:
        return read_gguf(resolved)  # raises the ModelError that names the path
    key = (str(resolved), st.st_size, st.st_mtime_ns)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is None:
        hit = read_gguf(resolved)
        with _LOCK:
            _CACHE[key] = hit
    return hit


def catalogue_facts(path: Path) -> dict[str, Any]:
    """What a load's provenance keeps of a model file's catalogue entry (params, family,
    quant type, bits per weight, trained context); ``{}`` for a file that is no readable
    GGUF (an MLC directory, a file the engine reads its own way)."""
    try:
        if not Path(path).is_file() or not is_gguf(Path(path)):
            return {}
        info = cached_info(path)
    except (OSError, ModelError):
        return {}
    return {
        "params": info.params,
        "architecture": info.architecture,
        "quant_type": info.quant,
        "bits_per_weight": info.bits_per_weight,
        "context_length": info.context_length,
    }


def needs_ensure(spec: ModelSpec) -> bool:
    """Whether ``spec``'s file is still to be made by its ``ensure`` (not assembled yet)."""
    return spec.ensure is not None and spec.path is not None and not spec.path.exists()


def ensure_file(spec: ModelSpec, progress: Callable[[str], None] | None = None) -> None:
    """Call ``spec``'s ``ensure``, if it has one: it makes the file when missing and checks
    the one it finds (cheap: a cached sha256). Progress goes to ``progress``, by default to
    stderr (never stdout, where ``--json`` output goes)."""
    if spec.ensure is not None:
        spec.ensure(progress or _to_stderr)


def _to_stderr(text: str) -> None:
    print(f"devicelab: {text}", file=sys.stderr, flush=True)


def entry(spec: ModelSpec, plugin: str = "") -> dict[str, Any]:
    """One row of ``devicelab models``: the registration, whether its file is present, and
    (when it is a GGUF file) what the file says. Never makes the file."""
    row: dict[str, Any] = {
        "name": spec.name,
        "engine": spec.engine,
        "quant": spec.quant,
        "plugin": plugin,
        "description": spec.description,
        "source": spec.source or (str(spec.path) if spec.path else ""),
        "license": spec.license,
        "path": str(spec.path) if spec.path else None,
    }
    if spec.path is None:
        row["file"] = "carried by the engine"
    elif spec.path.is_file():
        row["file"] = "present"
        if is_gguf(spec.path):
            try:
                info = cached_info(spec.path).to_dict()
            except ModelError as exc:
                row["file"] = f"unreadable: {exc}"
            else:
                info.pop("path")
                if not row["license"]:
                    row["license"] = info["license"] or ""
                row["catalogue"] = info
    elif spec.path.exists():
        row["file"] = "present"
    else:
        row["file"] = "not assembled yet" if spec.ensure is not None else "missing"
    return row


def model_title(name: str, params: Any = None, size_bytes: Any = None) -> str:
    """``gemma-3-270m (268M, 253 MB)``: a model with the size of its file, where known."""
    said = [
        f(v)
        for f, v in ((short_params, params), (short_size, size_bytes))
        if isinstance(v, int) and not isinstance(v, bool) and v > 0
    ]
    return f"{name} ({', '.join(said)})" if said else name


def model_facts(loads: Mapping[str, Any], records: Iterable[Any]) -> Facts:
    """(model, quant) -> ``{"model_params", "model_size_bytes"}`` of the files ``records``
    (trial records) loaded, read from their loads' provenance (run.json's ``loads``)."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for rec in records:
        ident = rec.identity
        load = loads.get(ident.provenance)
        model = load.get("model") if isinstance(load, Mapping) else None
        if not isinstance(model, Mapping) or (ident.model, ident.quant) in out:
            continue
        facts = {
            k: model[src]
            for k, src in (("model_params", "params"), ("model_size_bytes", "size_bytes"))
            if isinstance(model.get(src), int)
        }
        if facts:
            out[(ident.model, ident.quant)] = facts
    return out


Facts = Mapping[tuple[str, str], Mapping[str, int]]


def run_facts(run: Any) -> Facts:
    """:func:`model_facts` of a :class:`~devicelab.RunData`'s trials."""
    loads = run.provenance.get("loads") or {}
    return model_facts(loads if isinstance(loads, Mapping) else {}, run.records)


def with_model_facts(rows: list[dict[str, Any]], facts: Facts) -> list[dict[str, Any]]:
    """Summary rows with their model's ``model_params`` and ``model_size_bytes``, where known."""
    return [{**r, **facts.get((str(r.get("model")), str(r.get("quant"))), {})} for r in rows]


def short_params(params: int) -> str:
    """A parameter count as people say it: 134,515,008 -> "135M", 1,236,000,000 -> "1.2B"."""
    if params >= 10**9:
        return f"{params / 10**9:.1f}B"
    if params >= 10**6:
        return f"{params / 10**6:.0f}M"
    return f"{params / 10**3:.0f}K"


def short_size(size_bytes: int) -> str:
    """A file size in decimal megabytes (as file managers show them): "253 MB"."""
    if size_bytes >= 10**9:
        return f"{size_bytes / 10**9:.2f} GB"
    return f"{size_bytes / 10**6:.0f} MB"


def _value(field: Any) -> Any:
    """A reader field's value: a scalar, a string, or a list (arrays are left out: only the
    tokenizer's are large, and the catalogue needs none of them)."""
    from gguf import GGUFValueType

    if not field.types:
        return None
    kind = field.types[0]
    if kind == GGUFValueType.ARRAY:
        return None
    part = field.parts[field.data[0]]
    if kind == GGUFValueType.STRING:
        return bytes(part).decode("utf-8", errors="replace")
    return part.tolist()[0] if hasattr(part, "tolist") else part


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _quant(file_type: Any, tensors: list[tuple[str, int, int]]) -> str:
    """The file's type as llama.cpp names it (``MOSTLY_Q4_K_M`` -> ``Q4_K_M``); where the file
    does not say, the tensor type holding most weights."""
    if isinstance(file_type, int):
        from gguf import LlamaFileType

        try:
            name = LlamaFileType(file_type).name
        except ValueError:
            name = ""
        if name.startswith("MOSTLY_"):
            return name.removeprefix("MOSTLY_")
        if name == "ALL_F32":
            return "F32"
    weights: Counter[str] = Counter()
    for kind, n, _ in tensors:
        weights[kind] += n
    return weights.most_common(1)[0][0]
