"""Writing a run directory: append-only ``trials.jsonl`` and ``telemetry.jsonl``, and resume.

Each trial record is appended, flushed and fsynced as the trial ends, so a crash or Ctrl-C
loses at most the trial in flight. A torn last line (a crash mid-write) is cut off when the
run resumes, so the file never holds a half record followed by a whole one.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import tomli_w

from .._errors import RunDirError
from .._provenance import compact_load
from .._record import TrialRecord
from .._tokens import TOKENS
from .._tokens import line as token_line
from .layout import RUN_META, SCENARIO, SUMMARY, TELEMETRY, TRIALS, read_jsonl

if TYPE_CHECKING:
    from .._scenario import Scenario


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def default_run_dir(scenario: Scenario, base: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return base / f"{scenario.name}-{stamp}"


# Called with each trial's record and telemetry samples once they are written.
TrialListener = Callable[[TrialRecord, Sequence[dict[str, Any]]], None]


class RunDir:
    """An open run directory. Use :meth:`open` for a new run or to resume one."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._lock = threading.Lock()
        self._loads: set[str] | None = None  # provenance.loads keys already in run.json
        self._listeners: list[TrialListener] = []
        self._trials: IO[str] = self._open_append(path / TRIALS)
        self._telemetry: IO[str] = self._open_append(path / TELEMETRY)
        self._tokens: IO[str] = self._open_append(path / TOKENS)

    @staticmethod
    def _open_append(file: Path) -> IO[str]:
        _cut_torn_tail(file)
        return file.open("a", encoding="utf-8")

    @classmethod
    def open(
        cls,
        path: Path,
        scenario: Scenario,
        *,
        resume: bool,
        provenance: Mapping[str, Any] | None = None,
    ) -> RunDir:
        """Open ``path`` for ``scenario``: a new run, or (with ``resume``) the same one again.

        ``provenance`` is what a new run's run.json records as the run's (the pipeline collects
        it: :func:`devicelab._provenance.run_provenance`); ``None`` records none, as a run.json
        from before devicelab recorded it. A resumed run keeps the provenance it started with."""
        meta_file = path / RUN_META
        if path.exists() and not path.is_dir():
            raise RunDirError(
                f"output path {path} exists and is not a directory. Pick another --out."
            )
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise RunDirError(
                    f"{meta_file} is unreadable ({exc}); this directory is not a devicelab "
                    "run that can be resumed. Pick another --out."
                ) from None
            if meta.get("scenario_fingerprint") != scenario.fingerprint():
                raise RunDirError(
                    f"{path} holds a different run (scenario {meta.get('scenario_name')!r} with "
                    "other settings). Nothing was changed there. Pick another --out, or resume "
                    "it with the scenario it was started with (its scenario.toml)."
                )
            if not resume:
                raise RunDirError(
                    f"{path} already holds this run ({_count_lines(path / TRIALS)} trials "
                    "recorded). Add --resume to run only the missing trials, or pick "
                    "another --out."
                )
            return cls(path, str(meta["run_id"]))
        if path.is_dir() and any(path.iterdir()):
            raise RunDirError(
                f"{path} is not empty and is not a devicelab run. Nothing was changed there. "
                "Pick another --out."
            )
        path.mkdir(parents=True, exist_ok=True)
        run_id = f"{scenario.name}-{uuid.uuid4().hex[:8]}"
        meta = {
            "run_id": run_id,
            "scenario_name": scenario.name,
            "scenario_source": str(scenario.source),
            "scenario_fingerprint": scenario.fingerprint(),
            "created_at": now_iso(),
        }
        if provenance is not None:
            meta["provenance"] = dict(provenance)
        _write_json(meta_file, meta)
        (path / SCENARIO).write_text(tomli_w.dumps(scenario.resolved()), encoding="utf-8")
        return cls(path, run_id)

    def add_provenance(self, loads: Mapping[str, Mapping[str, Any]]) -> None:
        """Add load entries (digest -> entry, from :class:`~devicelab.DeviceSession`) to
        run.json's ``provenance.loads``, before the records that name them are appended.

        An entry leaves out the host, devicelab and plugins where they equal the run's own;
        run.json is rewritten whole and renamed, so a crash leaves the old or the new one."""
        if not loads:
            return
        with self._lock:
            if self._loads is not None and self._loads.issuperset(loads):
                return
            file = self.path / RUN_META
            meta = json.loads(file.read_text(encoding="utf-8"))
            prov = meta.setdefault("provenance", {})
            known = prov.setdefault("loads", {})
            for key, entry in loads.items():
                if key not in known:
                    known[key] = compact_load(entry, prov)
            _write_json(file, meta)
            self._loads = set(known)

    def done_trial_ids(self) -> set[str]:
        return {rec["trial_id"] for rec in read_jsonl(self.path / TRIALS)}

    def records(self) -> list[TrialRecord]:
        """The trials recorded so far (to resume a run where it stopped)."""
        return [TrialRecord.from_json(rec) for rec in read_jsonl(self.path / TRIALS)]

    def on_trial(self, listener: TrialListener) -> None:
        """Call ``listener(record, samples)`` after each trial is appended (and fsynced)."""
        self._listeners.append(listener)

    def append_trial(
        self,
        record: TrialRecord,
        samples: Sequence[dict[str, Any]] = (),
        token_ms: Sequence[float] = (),
    ) -> None:
        """Append one finished trial: its telemetry ``samples`` and token offsets
        (``token_ms``, to tokens.jsonl, when it saw any), then the record (its
        :meth:`TrialRecord.to_json`), then tell the listeners. Every executor writes a trial
        through here, so what listens (the results store) hears of each trial whoever ran it.
        The record is on disk before any listener runs: a listener cannot lose it."""
        self.append_samples(list(samples))
        with self._lock:
            if token_ms:
                batched = bool(record.measures.tokens_batched)
                self._tokens.write(token_line(record.trial_id, token_ms, batched))
                self._tokens.flush()
            _append(self._trials, record.to_json())
        for listener in self._listeners:
            listener(record, samples)

    def append_samples(self, samples: list[dict[str, Any]]) -> None:
        if not samples:
            return
        with self._lock:
            for s in samples:
                self._telemetry.write(json.dumps(s, separators=(",", ":")) + "\n")
            self._telemetry.flush()

    def write_summary(self, rows: list[dict[str, Any]]) -> None:
        (self.path / SUMMARY).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")

    def close(self) -> None:
        with self._lock:
            for fh in (self._trials, self._telemetry, self._tokens):
                if not fh.closed:
                    fh.flush()
                    fh.close()


def _write_json(file: Path, data: Mapping[str, Any]) -> None:
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, file)


def _append(fh: IO[str], record: Mapping[str, Any]) -> None:
    fh.write(json.dumps(record, separators=(",", ":")) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def _cut_torn_tail(file: Path) -> None:
    if not file.exists():
        return
    data = file.read_bytes()
    if data and not data.endswith(b"\n"):
        with file.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def _count_lines(file: Path) -> int:
    return sum(1 for _ in read_jsonl(file))
