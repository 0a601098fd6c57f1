"""The run directory: its layout, its writer (:class:`RunDir`) and its reader (:class:`RunData`).

One process writes a run directory while the run goes (:mod:`.writer`); everything that
shows a run (summary, compare, gates, advise, report, export, the CLI) reads it through
:func:`load_run` (:mod:`.reader`), never by file name.
"""

from __future__ import annotations

from .layout import RUN_META, SCENARIO, SUMMARY, TELEMETRY, TRIALS, read_jsonl
from .reader import RunData, RunKey, check_metric, fingerprint_of, load_run
from .writer import RunDir, default_run_dir, now_iso

__all__ = [
    "RUN_META",
    "SCENARIO",
    "SUMMARY",
    "TELEMETRY",
    "TRIALS",
    "RunData",
    "RunDir",
    "RunKey",
    "check_metric",
    "default_run_dir",
    "fingerprint_of",
    "load_run",
    "now_iso",
    "read_jsonl",
]
