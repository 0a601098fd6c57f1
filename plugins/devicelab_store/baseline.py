"""A gate's baseline from the store: per cell of the candidate, the trials of the last N
accepted runs on the same device (fingerprint) in that cell, as a :class:`devicelab.RunData`
that the gates compare like a baseline run directory.

The cell is ``devicelab.RUN_KEY`` (the cell key without the device's name: the fingerprint
says which device), read at call time, so a key added to the core's cell key is matched here
with no change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import devicelab
from devicelab import RunData, TrialRecord, UsageError

from .duck import device_fingerprint
from .store import Store


def _quoted(names: list[str]) -> list[str]:
    return [f'"{n}"' for n in names]


def baseline_records(
    store: Store, candidate: RunData, last: int
) -> tuple[list[TrialRecord], list[str]]:
    """The records of the baseline, and the ids of the runs they come from (newest first)."""
    key = list(devicelab.RUN_KEY)
    wanted = sorted(
        {(device_fingerprint(r.identity.device_info), *r.cell(key)) for r in candidate.measured},
        key=repr,
    )
    if not wanted:
        return [], []
    cols = ["fingerprint", *key]
    names = ", ".join(_quoted(cols))
    row = "(" + ", ".join("?" for _ in cols) + ")"
    params: list[Any] = [v for cell in wanted for v in cell]
    exclude = candidate.meta.get("run_id")
    # A cell's runs are ranked newest first by the run's creation time; the candidate itself
    # never serves as its own baseline, even when it was ingested and accepted.
    sql = f"""
        WITH wanted ({names}) AS (VALUES {", ".join(row for _ in wanted)}),
        measured AS (
            SELECT t.* , r.created_at AS run_created
            FROM trials t JOIN runs r USING (run_id)
            WHERE r.verdict = 'accepted' AND t.status = 'ok' AND NOT t.warmup
              AND t.run_id IS DISTINCT FROM ?
        ),
        cell_runs AS (
            SELECT DISTINCT m.run_id, m.run_created, {", ".join(f"m.{c}" for c in _quoted(cols))}
            FROM measured m JOIN wanted w USING ({names})
        ),
        ranked AS (
            SELECT *, row_number() OVER (
                PARTITION BY {names} ORDER BY run_created DESC NULLS LAST, run_id DESC
            ) AS k
            FROM cell_runs
        )
        SELECT m.run_id, m.record FROM measured m JOIN ranked USING (run_id, {names})
        WHERE ranked.k <= ?
        ORDER BY ranked.run_created DESC NULLS LAST, m.run_id DESC, m.trial_id
    """
    rows = store.query(sql, [*params, exclude, last]).rows
    records = [TrialRecord.from_json(json.loads(rec)) for _, rec in rows]
    runs = list(dict.fromkeys(run_id for run_id, _ in rows))
    return records, runs


def baseline(store: Store, target: str, candidate: RunData, last: int) -> RunData:
    records, runs = baseline_records(store, candidate, last)
    if not records:
        raise UsageError(
            f"the results database {target} has no accepted run with the candidate's device "
            "fingerprint and cells, so there is no baseline. Ingest a good run and accept it: "
            "`devicelab db ingest RUN_DIR` then `devicelab db accept RUN_ID`."
        )
    meta: dict[str, Any] = {"baseline_from_db": target, "runs": runs, "last": last}
    # The newest baseline run's provenance, so the gate can say what differs in the builds.
    stored = store.query("SELECT meta FROM runs WHERE run_id = ?", [runs[0]]).rows
    provenance = json.loads(stored[0][0]).get("provenance") if stored else None
    if provenance is not None:
        meta.update(provenance=provenance, provenance_of=runs[0])
    return RunData(Path(target), records, meta)
