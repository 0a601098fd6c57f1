"""TEMPORARY: the run directory moved to :mod:`devicelab._rundir`.

These names stay importable from here only for the modules not yet moved to it (the
scheduler, the executor) and for docs/writing-plugins.md's example, until the runtime split
and the public API (issue 10, items 2 and 4) land; then this module goes.
"""

from __future__ import annotations

from ._rundir import (
    RUN_META,
    SCENARIO,
    SUMMARY,
    TELEMETRY,
    TRIALS,
    RunDir,
    default_run_dir,
    now_iso,
    read_jsonl,
)

__all__ = [
    "RUN_META",
    "SCENARIO",
    "SUMMARY",
    "TELEMETRY",
    "TRIALS",
    "RunDir",
    "default_run_dir",
    "now_iso",
    "read_jsonl",
]
