"""Per-token timings: the measures taken from a trial's token arrival times, and the per-run
file that keeps those times (``tokens.jsonl``).

Times are offsets from the request (``TokenStream.t_sent``) in milliseconds, rounded to
0.01 ms; a chunk of k tokens repeats its arrival time k times. An arrival that carried more
than one token is a *batch*: the gaps between its tokens were never seen, so inter-token
latency percentiles are only computed when every arrival after the first carried exactly one
token (the first may carry several: MLC holds back a ``<`` that could start ``<|im_end|>`` and
sends it with the next token). Otherwise they are ``None``, never a guess.

- ITL: the gaps between consecutive arrivals after the first (ms); p50/p90/p99 by linear
  interpolation between order statistics (numpy's default), and the max.
- TPOT: (last - first arrival) / (tokens after the first arrival), in ms.
- decode_tps_first_q / _last_q: tokens arriving after the window's start up to its end, over
  its length, for the first and the last quarter of the answer's token positions.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

TOKENS = "tokens.jsonl"  # one line per trial: {"trial_id", "batched", "ms": [offsets]}
PERCENTILES = (50, 90, 99)


def offsets_ms(t_sent: float, token_times: Sequence[float], digits: int | None = 2) -> list[float]:
    """``token_times`` (perf_counter seconds) as offsets from ``t_sent`` in ms, rounded to
    ``digits`` decimals (``None``: not rounded). Measures are taken from the unrounded
    offsets: two tokens 5 µs apart are two arrivals, though the file shows them equal (its
    ``batched`` flag, not equal offsets, says whether the trial saw batches)."""
    if digits is None:
        return [(t - t_sent) * 1000.0 for t in token_times]
    return [round((t - t_sent) * 1000.0, digits) for t in token_times]


def split_arrivals(times: Sequence[float]) -> list[tuple[float, int]]:
    """(time, tokens) per arrival: consecutive equal times are one arrival."""
    out: list[tuple[float, int]] = []
    for t in times:
        if out and out[-1][0] == t:
            out[-1] = (t, out[-1][1] + 1)
        else:
            out.append((t, 1))
    return out


def is_batched(times: Sequence[float], declared: bool = False) -> bool:
    """Whether some arrival carried more than one token (or the engine said it batches)."""
    return declared or any(n > 1 for _, n in split_arrivals(times))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolated linearly between order statistics."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _window_rate(times: Sequence[float], start: int, end: int) -> float | None:
    """Tokens arriving after ``times[start]`` up to ``times[end]``, per second."""
    a, b = times[start], times[end]
    if b <= a:
        return None
    n = sum(1 for t in times[start + 1 : end + 1] if t > a)
    return n / (b - a) * 1000.0


def measures(
    times: Sequence[float], declared_batched: bool = False, output_tokens: int | None = None
) -> dict[str, Any]:
    """The per-token fields of a trial from its token offsets (ms): ``tokens_batched`` and
    the ITL percentiles, TPOT and quarter decode rates (``None`` where they cannot be told).
    An engine that declared batches and whose ``output_tokens`` are not all in ``times``
    (a server's chunks it could not count) leaves TPOT and the rates null too."""
    out: dict[str, Any] = {
        "tokens_batched": is_batched(times, declared_batched) if times else None,
        **{f"itl_p{q}_ms": None for q in PERCENTILES},
        "itl_max_ms": None,
        "tpot_ms": None,
        "decode_tps_first_q": None,
        "decode_tps_last_q": None,
    }
    arrivals = split_arrivals(times)
    uncounted = declared_batched and output_tokens is not None and output_tokens != len(times)
    if len(arrivals) < 2 or uncounted:
        return out
    after_first = len(times) - arrivals[0][1]
    out["tpot_ms"] = round((times[-1] - times[0]) / after_first, 3)
    resolvable = not declared_batched and all(n == 1 for _, n in arrivals[1:])
    if resolvable:
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
        for q in PERCENTILES:
            out[f"itl_p{q}_ms"] = round(percentile(gaps, q), 3)
        out["itl_max_ms"] = round(max(gaps), 3)
    quarter = (len(times) - 1) // 4
    if quarter >= 1:
        first = _window_rate(times, 0, quarter)
        last = _window_rate(times, len(times) - 1 - quarter, len(times) - 1)
        out["decode_tps_first_q"] = None if first is None else round(first, 3)
        out["decode_tps_last_q"] = None if last is None else round(last, 3)
    return out


def recounted(token_times: Sequence[float], counts: Sequence[int]) -> list[float]:
    """``token_times`` (one per arrival, as an engine that calls ``token`` once per chunk
    leaves them) with each arrival's time repeated for the tokens ``counts`` gives it."""
    arrivals = sorted(set(token_times))
    if len(counts) != len(arrivals):
        raise ValueError(f"{len(counts)} counts for {len(arrivals)} arrivals")
    return [t for t, n in zip(arrivals, counts, strict=True) for _ in range(n)]


def chunk_counts(tokenize: Callable[[str], Sequence[int]], pieces: Sequence[str]) -> list[int]:
    """The tokens each streamed chunk (``pieces``, its text) carried, for
    :func:`recounted`: the growth of the token count of the text so far (a chunk's
    text may merge with the one before it, so chunks are not counted alone). Every chunk
    that came with text carried at least one token. Call it after the stream: it is slow."""
    counts, seen, text = [], 0, ""
    for piece in pieces:
        text += piece
        n = len(tokenize(text))
        counts.append(max(n - seen, 1))
        seen = max(n, seen + 1)
    return counts


def line(trial_id: str, times: Sequence[float], batched: bool) -> str:
    """One line of ``tokens.jsonl``."""
    data = {"trial_id": trial_id, "batched": batched, "ms": list(times)}
    return json.dumps(data, separators=(",", ":")) + "\n"


def read(run_dir: Path) -> dict[str, dict[str, Any]]:
    """trial_id -> ``{"batched", "ms"}`` from ``run_dir/tokens.jsonl`` (``{}`` for a run made
    before devicelab kept token times). The last line of a trial id wins (a resumed trial);
    a torn last line is skipped."""
    return {str(d["trial_id"]): d for d in _lines(run_dir / TOKENS)}


def _lines(file: Path) -> Iterator[dict[str, Any]]:
    if not file.is_file():
        return
    with file.open(encoding="utf-8") as fh:
        for text in fh:
            if not text.endswith("\n"):
                break
            if text.strip():
                data = json.loads(text)
                if isinstance(data, dict) and "trial_id" in data:
                    yield data
