"""Was a trial's prompt prefilled from nothing, and do the engine's own rates agree?

Pure functions over what an engine returns (:class:`devicelab.GenerationResult`), so the
trial record can prove a cold prefill instead of assuming one. Caches fake a fast prefill:
MLC-LLM's radix prefix cache reported ``prefill_tokens = 1`` of 178 prompt tokens after an
earlier request with the same prompt, and the client-side ITPS came out ~100x too high.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._record import TrialRecord

# A client rate further than this (relative) from the engine's own rate is flagged. Decode
# rates measured on a quiet host agree within a few percent; the reference MLC run that
# hid a cached prefix was 15 % apart on decode and ~100x on prefill.
GAP_FLAG = 0.10


def prefix_cached(
    input_tokens: int, prefilled_tokens: int | None, cache_buster_tokens: int = 0
) -> bool | None:
    """Whether part of the prompt was served from a cache instead of being prefilled.

    ``True`` when the engine says it evaluated fewer prompt tokens than the prompt has;
    ``False`` when it evaluated them all, or, with no count from the engine, when a cache
    buster (a unique marker at the very start of the prompt) made reuse impossible; ``None``
    when nothing can decide it.
    """
    for name, value in (
        ("input_tokens", input_tokens),
        ("cache_buster_tokens", cache_buster_tokens),
    ):
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    if prefilled_tokens is not None:
        if prefilled_tokens < 0:
            raise ValueError(f"prefilled_tokens must not be negative, got {prefilled_tokens}")
        return prefilled_tokens < input_tokens
    if cache_buster_tokens > 0:
        return False
    return None


def _gap(client: float | None, engine: float | None) -> float | None:
    if client is None or engine is None or engine <= 0:
        return None
    return (client - engine) / engine


def client_engine_gap(
    itps: float | None,
    otps: float | None,
    engine_prefill_tps: float | None,
    engine_decode_tps: float | None,
) -> dict[str, float | None]:
    """The relative gap of each client rate from the engine's own: (client - engine) / engine.

    ``{"itps": ..., "otps": ...}``; positive when the client measured faster than the engine
    says it ran (a cached prefix makes ITPS far too high), ``None`` where either side is
    missing or the engine's rate is not positive.
    """
    return {"itps": _gap(itps, engine_prefill_tps), "otps": _gap(otps, engine_decode_tps)}


def flagged_gaps(gaps: dict[str, float | None], threshold: float = GAP_FLAG) -> list[str]:
    """The rates (keys of :func:`client_engine_gap`'s answer) whose gap exceeds ``threshold``."""
    return [k for k, v in gaps.items() if v is not None and abs(v) > threshold]


def run_notes(records: Iterable[TrialRecord]) -> list[str]:
    """One line each for the measured trials whose cold prefill nothing proved and those whose
    client rates stray from the engine's own; nothing when every trial is proven and agrees."""
    measured = [r for r in records if r.measured]
    unknown = [r for r in measured if r.measures.prefix_cached is None]
    strayed = [r for r in measured if flagged_gaps(dict(r.measures.client_engine_gap))]
    notes = []
    if unknown:
        notes.append(
            f"{len(unknown)} of {len(measured)} measured trials could not prove a cold prefill "
            "(prefix_cached = null: the engine reports no prefill count and no cache buster "
            "was used), so their TTFT and ITPS may include a cached prefix."
        )
    if strayed:
        notes.append(
            f"{len(strayed)} of {len(measured)} measured trials have client ITPS or OTPS more "
            f"than {GAP_FLAG:.0%} from the engine's own rate (client_engine_gap); read "
            "engine_timings beside them before trusting either."
        )
    return notes
