"""The trial record, typed: what one trial was and what it measured, and the one table of
measured fields (:data:`FIELDS`) and the one cell key (:data:`CELL_KEY`) that every view
reads.

A record is written once, by the process that ran the trial (the driver of a run), and read
many times: by the summary, compare, gates, advise, the report, export and the CLI tables. So
the schema lives here and nowhere else: a measure added to :data:`FIELDS` appears in every
view, and a view never lists metrics of its own.

Why frozen dataclasses and not a schema library: the records are made by our own code and
read back from our own JSON lines, so validation buys nothing on the hot path of a run, and a
record must stay importable by a Ray worker or a user's gate test with no extra dependency.
Scenario files, written by people, are where validation pays (see ``_scenario``).

The JSON form (:meth:`TrialRecord.to_json`) is the run directory's contract: one flat object
per trial with the keys listed in the README; :meth:`TrialRecord.from_json` reads any record
written since the first release (missing keys take their defaults) and keeps keys it does not
know in :attr:`TrialRecord.extra`, so a round trip loses nothing.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "failed"]
Statistic = Literal["median", "max", "mean", "min"]

STATS: dict[str, Callable[[list[float]], float]] = {
    "median": statistics.median,
    "mean": statistics.fmean,
    "min": min,
    "max": max,
}


@dataclass(frozen=True)
class Field:
    """One measured number of a trial, as every view shows it."""

    name: str  # the record key
    unit: str
    higher_is_better: bool
    label: str  # a column or axis title
    stat: Statistic  # how a cell of repetitions is summarised
    digits: int  # decimals shown in tables

    @property
    def title(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


# The measured fields, in display order. One line here is one column in the run's table, the
# summary, the HTML report, compare, a gate metric and an export column.
FIELDS: tuple[Field, ...] = (
    Field("itps", "tok/s", True, "ITPS", "median", 1),
    Field("otps", "tok/s", True, "OTPS", "median", 1),
    Field("ttft_s", "s", False, "TTFT", "median", 3),
    Field("runtime_s", "s", False, "runtime", "median", 2),
    Field("peak_mem_mb", "MB", False, "peak mem", "max", 0),
    Field("max_temp_c", "°C", False, "max temp", "max", 1),
    Field("energy_j", "J", False, "energy", "median", 1),
    # Carried by the first trial after each model load only (null on the others).
    Field("load_s", "s", False, "load", "max", 2),
)
FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}

QUALITY_PREFIX = "quality."
# Quality metrics where less is better (Self-BLEU: how alike a model's suggested questions
# are); every other quality metric is better when higher.
LOWER_IS_BETTER_QUALITY = frozenset({"self_bleu"})

# What a cell (the repetitions of one configuration) is keyed by, in every view.
CELL_KEY: tuple[str, ...] = ("device", "model", "quant", "task", "context_tokens")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` (a field or ``quality.NAME``) is better."""
    if metric.startswith(QUALITY_PREFIX):
        return metric.removeprefix(QUALITY_PREFIX) not in LOWER_IS_BETTER_QUALITY
    return FIELD_BY_NAME[metric].higher_is_better


def is_metric(metric: str) -> bool:
    return metric in FIELD_BY_NAME or (
        metric.startswith(QUALITY_PREFIX) and len(metric) > len(QUALITY_PREFIX)
    )


@dataclass(frozen=True)
class Identity:
    """Which trial this is: the run, the device, the model and the cell it belongs to."""

    run_id: str
    trial_id: str
    device: str
    engine: str
    model: str
    quant: str
    task: str
    doc_id: str
    item: str
    context_tokens: int
    sections: int
    repetition: int
    warmup: bool
    device_info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Measures:
    """The numbers a trial measured; ``None`` where the device or engine could not give one."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    load_s: float | None = None
    ttft_s: float | None = None
    itps: float | None = None
    otps: float | None = None
    runtime_s: float | None = None
    peak_mem_mb: float | None = None
    max_temp_c: float | None = None
    energy_j: float | None = None
    energy_reliable: bool | None = None
    # What the engine says it prefilled, and the marker tokens a cache buster added (counted
    # in input_tokens); prefix_cached is True when part of the prompt came from a cache,
    # None when nothing could tell (see devicelab.prefill).
    prefilled_tokens: int | None = None
    cache_buster_tokens: int = 0
    prefix_cached: bool | None = None
    # (client - engine) / engine for ITPS against the engine's prefill rate and OTPS against
    # its decode rate; flagged above prefill.GAP_FLAG.
    client_engine_gap: Mapping[str, float | None] = field(default_factory=dict)
    # The engine's own counters (llama.cpp's prefill/decode timings, MLC's usage.extra);
    # None where counters were withheld (derived test data whose speeds were rewritten).
    engine_timings: Mapping[str, Any] | None = field(default_factory=dict)


@dataclass(frozen=True)
class Attempts:
    """How often the trial was tried: a lost device is reconnected and the trial retried."""

    attempts: int = 1
    lost_attempts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Thermal:
    """The wait before the trial and the device's throttling during it."""

    cooldown_s: float = 0.0
    cooldown_timed_out: bool = False
    throttled: bool | None = None
    thermal_status_max: int | None = None


@dataclass(frozen=True)
class Quality:
    """Metric name -> score of the output, and the metrics that failed on it with why."""

    values: Mapping[str, float] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)


_PARTS: dict[str, type[Any]] = {
    "identity": Identity,
    "measures": Measures,
    "tries": Attempts,
    "thermal": Thermal,
}
_OUTCOME = ("status", "error", "output_text", "started_at", "finished_at")
# The contract's key order (README, "What a run leaves").
_ORDER = [
    "run_id",
    "trial_id",
    "status",
    "error",
    "device",
    "device_info",
    "engine",
    "model",
    "quant",
    "task",
    "doc_id",
    "item",
    "context_tokens",
    "sections",
    "repetition",
    "warmup",
    "input_tokens",
    "output_tokens",
    "load_s",
    "ttft_s",
    "itps",
    "otps",
    "runtime_s",
    "peak_mem_mb",
    "max_temp_c",
    "energy_j",
    "energy_reliable",
    "output_text",
    "quality",
    "quality_errors",
    "started_at",
    "finished_at",
    "engine_timings",
    "attempts",
    "lost_attempts",
    "cooldown_s",
    "cooldown_timed_out",
    "throttled",
    "thermal_status_max",
]


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial. Build parts with :func:`dataclasses.replace` (:meth:`but`)."""

    identity: Identity
    status: Status = "ok"
    error: str | None = None
    output_text: str | None = None
    started_at: str = ""
    finished_at: str = ""
    measures: Measures = field(default_factory=Measures)
    tries: Attempts = field(default_factory=Attempts)
    thermal: Thermal = field(default_factory=Thermal)
    quality: Quality = field(default_factory=Quality)
    # Keys of a JSON record this version does not know (a newer writer's), kept as they are.
    extra: Mapping[str, Any] = field(default_factory=dict)

    # --- reading -----------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def measured(self) -> bool:
        """Counts in summaries, comparisons and gates: finished ok and not a warm-up."""
        return self.ok and not self.identity.warmup

    @property
    def trial_id(self) -> str:
        return self.identity.trial_id

    def cell(self) -> tuple[Any, ...]:
        """The values of :data:`CELL_KEY`."""
        return tuple(getattr(self.identity, k) for k in CELL_KEY)

    def value(self, metric: str) -> float | None:
        """A field of :data:`FIELDS` or ``quality.NAME`` as a number (``None`` when absent)."""
        if metric.startswith(QUALITY_PREFIX):
            v: Any = self.quality.values.get(metric[len(QUALITY_PREFIX) :])
        else:
            v = getattr(self.measures, metric, None)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return float(v)

    def key(self, name: str) -> Any:
        """The value of a flat JSON key (``task``, ``status``, ``itps``, ...): for filters."""
        return _FLAT[name](self) if name in _FLAT else self.extra.get(name)

    def has_key(self, name: str) -> bool:
        return name in _FLAT or name in self.extra

    # --- changing ----------------------------------------------------------------------

    def but(self, **changes: Any) -> TrialRecord:
        """A copy with top-level attributes or parts replaced."""
        return dataclasses.replace(self, **changes)

    def failed(self, error: str) -> TrialRecord:
        return dataclasses.replace(self, status="failed", error=error)

    # --- JSON --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        flat: dict[str, Any] = {k: getattr(self, k) for k in _OUTCOME}
        for part in _PARTS:
            for f in dataclasses.fields(getattr(self, part)):
                flat[f.name] = getattr(getattr(self, part), f.name)
        flat["device_info"] = dict(self.identity.device_info)
        flat["client_engine_gap"] = dict(self.measures.client_engine_gap)
        timings = self.measures.engine_timings
        flat["engine_timings"] = None if timings is None else dict(timings)
        flat["lost_attempts"] = list(self.tries.lost_attempts)
        flat["quality"] = dict(self.quality.values)
        flat["quality_errors"] = dict(self.quality.errors)
        out = {k: flat[k] for k in _ORDER}
        out.update((k, v) for k, v in flat.items() if k not in out)
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        known: set[str] = set(_OUTCOME) | {"quality", "quality_errors"}
        parts: dict[str, Any] = {}
        for name, part_type in _PARTS.items():
            values = {}
            for f in dataclasses.fields(part_type):
                known.add(f.name)
                if f.name in data:
                    values[f.name] = data[f.name]
            if name == "tries" and "lost_attempts" in values:
                values["lost_attempts"] = tuple(values["lost_attempts"] or ())
            if name == "identity":
                values.setdefault("device_info", {})
                values["device_info"] = values["device_info"] or {}
            parts[name] = part_type(**values)
        return cls(
            status=data.get("status", "failed"),
            error=data.get("error"),
            output_text=data.get("output_text"),
            started_at=data.get("started_at", ""),
            finished_at=data.get("finished_at", ""),
            quality=Quality(
                dict(data.get("quality") or {}), dict(data.get("quality_errors") or {})
            ),
            extra={k: v for k, v in data.items() if k not in known},
            **parts,
        )


def _getter(*path: str) -> Callable[[TrialRecord], Any]:
    def get(record: TrialRecord) -> Any:
        value: Any = record
        for name in path:
            value = getattr(value, name)
        return value

    return get


def _flat_getters() -> dict[str, Callable[[TrialRecord], Any]]:
    out = {k: _getter(k) for k in _OUTCOME}
    for part, part_type in _PARTS.items():
        out.update((f.name, _getter(part, f.name)) for f in dataclasses.fields(part_type))
    out["quality"] = _getter("quality", "values")
    out["quality_errors"] = _getter("quality", "errors")
    return out


_FLAT = _flat_getters()
