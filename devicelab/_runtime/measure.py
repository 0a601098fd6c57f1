"""What an attempt measured: its record's measures from the engine's result, the token stream's
timestamps and the telemetry samples taken while it ran. Pure: no device, no engine."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from .. import _metrics as metrics
from .. import _noise as noise
from .. import _prefill as prefill
from .. import _tokens as tokens
from .._api import GenerationResult, TokenStream
from .._record import FIELDS, Measures

Sample = dict[str, Any]


@dataclass(frozen=True)
class Measured:
    """An attempt's measures, its text, its tokens' offsets (ms) and, when what it measured
    makes the trial fail (no output, a cached prefix), why."""

    measures: Measures
    text: str | None = None
    token_ms: list[float] = field(default_factory=list)
    error: str | None = None


def measure(
    samples: list[Sample],
    stream: TokenStream,
    result: GenerationResult | None,
    *,
    allow_prefix_cache: bool,
) -> Measured:
    """The measures of one attempt; ``result`` is ``None`` when the engine raised."""
    error: str | None = None
    measured: dict[str, Any] = from_samples(samples)
    text = None
    token_ms: list[float] = []
    if stream.t_sent is not None:
        # Kept whatever became of the trial (a timeout keeps the tokens it saw).
        exact = tokens.offsets_ms(stream.t_sent, stream.token_times, None)
        n_out = None if result is None else result.output_tokens
        measured.update(tokens.measures(exact, stream.batched, n_out))
        token_ms = tokens.offsets_ms(stream.t_sent, stream.token_times)
    if result is not None and stream.t_sent is not None:
        speed = metrics.speed(
            stream.t_sent, stream.token_times, result.input_tokens, result.output_tokens
        )
        cached = prefill.prefix_cached(
            result.input_tokens, result.prefilled_tokens, result.cache_buster_tokens
        )
        measured.update(
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            ttft_s=speed.ttft_s,
            itps=speed.itps,
            otps=speed.otps,
            runtime_s=speed.runtime_s,
            engine_timings=result.engine_timings,
            prefilled_tokens=result.prefilled_tokens,
            cache_buster_tokens=result.cache_buster_tokens,
            prefix_cached=cached,
            client_engine_gap=prefill.client_engine_gap(
                speed.itps, speed.otps, result.engine_prefill_tps, result.engine_decode_tps
            ),
        )
        text = result.text
        if result.output_tokens == 0:
            error = "the engine produced no output tokens"
        elif cached and not allow_prefix_cache:
            error = (
                f"prefix cache: the engine prefilled {result.prefilled_tokens} of "
                f"{result.input_tokens} prompt tokens, so TTFT and ITPS are not a cold "
                "prefill's. Turn the engine's prompt cache off, or set [scenario] "
                "allow_prefix_cache = true to measure caching on purpose."
            )
    return Measured(Measures(**measured), text, token_ms, error)


def from_samples(samples: list[Sample]) -> dict[str, Any]:
    """Trial fields derived from telemetry: peak memory, hottest sensor, energy."""
    mems = [s["mem_mb"] for s in samples if s.get("mem_mb") is not None]
    temps = [s["temp_c"] for s in samples if s.get("temp_c") is not None]
    power = [(s["t"], s["power_w"]) for s in samples if s.get("power_w") is not None]
    energy = None
    if len(power) >= 2:
        # Trapezoids between samples: the sampler's clock is not perfectly regular.
        energy = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(power))
    on_battery = [s["on_battery"] for s in samples if s.get("on_battery") is not None]
    return {
        "other_cpu_pct": noise.other_cpu_pct(samples),
        "peak_mem_mb": round(max(mems), 1) if mems else None,
        "max_temp_c": max(temps) if temps else None,
        "energy_j": None if energy is None else round(energy, 3),
        "energy_reliable": (all(on_battery) if on_battery else False)
        if energy is not None
        else None,
    }


def figures(attempt: int, measures: Measures) -> dict[str, Any]:
    """A noisy attempt's figures, kept in the record that replaces it."""
    out: dict[str, Any] = {"attempt": attempt, "other_cpu_pct": measures.other_cpu_pct}
    for f in FIELDS:
        value = getattr(measures, f.name, None)
        if f.per_trial and value is not None and f.name not in out:
            out[f.name] = value
    return out
