"""The store interface: what every results database offers, whatever it runs on.

The DuckDB file store (:mod:`.duck`) is the built-in one; :mod:`.factory` picks the store a
``--db`` value names. See docs/store.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devicelab import TrialRecord, UsageError


@dataclass(frozen=True)
class RunRow:
    """One stored run."""

    run_id: str
    created_at: str | None
    scenario_name: str | None
    path: str
    trials: int
    ingested_at: str
    verdict: str | None = None  # "accepted", "rejected" or not judged


@dataclass(frozen=True)
class IngestResult:
    run_id: str
    trials: int
    replaced: bool  # the run was in the store already and its rows were replaced
    # Files of the run that ended in a torn line (name -> line number), left out.
    torn: dict[str, int] = field(default_factory=dict)


class NoDatabaseError(UsageError):
    """The database asked for does not exist (and was not to be made)."""


class FewerTrialsError(UsageError):
    """A re-ingest that would drop trials the store holds of that run (not asked to)."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


class Store(ABC):
    """A results database. Ingesting a run twice leaves the same rows as ingesting it once."""

    @abstractmethod
    def ingest(self, run_dir: Path, *, replace: bool = False) -> IngestResult:
        """Load one run directory; replaces what an earlier ingest of the same run left.
        A run directory that lacks trials the store holds of that run (a copy cut short, a
        torn last line) raises :class:`FewerTrialsError` and changes nothing, unless
        ``replace``: then the store keeps exactly what the directory has."""

    def ingest_trial(
        self,
        run_dir: Path,
        meta: dict[str, Any],
        record: TrialRecord,
        samples: list[dict[str, Any]],
    ) -> None:
        """Add (or replace) one trial of a run still being written (``devicelab run --db``),
        ``meta`` being its run.json. The default ingests the whole run directory again:
        right, but slower as the run grows; a store does better in its own way."""
        self.ingest(run_dir)

    @abstractmethod
    def set_verdict(self, run_id: str, verdict: str | None, note: str | None = None) -> bool:
        """Mark a stored run ``"accepted"`` (a baseline for gates) or ``"rejected"``, or clear
        the mark (``None``); False when no run ``run_id`` is stored."""

    @abstractmethod
    def query(self, sql: str, params: list[Any] | None = None) -> QueryResult:
        """Run one SQL statement and return its rows."""

    @abstractmethod
    def runs(self) -> list[RunRow]:
        """The stored runs, oldest first; raises :class:`NoDatabaseError` when there is no
        database to read."""

    @abstractmethod
    def close(self) -> None:
        """Release the database; the store is not used after."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
