"""Speed metrics from timestamps and token counts, exactly as the contracts define them.

- TTFT = request sent -> first output token
- ITPS = input_tokens / TTFT
- OTPS = (output_tokens - 1) / (last token time - first token time)
- runtime = request sent -> last token
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Speed:
    ttft_s: float | None
    itps: float | None
    otps: float | None
    runtime_s: float | None


def speed(
    t_sent: float, token_times: Sequence[float], input_tokens: int, output_tokens: int
) -> Speed:
    """Compute the speed metrics. Values that the data cannot give are ``None``."""
    if not token_times:
        return Speed(None, None, None, None)
    first, last = token_times[0], token_times[-1]
    ttft = first - t_sent
    itps = input_tokens / ttft if ttft > 0 else None
    span = last - first
    otps = (output_tokens - 1) / span if output_tokens > 1 and span > 0 else None
    return Speed(ttft_s=ttft, itps=itps, otps=otps, runtime_s=last - t_sent)


SUMMARY_METRICS = ("itps", "otps", "ttft_s", "runtime_s")
SUMMARY_KEYS = ("device", "model", "quant", "task", "context_tokens")


def is_measured(record: Mapping[str, Any]) -> bool:
    """A trial that counts in summaries, comparisons and gates: finished ok, not a warm-up."""
    return record.get("status") == "ok" and not record.get("warmup")


def summarize(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Median ITPS, OTPS, TTFT and runtime, and max peak memory, per key of measured trials.

    Warm-up and failed trials are left out; ``n`` counts the trials behind each row.
    ``quality`` holds the mean of each quality metric (over the trials that have it).
    """
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for rec in records:
        if not is_measured(rec):
            continue
        key = tuple(rec.get(k) for k in SUMMARY_KEYS)
        groups.setdefault(key, []).append(rec)
    rows = []
    for key, recs in groups.items():
        row: dict[str, Any] = dict(zip(SUMMARY_KEYS, key, strict=True))
        row["n"] = len(recs)
        for metric in SUMMARY_METRICS:
            row[metric] = median([r.get(metric) for r in recs])
        mems = [r["peak_mem_mb"] for r in recs if r.get("peak_mem_mb") is not None]
        row["peak_mem_mb"] = max(mems) if mems else None
        temps = [r["max_temp_c"] for r in recs if r.get("max_temp_c") is not None]
        row["max_temp_c"] = max(temps) if temps else None
        row["quality"] = quality_means(recs)
        rows.append(row)
    rows.sort(
        key=lambda r: tuple(str(r[k]) if k != "context_tokens" else r[k] for k in SUMMARY_KEYS)
    )
    return rows


def quality_means(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The mean of each numeric ``quality`` value over ``records`` that have it."""
    values: dict[str, list[float]] = {}
    for rec in records:
        quality = rec.get("quality")
        if not isinstance(quality, Mapping):
            continue
        for name, value in quality.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values.setdefault(str(name), []).append(float(value))
    return {name: statistics.fmean(v) for name, v in sorted(values.items())}


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
