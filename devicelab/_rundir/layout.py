"""What a run directory holds: the file names, and how its JSON lines files are read.

A run directory is written by one process (the driver of the run, :mod:`.writer`) and read
by every view (:mod:`.reader`); the names below are the contract between them and the
README's "What a run leaves".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TRIALS = "trials.jsonl"  # one trial record per line, appended as each trial ends
TELEMETRY = "telemetry.jsonl"  # one telemetry sample per line
SCENARIO = "scenario.toml"  # the scenario as resolved when the run started
RUN_META = "run.json"  # run id, scenario name, source, fingerprint, time, provenance
SUMMARY = "summary.json"  # the summary rows (devicelab._metrics.summarize) as JSON


def read_jsonl(file: Path) -> Iterator[dict[str, Any]]:
    """The whole JSON lines of ``file`` (a torn last line is skipped)."""
    if not file.exists():
        return
    with file.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            if line.strip():
                yield json.loads(line)
