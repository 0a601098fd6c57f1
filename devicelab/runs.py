"""Read a finished run directory for gates and custom checks: :func:`load_run` -> :class:`Run`.

::

    import devicelab

    def test_summary_is_fast_enough():
        run = devicelab.load_run("runs/nightly")
        assert run.median("ttft_s", task="SUMM", context_tokens=1000) < 2.0

Only measured trials count: warm-ups and failed trials are left out everywhere here.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .errors import RunDirError, UsageError
from .metrics import is_measured
from .results import TRIALS, read_jsonl

# Metric -> True when higher is better. ``quality.NAME`` (a task's own metric) is higher-better.
METRICS: dict[str, bool] = {
    "itps": True,
    "otps": True,
    "ttft_s": False,
    "runtime_s": False,
    "load_s": False,
    "peak_mem_mb": False,
    "max_temp_c": False,
    "energy_j": False,
}
QUALITY_PREFIX = "quality."

STATS: dict[str, Callable[[list[float]], float]] = {
    "median": statistics.median,
    "mean": statistics.fmean,
    "min": min,
    "max": max,
}


class RunKey(NamedTuple):
    """What results are compared by: the device fingerprint, model, quant, task and L."""

    fingerprint: str
    model: Any
    quant: Any
    task: Any
    context_tokens: Any

    def label(self) -> str:
        """``model/quant/task/L`` (the fingerprint left out)."""
        return f"{self.model}/{self.quant}/{self.task}/L{self.context_tokens}"


# Quality metrics where less is better (Self-BLEU: how alike a model's suggested questions
# are); every other quality metric is better when higher.
LOWER_IS_BETTER_QUALITY = frozenset({"self_bleu"})


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better; a :class:`UsageError` for unknown ones."""
    check_metric(metric)
    if metric.startswith(QUALITY_PREFIX):
        return metric.removeprefix(QUALITY_PREFIX) not in LOWER_IS_BETTER_QUALITY
    return METRICS[metric]


def check_metric(metric: str) -> None:
    if metric in METRICS or (metric.startswith(QUALITY_PREFIX) and len(metric) > 8):
        return
    raise UsageError(
        f"unknown metric {metric!r}. Use one of {', '.join(METRICS)}, or quality.NAME for a "
        "task's own quality metric (a key of the trials' 'quality' field)."
    )


def fingerprint_of(device_info: Any) -> str:
    """A stable text form of a trial's ``device_info`` (sorted JSON)."""
    return json.dumps(device_info, sort_keys=True, separators=(",", ":"))


def metric_value(record: Mapping[str, Any], metric: str) -> float | None:
    if metric.startswith(QUALITY_PREFIX):
        value = (record.get("quality") or {}).get(metric[len(QUALITY_PREFIX) :])
    else:
        value = record.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class Run:
    """The measured trials of one run directory (warm-ups and failed trials left out)."""

    def __init__(self, path: Path, records: Iterable[Mapping[str, Any]]) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = [dict(r) for r in records if is_measured(r)]

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, {len(self.records)} measured trials)"

    @property
    def fingerprint(self) -> dict[str, Any]:
        """The ``device_info`` of the run's trials (of the first one, when they differ)."""
        for rec in self.records:
            info = rec.get("device_info")
            if isinstance(info, dict):
                return info
        return {}

    def keys(self) -> list[RunKey]:
        """The distinct (device fingerprint, model, quant, task, context_tokens) keys."""
        found = {
            RunKey(
                fingerprint_of(r.get("device_info")),
                r.get("model"),
                r.get("quant"),
                r.get("task"),
                r.get("context_tokens"),
            )
            for r in self.records
        }
        return sorted(found, key=lambda k: (*(str(v) for v in k[1:]), k.fingerprint))

    def trials(self, **filters: Any) -> list[dict[str, Any]]:
        """The measured trials whose record keys equal ``filters`` (``task="SUMM"``, ...).

        A filter that matches nothing is a :class:`UsageError` naming the values that exist.
        """
        selected = self.records
        for field, wanted in filters.items():
            present = [r for r in selected if field in r]
            if not present and selected:
                raise UsageError(
                    f"{self.path}: no trial record has the key {field!r}; filter on a record "
                    "key such as task, context_tokens, model, quant, doc_id or device."
                )
            matched = [r for r in present if r[field] == wanted]
            if not matched:
                existing = sorted({repr(r[field]) for r in present})
                where = (
                    f" among the trials matching {_fmt_filters(filters, field)}"
                    if len(filters) > 1
                    else ""
                )
                raise UsageError(
                    f"{self.path}: no measured trial has {field}={wanted!r}{where}. "
                    f"Values present: {', '.join(existing) or 'none (no measured trials)'}."
                )
            selected = matched
        return selected

    def values(self, metric: str, **filters: Any) -> list[float]:
        """The values of ``metric`` over the measured trials matching ``filters``
        (trials where the metric is null, such as a temperature without sensors, left out)."""
        check_metric(metric)
        return [
            v for v in (metric_value(r, metric) for r in self.trials(**filters)) if v is not None
        ]

    def stat(self, metric: str, stat: str, **filters: Any) -> float:
        """``stat`` (median, mean, min or max) of :meth:`values`."""
        if stat not in STATS:
            raise UsageError(f"unknown statistic {stat!r}; use one of {', '.join(STATS)}.")
        values = self.values(metric, **filters)
        if not values:
            raise UsageError(
                f"{self.path}: {metric} is null in every measured trial matching "
                f"{_fmt_filters(filters) or 'the run'}; the device did not report it."
            )
        return STATS[stat](values)

    def median(self, metric: str, **filters: Any) -> float:
        return self.stat(metric, "median", **filters)

    def mean(self, metric: str, **filters: Any) -> float:
        return self.stat(metric, "mean", **filters)

    def min(self, metric: str, **filters: Any) -> float:
        return self.stat(metric, "min", **filters)

    def max(self, metric: str, **filters: Any) -> float:
        return self.stat(metric, "max", **filters)


def _fmt_filters(filters: Mapping[str, Any], upto: str | None = None) -> str:
    parts = []
    for k, v in filters.items():
        if k == upto:
            break
        parts.append(f"{k}={v!r}")
    return ", ".join(parts)


def load_run(path: str | Path) -> Run:
    """Load the run directory at ``path`` (its ``trials.jsonl``)."""
    p = Path(path)
    if not p.is_dir():
        raise RunDirError(
            f"{p} is not a directory. Give a devicelab run directory (the --out of "
            "`devicelab run`, holding trials.jsonl)."
        )
    if not (p / TRIALS).is_file():
        raise RunDirError(
            f"{p} has no {TRIALS}, so it is not a devicelab run directory. Give the --out "
            "directory of a `devicelab run`."
        )
    try:
        records = list(read_jsonl(p / TRIALS))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{p / TRIALS} is unreadable ({exc}).") from None
    return Run(p, records)
