"""Advice from a run: per task and context length, the Pareto front of quality, latency and
memory across (model, quant, engine, variant), and a recommended choice under optional limits.

Per candidate (model, quant, and the engine where the run has several, and the variant) in a
(task, L) group, over its measured trials:

- quality: the mean over trials of each trial's quality (the mean of all its quality metrics,
  or one chosen metric), with its 95 % t-interval over those trials; higher is better. When
  no trial of the group has quality, quality is left out of that group's front
  (``Advice.uses_quality`` is false).
- latency: the median ``ttft_s``; lower is better.
- memory: the max ``peak_mem_mb``; lower is better.

A value the device did not report counts as the worst value.

Quality differences within their noise are ties: two candidates whose quality intervals
overlap are equally good, both on the front (neither dominates the other by quality) and in
the recommendation. A handful of trials of a small model often score 0.001 against 0.000,
and ranking those as better and worse would recommend by noise. A candidate with one trial
has no interval (its spread is unknown) and counts at its mean. The recommendation is, among
the candidates within ``max_ttft_s`` and ``max_mem_mb``, those tied with the best quality,
and of them the one with the lowest TTFT, then the lowest memory, then name.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy import stats

from ._errors import UsageError
from ._metrics import field_stat, quality_means
from ._record import FIELD_BY_NAME, LOWER_IS_BETTER_QUALITY, QUALITY_PREFIX, TrialRecord
from ._rundir import RunData

# The two objectives besides quality, each summarised over a candidate's trials by its
# field's statistic (FIELDS): median TTFT, max peak memory.
LATENCY, MEMORY = FIELD_BY_NAME["ttft_s"], FIELD_BY_NAME["peak_mem_mb"]
# The confidence of the quality intervals.
CONFIDENCE = 0.95


def t_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """The two-sided CONFIDENCE t-interval of the mean of ``values``; ``None`` for fewer than
    two values (no spread to estimate)."""
    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * statistics.stdev(values) / n**0.5
    return (mean - half, mean + half)


@dataclass
class Candidate:
    """One (model, quant, engine, variant) at one task and L."""

    model: str
    quant: str
    n: int
    quality: float | None
    ttft_s: float | None
    peak_mem_mb: float | None
    on_front: bool = False
    dominated_by: list[str] = field(default_factory=list)
    excluded_by: list[str] = field(default_factory=list)  # why it misses the limits
    # The engine, named only when the run has several; the variant ("threads=2") or "".
    engine: str = ""
    variant: str = ""
    # The quality's t-interval (t_interval); None with one trial or no quality.
    quality_low: float | None = None
    quality_high: float | None = None

    @property
    def name(self) -> str:
        return "/".join(p for p in (self.model, self.quant, self.engine, self.variant) if p)

    def quality_range(self) -> tuple[float, float] | None:
        """The quality interval, or the mean alone where there is none; None: no quality."""
        if self.quality is None:
            return None
        if self.quality_low is None or self.quality_high is None:
            return (self.quality, self.quality)
        return (self.quality_low, self.quality_high)

    def quality_text(self, digits: int = 3) -> str:
        """The mean with its interval, as advise shows it: ``0.412 [0.35, 0.47]``."""
        if self.quality is None:
            return "-"
        if self.quality_low is None or self.quality_high is None:
            return f"{self.quality:.{digits}f} (n={self.n}, no interval)"
        low, high = self.quality_low, self.quality_high
        return f"{self.quality:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


@dataclass
class Advice:
    """The front and the recommendation for one task and context length."""

    task: str
    context_tokens: int
    uses_quality: bool
    candidates: list[Candidate]
    recommended: str | None  # a Candidate.name, or None when none meets the limits
    message: str  # what was recommended, or why nothing was

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for cand, row in zip(self.candidates, data["candidates"], strict=True):
            row["name"] = cand.name
        return data


def trial_quality(record: TrialRecord | Mapping[str, Any], metric: str | None) -> float | None:
    """A trial's quality: the chosen metric, or the mean of all its numeric quality metrics
    where higher is better (Self-BLEU, lower-is-better, is left out of the mean)."""
    rec = record if isinstance(record, TrialRecord) else TrialRecord.from_json(record)
    if metric is not None:
        return rec.value(QUALITY_PREFIX + metric)
    quality = rec.quality.values
    values = [
        float(v)
        for k, v in quality.items()
        if isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and k not in LOWER_IS_BETTER_QUALITY
    ]
    return statistics.fmean(values) if values else None


def quality_metrics(run: RunData) -> list[str]:
    """The quality metric names present in the run's measured trials."""
    return sorted({k for r in run.measured for k in r.quality.values})


def check_quality_metric(run: RunData, metric: str | None) -> str | None:
    """``metric`` without a ``quality.`` prefix; a :class:`UsageError` when no trial has it."""
    if metric is None:
        return None
    name = metric[len(QUALITY_PREFIX) :] if metric.startswith(QUALITY_PREFIX) else metric
    present = quality_metrics(run)
    if name not in present:
        raise UsageError(
            f"{run.path}: no measured trial has the quality metric {name!r}. Use --quality with "
            f"one of: {', '.join(present) or 'none (no trial has quality; leave --quality out)'}."
        )
    if name in LOWER_IS_BETTER_QUALITY:
        others = [m for m in present if m not in LOWER_IS_BETTER_QUALITY]
        raise UsageError(
            f"--quality {name}: advise recommends the highest quality, but lower {name} is "
            f"better (it measures how alike the answers are). Use one of: "
            f"{', '.join(others) or 'none'}; compare {name} with `devicelab compare`."
        )
    return name


def _worst(value: float | None) -> float:
    return math.inf if value is None else value


def _objectives(c: Candidate, uses_quality: bool) -> tuple[float, ...]:
    """Lower is better in every position."""
    latency_memory = (_worst(c.ttft_s), _worst(c.peak_mem_mb))
    if not uses_quality:
        return latency_memory
    return (-(c.quality if c.quality is not None else -math.inf), *latency_memory)


def quality_tied(a: Candidate, b: Candidate) -> bool:
    """Whether ``a`` and ``b`` are equally good by quality: their intervals overlap (or
    neither has quality)."""
    ra, rb = a.quality_range(), b.quality_range()
    if ra is None or rb is None:
        return ra is rb
    return ra[0] <= rb[1] and rb[0] <= ra[1]


def _quality_better(a: Candidate, b: Candidate) -> bool:
    """Whether ``a``'s quality is better than ``b``'s beyond their noise."""
    if quality_tied(a, b):
        return False
    return (a.quality if a.quality is not None else -math.inf) > (
        b.quality if b.quality is not None else -math.inf
    )


def candidate_dominates(a: Candidate, b: Candidate, uses_quality: bool) -> bool:
    """Whether ``a`` is no worse than ``b`` in every objective and better in one, quality
    within the noise counting as equal."""
    lm_a, lm_b = _objectives(a, False), _objectives(b, False)
    if not uses_quality:
        return dominates(lm_a, lm_b)
    if _quality_better(b, a) or not all(x <= y for x, y in zip(lm_a, lm_b, strict=True)):
        return False
    return _quality_better(a, b) or any(x < y for x, y in zip(lm_a, lm_b, strict=True))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` is no worse than ``b`` everywhere and better somewhere (lower is better)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def mark_front(candidates: list[Candidate], uses_quality: bool) -> None:
    """Set ``on_front`` and ``dominated_by`` on each candidate (quality ties as
    :func:`candidate_dominates` counts them)."""
    for c in candidates:
        c.dominated_by = [o.name for o in candidates if candidate_dominates(o, c, uses_quality)]
        c.on_front = not c.dominated_by


def exclusions(c: Candidate, max_ttft_s: float | None, max_mem_mb: float | None) -> list[str]:
    """Why ``c`` misses the limits (empty when it meets them)."""
    reasons = []
    if max_ttft_s is not None:
        if c.ttft_s is None:
            reasons.append("--max-ttft: ttft_s not reported")
        elif c.ttft_s > max_ttft_s:
            reasons.append(f"--max-ttft: median TTFT {c.ttft_s:.3g} s > {max_ttft_s:g} s")
    if max_mem_mb is not None:
        if c.peak_mem_mb is None:
            reasons.append("--max-mem: peak_mem_mb not reported")
        elif c.peak_mem_mb > max_mem_mb:
            reasons.append(f"--max-mem: peak memory {c.peak_mem_mb:.0f} MB > {max_mem_mb:g} MB")
    return reasons


def recommend(
    candidates: list[Candidate],
    uses_quality: bool,
    max_ttft_s: float | None = None,
    max_mem_mb: float | None = None,
) -> tuple[Candidate | None, str]:
    """The best candidate within the limits (sets ``excluded_by``), and a one-line reason."""
    for c in candidates:
        c.excluded_by = exclusions(c, max_ttft_s, max_mem_mb)
    ok = [c for c in candidates if not c.excluded_by]
    if not ok:
        why = "; ".join(f"{c.name}: {', '.join(c.excluded_by)}" for c in candidates)
        return None, f"no candidate meets the limits ({why})"

    def speed_memory(c: Candidate) -> tuple[float, float, str]:
        return (_worst(c.ttft_s), _worst(c.peak_mem_mb), c.name)

    if not uses_quality:
        best = min(ok, key=speed_memory)
        return (
            best,
            f"recommended {best.name}: lowest TTFT (no quality in these trials) within the limits",
        )
    top = max(ok, key=lambda c: c.quality if c.quality is not None else -math.inf)
    tied = [c for c in ok if quality_tied(c, top)]
    best = min(tied, key=speed_memory)
    if len(tied) == 1:
        return best, f"recommended {best.name}: best quality within the limits"
    others = ", ".join(c.name for c in tied if c is not best)
    return best, (
        f"recommended {best.name}: tied for best quality with {others} (their quality "
        "intervals overlap), and the lowest TTFT, then memory, of them within the limits"
    )


def check_limits(max_ttft_s: float | None, max_mem_mb: float | None) -> None:
    for opt, value in (("--max-ttft", max_ttft_s), ("--max-mem", max_mem_mb)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(f"{opt} must be a positive number, not {value:g}.")


def advise(
    run: RunData,
    max_ttft_s: float | None = None,
    max_mem_mb: float | None = None,
    quality: str | None = None,
) -> list[Advice]:
    """The advice for each (task, context length) of ``run``, sorted by task then L."""
    check_limits(max_ttft_s, max_mem_mb)
    metric = check_quality_metric(run, quality)
    if not run.measured:
        raise UsageError(
            f"{run.path}: no measured trial finished ok (warm-ups are left out); nothing to "
            "advise on. Run the scenario again or give another run directory."
        )
    several_engines = len({r.identity.engine for r in run.measured}) > 1
    groups: dict[tuple[str, int], dict[tuple[str, str, str, str], list[TrialRecord]]] = {}
    for r in run.measured:
        ident = r.identity
        key = (str(ident.task), int(ident.context_tokens or 0))
        engine = str(ident.engine) if several_engines else ""
        who = (str(ident.model), str(ident.quant), engine, str(ident.variant))
        groups.setdefault(key, {}).setdefault(who, []).append(r)
    result = []
    for (task, length), by_variant in sorted(groups.items()):
        candidates = []
        for (model, quant, engine, variant), trials in sorted(by_variant.items()):
            qs = [q for q in (trial_quality(t, metric) for t in trials) if q is not None]
            if metric is not None:
                score = quality_means(trials).get(metric)
            else:
                score = statistics.fmean(qs) if qs else None
            interval = t_interval(qs) if score is not None else None
            candidates.append(
                Candidate(
                    model=model,
                    quant=quant,
                    n=len(trials),
                    quality=score,
                    ttft_s=field_stat(LATENCY, trials),
                    peak_mem_mb=field_stat(MEMORY, trials),
                    engine=engine,
                    variant=variant,
                    quality_low=interval[0] if interval else None,
                    quality_high=interval[1] if interval else None,
                )
            )
        uses_quality = any(c.quality is not None for c in candidates)
        mark_front(candidates, uses_quality)
        best, message = recommend(candidates, uses_quality, max_ttft_s, max_mem_mb)
        result.append(
            Advice(
                task=task,
                context_tokens=length,
                uses_quality=uses_quality,
                candidates=candidates,
                recommended=best.name if best else None,
                message=message,
            )
        )
    return result
