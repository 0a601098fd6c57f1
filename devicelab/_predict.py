"""Predict, then verify: a small performance model per device (docs/prediction.md).

The model, per cell (model file, L, output tokens):

- decode: each output token reads every weight it multiplies once, and the K and V of every
  position before it, so its time is ``layers * overhead + (weight bytes + kv bytes per token
  * position) / bandwidth``; OTPS is one over that time at the middle of the output.
- prefill: ``fixed + 2 * matmul params * N / flops + 2 * layers * heads * head_dim * N**2 /
  attention flops`` (the attention term is the causal QK and AV products over N tokens);
  TTFT is that time, ITPS is N over it.
- peak memory: ``baseline + file bytes (mapped, every page touched) + KV cache (n_ctx
  positions) + compute buffers``.

The six coefficients (``overhead``, ``bandwidth``, ``fixed``, ``flops``, ``attention flops``,
``baseline``) are fitted by non-negative least squares on relative error from a probe run on
the device (:func:`fit`), never typed in; the shape of the model (bytes, parameters, layers,
heads) comes from each GGUF file (:func:`model_shape`), so a model never run on the device is
predicted from its file alone.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, Field

from ._catalogue import cached_info
from ._errors import ModelError, UsageError
from ._scenarioerrors import As
from ._validation import STRICT

# The fields a prediction gives, in the order of the summary's FIELDS.
PREDICTED = ("itps", "otps", "ttft_s", "runtime_s", "peak_mem_mb")
MB = 1024 * 1024  # the host's telemetry reports RSS in MiB (psutil rss / 2**20)
# llama.cpp keeps the output logits in f32, and its compute buffers are f32 too.
F32 = 4
CALIBRATION_VERSION = 2


@dataclass(frozen=True)
class ModelShape:
    """What the performance model needs of one model file, all read from the GGUF."""

    path: str
    name: str
    quant: str
    file_bytes: int
    weight_bytes: int  # every tensor
    decode_bytes: int  # read per output token: all but an untied token embedding (a lookup)
    matmul_params: int  # multiplied per prompt token: all but the token embedding
    layers: int
    heads: int
    attn_dim: int  # heads * head_dim: the width of the QK and AV products
    kv_bytes_per_token: int
    n_embd: int
    n_vocab: int
    n_ff: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def model_shape(path: Path) -> ModelShape:
    """The :class:`ModelShape` of the GGUF at ``path``; a file without the metadata the
    model needs is a :class:`~devicelab.ModelError` naming each missing key."""
    info = cached_info(path)
    arch = info.architecture
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    tensors = {
        t.name: (int(t.n_elements), int(t.n_bytes), [int(d) for d in t.shape])
        for t in reader.tensors
    }
    embd = tensors.get("token_embd.weight")
    missing = [
        key
        for key, value in (
            (f"{arch}.block_count", info.layers),
            (f"{arch}.attention.head_count", info.heads),
            (f"{arch}.attention.head_count_kv", info.kv_heads),
            (f"{arch}.attention.key_length or {arch}.embedding_length", info.head_dim),
            ("token_embd.weight (tensor)", embd),
        )
        if value is None
    ]
    if missing:
        raise ModelError(
            f"{path} lacks what the performance model needs: {', '.join(missing)}. It cannot "
            "be predicted; a GGUF written by llama.cpp's convert_hf_to_gguf.py has them all."
        )
    assert embd is not None and info.layers and info.heads and info.head_dim
    assert info.kv_bytes_per_token is not None
    weight_bytes = sum(b for _, b, _ in tensors.values())
    embd_n, embd_b, embd_dims = embd
    # Tied output (no output.weight): the embedding is the output matrix, read whole per token.
    tied = "output.weight" not in tensors
    n_embd, n_vocab = [*embd_dims, 1, 1][:2]
    ffn = tensors.get("blk.0.ffn_up.weight") or tensors.get("blk.0.ffn_gate.weight")
    n_ff = ffn[2][1] if ffn and len(ffn[2]) > 1 else 4 * n_embd
    return ModelShape(
        path=str(path),
        name=info.name,
        quant=info.quant,
        file_bytes=info.size_bytes,
        weight_bytes=weight_bytes,
        decode_bytes=weight_bytes if tied else weight_bytes - embd_b,
        matmul_params=info.params - embd_n,
        layers=info.layers,
        heads=info.heads,
        attn_dim=info.heads * info.head_dim,
        kv_bytes_per_token=info.kv_bytes_per_token,
        n_embd=n_embd,
        n_vocab=n_vocab,
        n_ff=n_ff,
    )


def compute_buffer_bytes(shape: ModelShape, n_ctx: int, n_batch: int) -> int:
    """llama.cpp's CPU compute buffer, as its graph allocator sizes it: the largest live set
    of f32 activations of one batch of ``n_batch`` tokens, which the attention scores
    (``heads`` x ``n_batch`` x ``n_ctx``) and the FFN's up and gate rows dominate, plus the
    output logits buffer (one row of ``n_vocab``, the last position's, per sequence)."""
    scores = shape.heads * n_batch * n_ctx
    ffn = 2 * n_batch * shape.n_ff
    logits = shape.n_vocab
    return F32 * (scores + ffn + logits)


# -- the fitted coefficients -------------------------------------------------------------


@dataclass(frozen=True)
class Coefficients:
    overhead_s_per_layer: float  # decode: per layer per token, whatever the bytes
    bandwidth_bytes_s: float  # decode: effective memory bandwidth
    prefill_fixed_s: float  # a prompt of 0 tokens (the request, the first sample)
    prefill_s_per_layer_token: float  # prefill: per layer per prompt token, whatever the FLOPs
    flops_s: float  # prefill: matmul throughput, 2 FLOPs per parameter per token
    attention_flops_s: float  # prefill: the causal QK and AV products
    baseline_mb: float  # the engine's process without a model

    def to_json(self) -> dict[str, float | None]:
        # A term the fit dropped is an infinite rate; JSON has no infinity, so null.
        return {k: None if math.isinf(v) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Calibration:
    """A device's fitted coefficients, with where they came from."""

    device: str
    coefficients: Coefficients
    created_at: str  # ISO 8601, UTC
    probe: Mapping[str, Any]  # run dir, run id, model file and its sha256, engine, trials
    # Median |error| (%) of TTFT and OTPS on the probe, and its noisy-only points.
    fit_error_pct: Mapping[str, float] = field(default_factory=dict)
    version: int = CALIBRATION_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "device": self.device,
            "created_at": self.created_at,
            "coefficients": self.coefficients.to_json(),
            "fit_error_pct": dict(self.fit_error_pct),
            "probe": dict(self.probe),
        }

    @classmethod
    def from_json(cls, data: Any, where: Path) -> Calibration:
        if not isinstance(data, Mapping):
            data = {}
        if data.get("version") != CALIBRATION_VERSION:
            raise UsageError(
                f"{where} is a calibration of version {data.get('version')!r}; this devicelab "
                f"reads version {CALIBRATION_VERSION} (its model has other terms). Make it "
                f"again: devicelab calibrate {where.stem}"
            )
        try:
            return cls(
                device=str(data["device"]),
                coefficients=Coefficients(
                    **{
                        k: math.inf if v is None else float(v)
                        for k, v in data["coefficients"].items()
                    }
                ),
                created_at=str(data["created_at"]),
                probe=dict(data.get("probe") or {}),
                fit_error_pct=dict(data.get("fit_error_pct") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UsageError(
                f"{where} is not a calibration this devicelab reads ({type(exc).__name__}: "
                f"{exc}). Make it again: devicelab calibrate {where.stem}"
            ) from None


def calibrations_dir(override: Path | None = None) -> Path:
    """Where calibrations are kept: ``override`` (``--calibrations``), else
    ``$DEVICELAB_CALIBRATIONS``, else ``<cache>/calibrations`` (never in a source tree)."""
    import os

    from ._api import cache_dir

    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("DEVICELAB_CALIBRATIONS")
    return Path(env).expanduser() if env else cache_dir() / "calibrations"


def calibration_path(device: str, where: Path | None = None) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in device)
    return calibrations_dir(where) / f"{safe}.json"


def no_calibration(device: str, path: Path) -> UsageError:
    return UsageError(
        f"device {device!r} has no calibration ({path} does not exist), so nothing can be "
        f"predicted for it. Make one with `devicelab calibrate {device}`: it runs a short "
        "fixed probe (the shipped SmolLM2 at several prompt lengths, about three minutes on a "
        "laptop) with the device's own engine and fits its bandwidth, prefill throughput and "
        "memory baseline."
    )


def load_calibration(device: str, where: Path | None = None) -> Calibration:
    path = calibration_path(device, where)
    if not path.is_file():
        raise no_calibration(device, path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"{path} cannot be read ({exc}). Make it again: devicelab calibrate {device}"
        ) from None
    return Calibration.from_json(data, path)


def find_calibration(device: str, where: Path | None = None) -> Calibration | None:
    """The device's calibration, or ``None`` when it has none (a run then predicts nothing)."""
    if not calibration_path(device, where).is_file():
        return None
    return load_calibration(device, where)


def save_calibration(cal: Calibration, where: Path | None = None) -> Path:
    path = calibration_path(cal.device, where)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cal.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# -- fitting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One probe trial: what it was asked and what it measured."""

    input_tokens: int
    output_tokens: int
    ttft_s: float | None
    otps: float | None
    peak_mem_mb: float | None
    noisy: bool = False  # other processes used the CPU while it ran (devicelab._noise)


def nnls_relative(rows: Sequence[Sequence[float]], ys: Sequence[float]) -> list[float]:
    """Non-negative coefficients ``c`` minimising ``sum(((rows @ c) - y) / y) ** 2)``: least
    squares on relative error (the error a user reads is a percentage), every term kept
    physical (a negative time or throughput is no answer, only a trade between terms)."""
    import numpy as np
    from scipy.optimize import nnls

    a = np.asarray(rows, dtype=float)
    y = np.asarray(ys, dtype=float)
    weights = 1.0 / y
    # Columns scaled to unit size so the solver's tolerance means the same for each term.
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls((a * weights[:, None]) / scale, y * weights)
    return [float(c) for c in coef / scale]


def decode_row(shape: ModelShape, position: float) -> list[float]:
    return [float(shape.layers), shape.decode_bytes + shape.kv_bytes_per_token * position]


def prefill_row(shape: ModelShape, n: int) -> list[float]:
    return [
        1.0,
        float(shape.layers * n),
        2.0 * shape.matmul_params * n,
        2.0 * shape.layers * shape.attn_dim * n * n,
    ]


def memory_model_bytes(shape: ModelShape, n_ctx: int, n_batch: int) -> int:
    """What a loaded model adds to its process: the mapped file, the KV cache and the
    compute buffers."""
    kv = shape.kv_bytes_per_token * n_ctx
    return shape.file_bytes + kv + compute_buffer_bytes(shape, n_ctx, n_batch)


def _typical_by(samples: Iterable[Sample], key: Any, value: Any) -> tuple[dict[Any, float], int]:
    """Per ``key``, the median ``value`` of its quiet samples; where all were noisy, the
    smallest (the fastest trial): the model is of the device alone, and another job on a
    shared machine only ever slows a trial down, so the fastest is the one it touched least.
    Also how many keys had no quiet sample."""
    groups: dict[Any, list[tuple[bool, float]]] = {}
    for s in samples:
        v = value(s)
        if v is not None and v > 0:
            groups.setdefault(key(s), []).append((s.noisy, v))
    out, noisy_only = {}, 0
    for k, got in groups.items():
        quiet = [v for noisy, v in got if not noisy]
        if quiet:
            out[k] = statistics.median(quiet)
        else:
            out[k] = min(v for _, v in got)
            noisy_only += 1
    return out, noisy_only


Probe = tuple[ModelShape, Sequence[Sample]]


def fit(probes: Sequence[Probe], n_ctx: int, n_batch: int) -> tuple[Coefficients, dict[str, float]]:
    """The coefficients that best explain the probe trials of each model in ``probes``
    (the first is the one the memory baseline is taken from), and the median absolute error
    (%) of TTFT and OTPS on the probe itself, with how many points of each fit came from
    noisy trials only.

    Two models of different depth (the probe's SmolLM2 and a cut of its first layers) tell
    the per-layer costs apart from the per-byte and per-FLOP ones; with one model they are
    not identifiable and the fit puts them wherever it fits best."""
    prefill_rows: list[list[float]] = []
    prefill_ys: list[float] = []
    decode_rows: list[list[float]] = []
    decode_ys: list[float] = []
    noisy_prefill = noisy_decode = 0
    points: list[tuple[ModelShape, dict[Any, float], dict[Any, float]]] = []
    for shape, samples in probes:
        ok = [s for s in samples if s.input_tokens > 0]
        prefill, n_p = _typical_by(ok, lambda s: s.input_tokens, lambda s: s.ttft_s)
        decode, n_d = _typical_by(
            ok,
            lambda s: s.input_tokens + s.output_tokens / 2,
            lambda s: 1 / s.otps if s.otps else None,
        )
        noisy_prefill += n_p
        noisy_decode += n_d
        prefill_rows += [prefill_row(shape, n) for n in prefill]
        prefill_ys += list(prefill.values())
        decode_rows += [decode_row(shape, p) for p in decode]
        decode_ys += list(decode.values())
        points.append((shape, prefill, decode))
    if len(prefill_ys) < 3 or len(decode_ys) < 2:
        raise UsageError(
            f"the probe has too few usable trials to fit ({len(prefill_ys)} prompt lengths "
            f"with a TTFT, {len(decode_ys)} with an OTPS; needs 3 and 2). Run it again: "
            "devicelab calibrate DEVICE (without --refit)."
        )
    if len({round(r[1], -4) for r in decode_rows}) < 2:
        raise UsageError("the probe's decode trials all read the same bytes; nothing to fit.")
    over, inv_bw = nnls_relative(decode_rows, decode_ys)
    fixed, per_layer, inv_flops, inv_att = nnls_relative(prefill_rows, prefill_ys)
    first, first_samples = probes[0]
    mems = [s.peak_mem_mb for s in first_samples if s.peak_mem_mb]
    if not mems:
        raise UsageError(
            "the probe measured no memory (no mem_mb telemetry): the device's telemetry must "
            "report the engine's memory to calibrate it. Check [telemetry] on this device."
        )
    baseline = max(mems) - memory_model_bytes(first, n_ctx, n_batch) / MB
    coef = Coefficients(
        overhead_s_per_layer=over,
        bandwidth_bytes_s=1 / inv_bw if inv_bw > 0 else math.inf,
        prefill_fixed_s=fixed,
        prefill_s_per_layer_token=per_layer,
        flops_s=1 / inv_flops if inv_flops > 0 else math.inf,
        attention_flops_s=1 / inv_att if inv_att > 0 else math.inf,
        baseline_mb=max(0.0, baseline),
    )
    errors: dict[str, list[float]] = {"ttft_s": [], "otps": []}
    for shape, prefill, decode in points:
        for n, t in prefill.items():
            errors["ttft_s"].append(abs(prefill_s(shape, coef, n) / t - 1) * 100)
        for p, t in decode.items():
            errors["otps"].append(abs((1 / decode_token_s(shape, coef, p)) * t - 1) * 100)
    said: dict[str, float] = {k: round(statistics.median(v), 2) for k, v in errors.items() if v}
    # How many points of each fit had only noisy trials (their fastest was used).
    said["noisy_prefill_points"] = noisy_prefill
    said["noisy_decode_points"] = noisy_decode
    return coef, said


# -- predicting --------------------------------------------------------------------------


def _per(x: float, rate: float) -> float:
    return 0.0 if math.isinf(rate) else x / rate


def decode_token_s(shape: ModelShape, c: Coefficients, position: float) -> float:
    bytes_read = shape.decode_bytes + shape.kv_bytes_per_token * position
    return shape.layers * c.overhead_s_per_layer + _per(bytes_read, c.bandwidth_bytes_s)


def prefill_s(shape: ModelShape, c: Coefficients, n: int) -> float:
    return (
        c.prefill_fixed_s
        + shape.layers * n * c.prefill_s_per_layer_token
        + _per(2.0 * shape.matmul_params * n, c.flops_s)
        + _per(2.0 * shape.layers * shape.attn_dim * n * n, c.attention_flops_s)
    )


@dataclass(frozen=True)
class Prediction:
    itps: float
    otps: float
    ttft_s: float
    runtime_s: float
    peak_mem_mb: float

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def predict(
    shape: ModelShape,
    cal: Calibration,
    input_tokens: int,
    output_tokens: int,
    n_ctx: int = 2048,
    n_batch: int = 512,
) -> Prediction:
    """One cell's prediction: a prompt of ``input_tokens``, ``output_tokens`` generated."""
    c = cal.coefficients
    ttft = prefill_s(shape, c, input_tokens)
    # OTPS counts the tokens after the first over the time they took (devicelab._metrics).
    after = max(1, output_tokens - 1)
    per_token = decode_token_s(shape, c, input_tokens + output_tokens / 2)
    mem = c.baseline_mb + memory_model_bytes(shape, n_ctx, n_batch) / MB
    return Prediction(
        itps=input_tokens / ttft if ttft > 0 else math.inf,
        otps=1 / per_token if per_token > 0 else math.inf,
        ttft_s=ttft,
        runtime_s=ttft + after * per_token,
        peak_mem_mb=mem,
    )


def error_pct(measured: float | None, predicted: float | None) -> float | None:
    """(measured - predicted) / predicted in %: positive when the cell did better than a
    throughput prediction or took longer than a time prediction said."""
    if measured is None or predicted is None or not predicted or math.isinf(predicted):
        return None
    return round((measured - predicted) / predicted * 100, 2)


def cut_layers(source: Path, out: Path, layers: int) -> Path:
    """Write the first ``layers`` blocks of the GGUF at ``source`` (its embedding, output
    norm and every other tensor outside the blocks kept, the tensors' types and bytes as
    they are) as a GGUF at ``out``: the same model family and quant, fewer layers, so a
    probe of both tells a device's per-layer cost from its per-byte one. Its text is
    nonsense; only its speed is wanted. Made once: an existing ``out`` is reused."""
    if out.is_file():
        return out
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(str(source))
    arch = str(reader.fields["general.architecture"].contents())
    key = f"{arch}.block_count"
    if key not in reader.fields:
        raise ModelError(f"{source} has no {key}: it cannot be cut to {layers} layers.")
    have = int(reader.fields[key].contents())
    if not 0 < layers < have:
        raise UsageError(f"cannot cut {source} ({have} layers) to {layers} layers.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    writer = GGUFWriter(str(tmp), arch=arch, endianess=reader.endianess)
    for fld in reader.fields.values():
        if fld.name.startswith("GGUF.") or fld.name == "general.architecture":
            continue
        if fld.name == key:
            writer.add_block_count(layers)
            continue
        vtype = fld.types[0]
        sub = fld.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(fld.name, fld.contents(), vtype, sub_type=sub)

    def kept(name: str) -> bool:
        if not name.startswith("blk."):
            return True
        return int(name.split(".")[1]) < layers

    tensors = [t for t in reader.tensors if kept(t.name)]
    for t in tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in tensors:
        writer.write_tensor_data(t.data)
    writer.close()
    tmp.replace(out)
    return out


class PredictionTable(BaseModel):
    """The scenario's ``[prediction]`` table (with the feature, as ``[sustained]``)."""

    model_config = STRICT
    # Only when set: what counts as a miss changes nothing a run measures.
    written_when_default: ClassVar[bool] = False
    band_pct: Annotated[float, As("prediction_band_pct")] = Field(
        25.0,
        gt=0,
        description="in %: a cell whose median ITPS, OTPS, TTFT, runtime or peak memory is "
        "further than this from its prediction (the device's calibration: `devicelab "
        "calibrate`) is marked and named in the run's last lines; see docs/prediction.md",
    )
