"""Read one run directory into what the store keeps: the run's meta, the records and a
telemetry summary per trial. Independent of any database, so every backend ingests the same."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devicelab import RunDirError, TrialRecord

TRIALS = "trials.jsonl"
TELEMETRY = "telemetry.jsonl"
RUN_META = "run.json"
TOKENS = "tokens.jsonl"


@dataclass
class KeySummary:
    n: int = 0
    min: float = math.inf
    max: float = -math.inf
    total: float = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    @property
    def mean(self) -> float:
        return self.total / self.n


@dataclass
class TelemetrySummary:
    samples: int = 0
    keys: dict[str, KeySummary] = field(default_factory=dict)


@dataclass
class LoadedRun:
    path: Path
    run_id: str
    meta: dict[str, Any]
    records: list[TrialRecord]
    telemetry: dict[str, TelemetrySummary]
    # Files of the run that end in a torn line: name -> that line's number.
    torn: dict[str, int] = field(default_factory=dict)
    # trial_id -> (batched, token offsets in ms) from tokens.jsonl; empty for a run made
    # before devicelab kept token times.
    tokens: dict[str, TokenTimes] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenTimes:
    batched: bool
    ms: list[float]


class JsonLines:
    """The whole JSON lines of a file, read as iterated. A run still being written (or
    killed) may end in a torn line: it is skipped, and :attr:`torn` is its line number."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.torn: int | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.file.exists():
            return
        with self.file.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    self.torn = number
                    break
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RunDirError(
                        f"{self.file}:{number} is not JSON ({exc.msg}). Fix or delete that line."
                    ) from None


def summarise_samples(samples: Iterable[dict[str, Any]]) -> dict[str, TelemetrySummary]:
    """trial_id -> sample count and min/max/mean of every numeric key of its samples."""
    # Values are gathered into lists and summed by the builtins: a run has tens of thousands
    # of samples, and a method call per value was most of the time an ingest took.
    counts: dict[str, int] = {}
    values: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        trial_id = sample.get("trial_id")
        if not isinstance(trial_id, str):
            continue
        counts[trial_id] = counts.get(trial_id, 0) + 1
        per_key = values.get(trial_id)
        if per_key is None:
            per_key = values[trial_id] = {}
        for key, value in sample.items():
            # `t` is the clock, not a measurement; booleans are flags, not numbers (the type
            # test is exact on purpose: bool is a subclass of int).
            if key == "t" or type(value) not in _NUMBERS:
                continue
            got = per_key.get(key)
            if got is None:
                per_key[key] = [value]
            else:
                got.append(value)
    return {
        trial_id: TelemetrySummary(
            n,
            {
                k: KeySummary(len(v), float(min(v)), float(max(v)), float(math.fsum(v)))
                for k, v in values[trial_id].items()
            },
        )
        for trial_id, n in counts.items()
    }


_NUMBERS = (int, float)


def load_run_dir(path: Path) -> LoadedRun:
    if not path.is_dir():
        raise RunDirError(
            f"{path} is not a directory. Give a run directory (made by devicelab run)."
        )
    trials_file = path / TRIALS
    if not trials_file.exists():
        raise RunDirError(
            f"{path} has no {TRIALS}, so it is not a run directory. Give the --out of a "
            "devicelab run."
        )
    meta: dict[str, Any] = {}
    meta_file = path / RUN_META
    if meta_file.exists():
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{meta_file} is not JSON ({exc.msg}). Fix or delete it.") from None
    trial_lines = JsonLines(trials_file)
    records = [TrialRecord.from_json(r) for r in trial_lines]
    run_ids = {r.identity.run_id for r in records}
    run_id = meta.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        if len(run_ids) != 1:
            raise RunDirError(
                f"{path} has no run.json with a run_id and its trials name "
                f"{len(run_ids)} run ids. Restore run.json."
            )
        run_id = run_ids.pop()
    elif run_ids - {run_id}:
        raise RunDirError(
            f"{path}: run.json says run_id {run_id!r} but trials name "
            f"{sorted(run_ids - {run_id})}. A run directory holds one run; split it."
        )
    # devicelab writes each trial id once per run; a hand-edited file might not, and the
    # store's key is (run_id, trial_id), so the last record of an id wins.
    last: dict[str, TrialRecord] = {}
    for rec in records:
        last.pop(rec.trial_id, None)
        last[rec.trial_id] = rec
    samples = JsonLines(path / TELEMETRY)
    telemetry = summarise_samples(samples)
    token_lines = JsonLines(path / TOKENS)
    tokens = read_tokens(token_lines, set(last))
    files = (trial_lines, samples, token_lines)
    torn = {f.file.name: f.torn for f in files if f.torn is not None}
    return LoadedRun(path, run_id, meta, list(last.values()), telemetry, torn, tokens)


def read_tokens(lines: Iterable[dict[str, Any]], trial_ids: set[str]) -> dict[str, TokenTimes]:
    """The token times of the trials in ``trial_ids`` (the last line of an id wins: a trial
    run again on resume); a line of a trial the run has no record of is left out."""
    out: dict[str, TokenTimes] = {}
    for line in lines:
        trial_id = line.get("trial_id")
        ms = line.get("ms")
        if trial_id in trial_ids and isinstance(ms, list):
            out[str(trial_id)] = TokenTimes(bool(line.get("batched")), [float(t) for t in ms])
    return out


def torn_note(run_dir: Path, torn: dict[str, int]) -> str:
    """The torn last lines of a run, in words ("" when none)."""
    lines = " and ".join(f"{run_dir / name} line {n}" for name, n in sorted(torn.items()))
    if not lines:
        return ""
    return (
        f"{lines} {'is' if len(torn) == 1 else 'are'} torn (no end of line), so left out: the "
        "run may still be running, or the file was cut."
    )
