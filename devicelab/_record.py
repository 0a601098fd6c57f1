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
import operator
import statistics
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
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
    # False for a measure taken once per model load, not per trial (load_s): it is summarised
    # and can be gated, but compare leaves it out, since all but one trial per load carry 0.
    per_trial: bool = True
    # The report's figure against L this field is drawn in ("speed" -> speed.png, with the
    # other speed fields); empty: a figure of its own, named after the field.
    figure: str = ""
    # False for a measure of the conditions, not of the model (other_cpu_pct): no figure
    # against L; its tables, compare and gates show it all the same.
    plotted: bool = True
    # False for a field adaptive repetitions do not wait for unless asked to by name
    # ([scenario] adaptive_metrics): a tail percentile needs far more trials to settle.
    decides: bool = True
    # False for detail the run's terminal table leaves to summary.json and the report: every
    # field as a column pushes the table past a terminal's width and its last columns (why a
    # cell is unstable) out of sight.
    terminal: bool = True

    @property
    def title(self) -> str:
        """An axis title: ``TTFT (s)``."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def header(self) -> str:
        """A table column title: ``TTFT s``."""
        return f"{self.label} {self.unit}" if self.unit else self.label

    def format(self, value: float | None) -> str:
        """``value`` with this field's decimals; ``-`` when it was not measured."""
        return "-" if value is None else f"{value:.{self.digits}f}"


# The measured fields, in display order. One line here is one column in the run's table, the
# summary, the HTML report, compare, a gate metric and an export column.
FIELDS: tuple[Field, ...] = (
    Field("itps", "tok/s", True, "ITPS", "median", 1, figure="speed"),
    Field("otps", "tok/s", True, "OTPS", "median", 1, figure="speed"),
    Field("ttft_s", "s", False, "TTFT", "median", 3, figure="speed"),
    Field("runtime_s", "s", False, "runtime", "median", 2, figure="speed"),
    Field("peak_mem_mb", "MB", False, "peak mem", "max", 0, figure="memory"),
    Field("max_temp_c", "°C", False, "max temp", "max", 1),
    Field("energy_j", "J", False, "energy", "median", 1),
    # The share of the device's CPU that anything but the engine used during the trial (see
    # devicelab._noise); the worst trial of a cell is the one to see.
    Field("other_cpu_pct", "%", False, "other CPU", "max", 0, plotted=False),
    # Carried by the first trial after each model load only (null on the others).
    Field("load_s", "s", False, "load", "max", 2, per_trial=False),
    # Per-token timings (devicelab._tokens): null where the engine saw tokens in batches.
    Field(
        "itl_p50_ms",
        "ms",
        False,
        "ITL p50",
        "median",
        2,
        figure="itl",
        decides=False,
        terminal=False,
    ),
    Field(
        "itl_p90_ms",
        "ms",
        False,
        "ITL p90",
        "median",
        2,
        figure="itl",
        decides=False,
        terminal=False,
    ),
    Field("itl_p99_ms", "ms", False, "ITL p99", "median", 2, figure="itl", decides=False),
    Field(
        "itl_max_ms", "ms", False, "ITL max", "max", 2, figure="itl", decides=False, terminal=False
    ),
    Field("tpot_ms", "ms", False, "TPOT", "median", 2, figure="itl", decides=False, terminal=False),
    Field(
        "decode_tps_first_q",
        "tok/s",
        True,
        "decode Q1",
        "median",
        1,
        figure="decode_q",
        decides=False,
        terminal=False,
    ),
    Field(
        "decode_tps_last_q",
        "tok/s",
        True,
        "decode Q4",
        "median",
        1,
        figure="decode_q",
        decides=False,
        terminal=False,
    ),
)
FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}

QUALITY_PREFIX = "quality."
# Quality metrics where less is better (Self-BLEU: how alike a model's suggested questions
# are); every other quality metric is better when higher.
LOWER_IS_BETTER_QUALITY = frozenset({"self_bleu"})

# What a cell (the repetitions of one configuration) is keyed by, in every view. ``engine``
# tells apart the same model and quant run by two engines (an app and its engine's CLI), and
# ``variant`` the engine options that differ between [[models]] entries or are swept
# (``threads=1``; empty when nothing varies).
CELL_KEY: tuple[str, ...] = (
    "device",
    "model",
    "quant",
    "engine",
    "variant",
    "task",
    "context_tokens",
)
# What the cells of two runs are matched by (compare, gates): the cell key without the device,
# whose name may differ between the two runs (the device fingerprint is checked apart).
RUN_KEY: tuple[str, ...] = tuple(k for k in CELL_KEY if k != "device")
# Column titles of cell keys where the title is not the key itself.
KEY_TITLES: dict[str, str] = {"context_tokens": "L"}


# Cell keys a view shows only where they tell cells apart: a run of one engine and no
# variants reads as it did before these keys existed (same columns, labels and gate names).
OPTIONAL_KEYS: tuple[str, ...] = ("engine", "variant")


def key_title(name: str) -> str:
    return KEY_TITLES.get(name, name)


def hidden_keys(cells: Iterable[Sequence[Any]], key: Sequence[str] = RUN_KEY) -> tuple[str, ...]:
    """The :data:`OPTIONAL_KEYS` of ``key`` that do not tell ``cells`` apart: one value in
    all of them (an empty variant is never shown)."""
    values: dict[str, set[Any]] = {k: set() for k in OPTIONAL_KEYS if k in key}
    for cell in cells:
        for k in values:
            values[k].add(cell[key.index(k)])
    # One engine for all is no news; any variant is (a sweep of one value still names it).
    most = {"engine": 1, "variant": 0}
    return tuple(k for k, seen in values.items() if len(seen - {""}) <= most[k])


def _shown(cell: Sequence[Any], key: Sequence[str], hide: Collection[str]) -> list[tuple[str, Any]]:
    return [
        (k, v)
        for k, v in zip(key, cell, strict=True)
        if k not in hide and not (k in OPTIONAL_KEYS and v == "")
    ]


def cell_label(
    cell: Sequence[Any], key: Sequence[str] = RUN_KEY, hide: Collection[str] = ()
) -> str:
    """``model/quant/task/L100``: a cell in one word (gate names, pytest ids); keys in
    ``hide`` (see :func:`hidden_keys`) and an empty variant left out."""
    return "/".join(f"{KEY_TITLES.get(k, '')}{v}" for k, v in _shown(cell, key, hide))


def cell_title(
    cell: Sequence[Any], key: Sequence[str] = RUN_KEY, hide: Collection[str] = ()
) -> str:
    """``model/quant/task L=100``: a cell as a heading."""
    shown = _shown(cell, key, hide)
    plain = "/".join(str(v) for k, v in shown if k not in KEY_TITLES)
    titled = " ".join(f"{KEY_TITLES[k]}={v}" for k, v in shown if k in KEY_TITLES)
    return f"{plain} {titled}" if titled else plain


def cell_sort_key(cell: Sequence[Any]) -> tuple[tuple[int, Any], ...]:
    """Numbers in numeric order (L 200 before 1000), anything else as text."""
    return tuple(
        (0, v) if isinstance(v, int | float) and not isinstance(v, bool) else (1, str(v))
        for v in cell
    )


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
    # The key of this trial's load in run.json's provenance (``provenance.loads``): the
    # engine build, model file, device and host it ran on. "" in records made before.
    provenance: str = ""
    # The swept or differing engine options of this model entry (``threads=1``), "" if none.
    variant: str = ""
    # The form of prompt the model got (Engine.prompt_format): "chat" (its chat template) or
    # "completion" (a base model's); "" when the model did not load, and in older records.
    prompt_format: str = ""


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
    # Percent of the device's CPU time (all cores) used by anything but the engine's process
    # tree during the trial; None where the device cannot tell or the trial was too short.
    other_cpu_pct: float | None = None
    # What the engine says it prefilled, and the marker tokens a cache buster added (counted
    # in input_tokens); prefix_cached is True when part of the prompt came from a cache,
    # None when nothing could tell (see devicelab._prefill).
    prefilled_tokens: int | None = None
    cache_buster_tokens: int = 0
    prefix_cached: bool | None = None
    # (client - engine) / engine for ITPS against the engine's prefill rate and OTPS against
    # its decode rate; flagged above prefill.GAP_FLAG.
    client_engine_gap: Mapping[str, float | None] = field(default_factory=dict)
    # The engine's own counters (llama.cpp's prefill/decode timings, MLC's usage.extra);
    # None where a record says null (kept, so a record reads back as it was written).
    engine_timings: Mapping[str, Any] | None = field(default_factory=dict)
    # Per-token timings (devicelab._tokens); tokens_batched: some arrival carried several
    # tokens (or the engine sees only batches); None in records made before.
    tokens_batched: bool | None = None
    itl_p50_ms: float | None = None
    itl_p90_ms: float | None = None
    itl_p99_ms: float | None = None
    itl_max_ms: float | None = None
    tpot_ms: float | None = None
    decode_tps_first_q: float | None = None
    decode_tps_last_q: float | None = None


@dataclass(frozen=True)
class Attempts:
    """How often the trial was tried: a lost device is reconnected and the trial retried; a
    trial run while other processes used the CPU (``noisy``) may be run again once the device
    is quiet (``[noise] on_noisy``), its earlier figures kept in ``noisy_attempts``."""

    attempts: int = 1
    lost_attempts: tuple[str, ...] = ()
    # other_cpu_pct above [noise] max_other_cpu_pct; None when other_cpu_pct is unknown.
    noisy: bool | None = None
    # Each earlier attempt that was noisy and run again: attempt, other_cpu_pct and its
    # measured fields.
    noisy_attempts: tuple[Mapping[str, Any], ...] = ()


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
_IDENTITY_DEFAULTS: dict[str, Any] = {
    f.name: {"int": 0, "bool": False}.get(str(f.type), "") for f in dataclasses.fields(Identity)
}
_IDENTITY_DEFAULTS["device_info"] = {}
_OUTCOME = ("status", "error", "output_text", "started_at", "finished_at")
# The contract's key order (README, "What a run leaves").
_ORDER = (  # noqa: SIM905 (a readable block, as the README lists the keys)
    "run_id trial_id status error device device_info provenance engine model quant variant task "
    "doc_id item prompt_format context_tokens sections repetition warmup input_tokens "
    "output_tokens load_s ttft_s itps otps runtime_s peak_mem_mb max_temp_c energy_j "
    "energy_reliable output_text "
    "quality quality_errors started_at finished_at engine_timings attempts lost_attempts "
    "cooldown_s cooldown_timed_out throttled thermal_status_max other_cpu_pct noisy noisy_attempts"
).split()


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

    def cell(self, key: Sequence[str] = CELL_KEY) -> tuple[Any, ...]:
        """The values of :data:`CELL_KEY` (or of another tuple of keys, such as RUN_KEY)."""
        return tuple(self.key(k) for k in key)

    def value(self, metric: str) -> float | None:
        """A field of :data:`FIELDS` or ``quality.NAME`` as a number (``None`` when absent).

        A field not (yet) in :class:`Measures` is read from :attr:`extra`, so a writer that
        adds a key and a line in FIELDS is enough for every view to show it."""
        if metric.startswith(QUALITY_PREFIX):
            v: Any = self.quality.values.get(metric[len(QUALITY_PREFIX) :])
        else:
            v = self.key(metric)
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
        flat["noisy_attempts"] = [dict(a) for a in self.tries.noisy_attempts]
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
            if name == "tries":
                for key in ("lost_attempts", "noisy_attempts"):
                    if key in values:
                        values[key] = tuple(values[key] or ())
            if name == "identity":
                # A record cut down by hand (a test, an old tool) still reads: a missing
                # identity key is empty, never an error.
                values = {**_IDENTITY_DEFAULTS, **values}
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


def _flat_getters() -> dict[str, Callable[[TrialRecord], Any]]:
    out: dict[str, Callable[[TrialRecord], Any]] = {}
    for k in _OUTCOME:
        out[k] = operator.attrgetter(k)
    for part, part_type in _PARTS.items():
        for f in dataclasses.fields(part_type):
            out[f.name] = operator.attrgetter(f"{part}.{f.name}")
    out["quality"] = lambda r: r.quality.values
    out["quality_errors"] = lambda r: r.quality.errors
    return out


_FLAT = _flat_getters()
