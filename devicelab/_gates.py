"""Regression gates: compare a candidate run with a baseline, key by key, check by check.

A check is ``METRIC:STAT:THRESHOLD`` as in pytest-benchmark's ``--benchmark-compare-fail``:
``otps:median:5%`` (relative) or ``peak_mem_mb:max:50`` (absolute, in the metric's unit).
It FAILS only when the candidate's statistic is worse than the baseline's by more than the
threshold AND a one-sided Mann-Whitney U test (candidate worse) gives p < alpha (0.01).
Fewer than :data:`MIN_VALUES` values on either side is INCONCLUSIVE, never a pass.

Mann-Whitney U (``scipy.stats.mannwhitneyu``): the exact null distribution when there are
no ties and both samples are at most 50; otherwise the normal approximation with the tie
correction of the variance and a 0.5 continuity correction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from scipy import stats

from ._errors import UsageError
from ._noise import gate_note, noisy_count
from ._provenance import report
from ._record import RUN_KEY, STATS, cell_label, cell_sort_key, hidden_keys, higher_is_better
from ._rundir import RunData, RunKey, check_metric

MIN_VALUES = 5
DEFAULT_ALPHA = 0.01
EXACT_MAX_N = 50

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"

SPEC_HELP = (
    "Write checks as METRIC:STAT:THRESHOLD, for example otps:median:5% (relative), "
    "ttft_s:median:10% or peak_mem_mb:max:50 (absolute, in the metric's unit); STAT is one of "
    f"{', '.join(STATS)}."
)


class GateSpecError(UsageError):
    """A check spec or gate option that cannot be used."""


@dataclass(frozen=True)
class Check:
    metric: str
    stat: str
    threshold: float
    relative: bool

    @property
    def spec(self) -> str:
        num = f"{self.threshold:g}"
        return (
            f"{self.metric}:{self.stat}:{num}%"
            if self.relative
            else (f"{self.metric}:{self.stat}:{num}")
        )


def parse_check(spec: str) -> Check:
    """Parse ``METRIC:STAT:THRESHOLD``; a :class:`GateSpecError` that names the fix."""
    parts = spec.strip().split(":")
    if len(parts) != 3:
        raise GateSpecError(f"bad check {spec!r}: expected three parts. {SPEC_HELP}")
    metric, stat, threshold = (p.strip() for p in parts)
    try:
        check_metric(metric)  # a field of FIELDS or quality.NAME
    except UsageError as exc:
        raise GateSpecError(f"bad check {spec!r}: {exc}") from None
    if stat not in STATS:
        raise GateSpecError(f"bad check {spec!r}: unknown statistic {stat!r}. {SPEC_HELP}")
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(%?)", threshold)
    if not m:
        raise GateSpecError(
            f"bad check {spec!r}: threshold {threshold!r} is not a non-negative number "
            f"(with % for a relative threshold). {SPEC_HELP}"
        )
    return Check(metric, stat, float(m.group(1)), relative=bool(m.group(2)))


def check_alpha(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise GateSpecError(f"alpha must be between 0 and 1 (exclusive), not {alpha}; e.g. 0.01.")
    return alpha


# --- Mann-Whitney U -------------------------------------------------------------------------


def mann_whitney_greater(x: list[float], y: list[float]) -> tuple[float, float]:
    """One-sided Mann-Whitney U test of H1 "x tends to be larger than y".

    Returns ``(U, p)`` with U = #{(xi, yj): xi > yj} + 0.5 #{xi == yj}. Exact p without ties
    when both samples have at most 50 values; otherwise the normal approximation with tie
    correction and continuity correction.
    """
    if not x or not y:
        raise ValueError("both samples need at least one value")
    if len(set(x) | set(y)) == 1:
        return len(x) * len(y) / 2, 1.0  # every value equal: no evidence either way
    ties = len(set(x) | set(y)) < len(x) + len(y)
    # scipy's exact distribution assumes no ties; with ties only the approximation is right.
    exact = not ties and len(x) <= EXACT_MAX_N and len(y) <= EXACT_MAX_N
    res = stats.mannwhitneyu(x, y, alternative="greater", method="exact" if exact else "asymptotic")
    return float(res.statistic), float(res.pvalue)


# --- comparing runs -------------------------------------------------------------------------


@dataclass
class GateResult:
    key: RunKey
    check: Check
    status: str
    reason: str
    n_baseline: int = 0
    n_candidate: int = 0
    baseline: float | None = None
    candidate: float | None = None
    change_pct: float | None = None  # signed: (candidate - baseline) / |baseline|
    p_value: float | None = None
    # Cell keys left out of the name because they tell no two cells apart (record.hidden_keys).
    hide: tuple[str, ...] = ()
    # Measured trials of the key marked noisy (other processes used the CPU) on each side.
    noisy_baseline: int = 0
    noisy_candidate: int = 0

    @property
    def name(self) -> str:
        return f"{self.key.label(self.hide)}:{self.check.spec}"


@dataclass
class Comparison:
    results: list[GateResult]
    warnings: list[str] = field(default_factory=list)
    # The "provenance differs:" block (devicelab._provenance.report); empty when the builds,
    # model files, hosts and phones of the two runs are the same.
    provenance: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 all pass; 1 a regression; 3 inconclusive (and no regression)."""
        statuses = {r.status for r in self.results}
        if FAIL in statuses:
            return 1
        return 3 if INCONCLUSIVE in statuses or not self.results else 0


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def evaluate(
    key: RunKey, check: Check, base: list[float], cand: list[float], alpha: float
) -> GateResult:
    res = GateResult(key, check, INCONCLUSIVE, "", len(base), len(cand))
    if base and cand:
        stat = STATS[check.stat]
        res.baseline, res.candidate = stat(base), stat(cand)
        if res.baseline != 0:
            res.change_pct = (res.candidate - res.baseline) / abs(res.baseline) * 100
    if len(base) < MIN_VALUES or len(cand) < MIN_VALUES:
        res.reason = (
            f"inconclusive: {check.metric} has {len(base)} baseline and {len(cand)} candidate "
            f"measured values; at least {MIN_VALUES} on each side are needed (add repetitions)"
        )
        return res
    assert res.baseline is not None and res.candidate is not None
    higher = higher_is_better(check.metric)
    worse_by = res.baseline - res.candidate if higher else res.candidate - res.baseline
    if check.relative:
        if res.baseline == 0:
            worse_pct = math.inf if worse_by > 0 else 0.0
        else:
            worse_pct = worse_by / abs(res.baseline) * 100
        over = worse_pct > check.threshold
    else:
        over = worse_by > check.threshold
    # H1: the candidate is worse: smaller when higher is better, larger otherwise.
    _, res.p_value = (
        mann_whitney_greater(base, cand) if higher else mann_whitney_greater(cand, base)
    )
    significant = res.p_value < alpha
    numbers = (
        f"{check.stat} {check.metric}: baseline {_fmt(res.baseline)}, candidate "
        f"{_fmt(res.candidate)}, change "
        f"{'-' if res.change_pct is None else f'{res.change_pct:+.1f}%'}, "
        f"p={res.p_value:.3g} (one-sided Mann-Whitney U, n={len(base)}/{len(cand)}, "
        f"alpha={alpha:g}; {'higher' if higher else 'lower'} is better)"
    )
    if over and significant:
        res.status = FAIL
        res.reason = f"regression beyond {check.spec}: {numbers}"
    else:
        res.status = PASS
        why = (
            "within the threshold" if not over else "worse beyond the threshold but not significant"
        )
        res.reason = f"{why}: {numbers}"
    return res


def _measured_somewhere(check: Check, baseline: RunData, candidate: RunData) -> None:
    """A :class:`GateSpecError` when no measured trial of either run has ``check``'s metric:
    such a gate could never pass, so it is a mistake in the gate, not an inconclusive run."""
    runs = (baseline, candidate)
    if any(r.value(check.metric) is not None for run in runs for r in run.measured):
        return
    raise GateSpecError(
        f"bad check {check.spec!r}: no measured trial of {baseline.path} or {candidate.path} "
        f"has {check.metric}. The runs were made before devicelab recorded it, or their engine "
        "could not measure it (per-token percentiles are null where an engine sees tokens in "
        "batches: tokens_batched = true). Gate on a field the runs have, or run them again "
        "with an engine that measures it."
    )


def compare(baseline: RunData, candidate: RunData, checks: list[Check], alpha: float) -> Comparison:
    """Every check for every baseline key (RUN_KEY: model, quant, engine, variant, task, L)
    against the candidate.

    A key the candidate lacks is inconclusive; a key only the candidate has is reported as a
    warning (nothing to compare it with); a device fingerprint mismatch warns, never fails;
    a result over noisy trials names how many in its reason.
    """
    check_alpha(alpha)
    for check in checks:
        _measured_somewhere(check, baseline, candidate)
    comp = Comparison([], provenance=report(baseline.meta, candidate.meta, "baseline", "candidate"))
    if baseline.fingerprint != candidate.fingerprint:
        diff = sorted(
            k
            for k in set(baseline.fingerprint) | set(candidate.fingerprint)
            if baseline.fingerprint.get(k) != candidate.fingerprint.get(k)
        )
        comp.warnings.append(
            f"device fingerprints differ ({', '.join(diff)}): baseline {baseline.path} and "
            f"candidate {candidate.path} may not have run on the same device."
        )

    cand_keys = {k.cell for k in candidate.keys()}  # noqa: SIM118 (RunData.keys is not a dict)
    base_keys = {k.cell for k in baseline.keys()}  # noqa: SIM118
    hide = hidden_keys(base_keys | cand_keys)
    for extra in sorted(cand_keys - base_keys, key=cell_sort_key):
        comp.warnings.append(
            f"{cell_label(extra, RUN_KEY, hide)} is only in the candidate; not compared."
        )
    seen: set[tuple[Any, ...]] = set()
    for key in baseline.keys():  # noqa: SIM118
        if key.cell in seen:
            continue  # one key per cell even when fingerprints vary in a run
        seen.add(key.cell)
        sel = dict(zip(RUN_KEY, key.cell, strict=True))
        base_trials = baseline.trials(**sel)
        cand_trials = candidate.trials(**sel) if key.cell in cand_keys else []
        noisy_base, noisy_cand = noisy_count(base_trials), noisy_count(cand_trials)
        for check in checks:
            base = baseline.values(check.metric, **sel)
            cand = candidate.values(check.metric, **sel) if key.cell in cand_keys else []
            res = replace(evaluate(key, check, base, cand, alpha), hide=hide)
            # A verdict over noisy trials says so: it may be the machine's, not the change's.
            res.noisy_baseline, res.noisy_candidate = noisy_base, noisy_cand
            res.reason += gate_note(len(base_trials), noisy_base, len(cand_trials), noisy_cand)
            comp.results.append(res)
    return comp
