"""Reading a run directory: :func:`load_run` -> :class:`RunData`, for the views and for gates.

::

    import devicelab

    def test_summary_is_fast_enough():
        run = devicelab.load_run("runs/nightly")
        assert run.median("ttft_s", task="SUMM", context_tokens=1000) < 2.0

:attr:`RunData.records` holds every trial (warm-ups and failures too: export wants them);
the query methods (:meth:`RunData.values`, :meth:`RunData.median`, ...) and
:attr:`RunData.measured` count only measured trials, as the summary, compare and gates do.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from .. import _record, _tokens
from .._errors import RunDirError, UsageError
from .._metrics import DEFAULT_MAX_CV
from .._provenance import load_entry
from .._record import (
    QUALITY_PREFIX,
    RUN_KEY,
    STATS,
    TrialRecord,
    cell_label,
    cell_sort_key,
    is_metric,
)
from .._toml import TOMLDecodeError, read_toml
from .layout import RUN_META, SCENARIO, TELEMETRY, TRIALS, read_jsonl


def check_metric(metric: str) -> None:
    """A :class:`UsageError` naming the metrics there are, unless ``metric`` is one."""
    if is_metric(metric):
        return
    raise UsageError(
        f"unknown metric {metric!r}. Use one of {', '.join(f.name for f in _record.FIELDS)}, or "
        f"{QUALITY_PREFIX}NAME for a task's own quality metric (a key of the trials' 'quality' "
        "field)."
    )


def fingerprint_of(device_info: Mapping[str, Any]) -> str:
    """A stable text form of a trial's ``device_info`` (sorted JSON): its device fingerprint."""
    return json.dumps(dict(device_info), sort_keys=True, separators=(",", ":"))


class RunKey(tuple[Any, ...]):
    """What results are compared by: the device fingerprint and the values of ``RUN_KEY``
    (model, quant, engine, variant, task, context_tokens), each readable by name
    (``key.task``)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ("fingerprint", *RUN_KEY)

    def __new__(cls, fingerprint: str, cell: tuple[Any, ...]) -> RunKey:
        return super().__new__(cls, (fingerprint, *cell))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._fields.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return (
            "RunKey("
            + ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self, strict=True))
            + ")"
        )

    @property
    def fingerprint(self) -> str:
        return str(self[0])

    @property
    def cell(self) -> tuple[Any, ...]:
        """The values of ``RUN_KEY``, without the fingerprint."""
        return tuple(self[1:])

    def label(self, hide: Collection[str] = ()) -> str:
        """``model/quant/task/L100`` (the fingerprint and the keys in ``hide`` left out)."""
        return cell_label(self.cell, RUN_KEY, hide)


class RunData:
    """One run directory, read: every trial record, the measured ones, ``run.json`` and
    (read on first use) the telemetry samples."""

    def __init__(
        self, path: Path, records: list[TrialRecord], meta: Mapping[str, Any] | None = None
    ) -> None:
        self.path = path
        self.records = records
        self.measured = [r for r in records if r.measured]
        self.meta: dict[str, Any] = dict(meta or {})

    def __repr__(self) -> str:
        return f"RunData({str(self.path)!r}, {len(self.measured)} measured trials)"

    @cached_property
    def telemetry(self) -> list[dict[str, Any]]:
        """The telemetry samples (``telemetry.jsonl``); empty when the run took none."""
        try:
            return list(read_jsonl(self.path / TELEMETRY))
        except (OSError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{self.path / TELEMETRY} is unreadable ({exc}).") from None

    @cached_property
    def tokens(self) -> dict[str, dict[str, Any]]:
        """trial_id -> ``{"batched": bool, "ms": [token offsets from the request]}`` from
        ``tokens.jsonl``; empty for a run made before devicelab kept token times."""
        try:
            return _tokens.read(self.path)
        except (OSError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{self.path / _tokens.TOKENS} is unreadable ({exc}).") from None

    def token_times(self, record: TrialRecord) -> list[float]:
        """``record``'s token offsets (ms from the request); empty when not kept."""
        found = self.tokens.get(record.trial_id)
        return [float(t) for t in found["ms"]] if found else []

    @cached_property
    def scenario(self) -> dict[str, Any]:
        """The run's resolved scenario (``scenario.toml``) as a table; empty when it has none
        (a run directory put together by hand, or by a tool)."""
        file = self.path / SCENARIO
        if not file.is_file():
            return {}
        try:
            return read_toml(file)
        except (OSError, UnicodeDecodeError, TOMLDecodeError) as exc:
            raise RunDirError(f"{file} is unreadable ({exc}).") from None

    @property
    def max_cv(self) -> float:
        """``[scenario] max_cv`` of the run: the CV (%) above which a cell is unstable. Runs
        made before the key existed (or without a scenario.toml) take the default."""
        value = self.scenario.get("scenario", {}).get("max_cv", DEFAULT_MAX_CV)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise RunDirError(
                f"{self.path / SCENARIO}: [scenario] max_cv is {value!r}; it must be a number "
                "of at least 0. Fix it, or delete the key to use the default "
                f"({DEFAULT_MAX_CV:g})."
            )
        return float(value)

    @property
    def provenance(self) -> dict[str, Any]:
        """run.json's ``provenance`` (devicelab, plugins, host, scenario, ``loads``); ``{}``
        for a run made before devicelab recorded it."""
        prov = self.meta.get("provenance")
        return dict(prov) if isinstance(prov, Mapping) else {}

    def provenance_of(self, record: TrialRecord) -> dict[str, Any]:
        """The engine build, model file, device and host that made ``record`` (its load's
        entry, with the run's host, devicelab and plugins where the entry leaves them out);
        ``{}`` when the record or the run has none."""
        prov = self.provenance
        load = (prov.get("loads") or {}).get(record.identity.provenance)
        return load_entry(load, prov) if isinstance(load, Mapping) else {}

    @property
    def fingerprint(self) -> dict[str, Any]:
        """The device fingerprint: the ``device_info`` of the measured trials (of the first
        one, when they differ)."""
        for rec in self.measured:
            if rec.identity.device_info:
                return dict(rec.identity.device_info)
        return {}

    def keys(self) -> list[RunKey]:
        """The distinct (device fingerprint, model, quant, engine, variant, task,
        context_tokens) keys."""
        found = {
            RunKey(fingerprint_of(r.identity.device_info), r.cell(RUN_KEY)) for r in self.measured
        }
        return sorted(found, key=lambda k: (cell_sort_key(k.cell), k.fingerprint))

    def trials(self, **filters: Any) -> list[TrialRecord]:
        """The measured trials whose record keys equal ``filters`` (``task="SUMM"``, ...).

        A filter that matches nothing is a :class:`UsageError` naming the values that exist.
        """
        selected = self.measured
        for name, wanted in filters.items():
            present = [r for r in selected if r.has_key(name)]
            if not present and selected:
                raise UsageError(
                    f"{self.path}: no trial record has the key {name!r}; filter on a record "
                    "key such as task, context_tokens, model, quant, doc_id or device."
                )
            matched = [r for r in present if r.key(name) == wanted]
            if not matched:
                existing = sorted({repr(r.key(name)) for r in present})
                where = (
                    f" among the trials matching {_fmt_filters(filters, name)}"
                    if len(filters) > 1
                    else ""
                )
                raise UsageError(
                    f"{self.path}: no measured trial has {name}={wanted!r}{where}. "
                    f"Values present: {', '.join(existing) or 'none (no measured trials)'}."
                )
            selected = matched
        return selected

    def values(self, metric: str, **filters: Any) -> list[float]:
        """The values of ``metric`` over the measured trials matching ``filters``
        (trials where the metric is null, such as a temperature without sensors, left out)."""
        check_metric(metric)
        return [v for v in (r.value(metric) for r in self.trials(**filters)) if v is not None]

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


def load_run(path: str | Path) -> RunData:
    """Read the run directory at ``path`` (its ``trials.jsonl`` and ``run.json``)."""
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
        records = [TrialRecord.from_json(r) for r in read_jsonl(p / TRIALS)]
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{p / TRIALS} is unreadable ({exc}).") from None
    except TypeError as exc:  # a line that is JSON but not a trial record (a list, a number)
        raise RunDirError(
            f"{p / TRIALS} holds a line that is not a trial record ({exc})."
        ) from None
    meta: dict[str, Any] = {}
    if (p / RUN_META).is_file():
        try:
            meta = json.loads((p / RUN_META).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{p / RUN_META} is unreadable ({exc}).") from None
    return RunData(p, records, meta)
