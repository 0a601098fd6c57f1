"""The store interface: what every results database offers, whatever it runs on.

The DuckDB file store (:mod:`.duck`) is the built-in one. A team database (PostgreSQL, say)
is another plugin: a package that subclasses :class:`Store` and names its class in the
``devicelab.stores`` entry-point group under a URL scheme; ``--db postgresql://...`` then
opens it (:func:`open_store`). See docs/store.md.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from devicelab import UsageError

ENV_DB = "DEVICELAB_DB"
STORE_GROUP = "devicelab.stores"


@dataclass(frozen=True)
class RunRow:
    """One stored run."""

    run_id: str
    created_at: str | None
    scenario_name: str | None
    path: str
    trials: int
    ingested_at: str


@dataclass(frozen=True)
class IngestResult:
    run_id: str
    trials: int
    replaced: bool  # the run was in the store already and its rows were replaced


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


class Store(ABC):
    """A results database. Ingesting a run twice leaves the same rows as ingesting it once."""

    @abstractmethod
    def ingest(self, run_dir: Path) -> IngestResult:
        """Load one run directory; replaces what an earlier ingest of the same run left."""

    @abstractmethod
    def query(self, sql: str, params: list[Any] | None = None) -> QueryResult:
        """Run one SQL statement and return its rows."""

    @abstractmethod
    def runs(self) -> list[RunRow]:
        """The stored runs, oldest first."""

    @abstractmethod
    def close(self) -> None:
        """Release the database; the store is not used after."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_db() -> str:
    return os.environ.get(ENV_DB) or str(Path.home() / ".local/share/devicelab/lab.duckdb")


def open_store(target: str | Path | None = None) -> Store:
    """The store at ``target``: a file path (DuckDB) or ``SCHEME://...`` of a store plugin."""
    from .duck import DuckDBStore

    text = str(target) if target is not None else default_db()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return DuckDBStore(Path(text).expanduser())
    if scheme == "duckdb":
        return DuckDBStore(Path(rest).expanduser())
    found = [ep for ep in entry_points(group=STORE_GROUP) if ep.name == scheme]
    if not found:
        known = sorted({"duckdb", *(ep.name for ep in entry_points(group=STORE_GROUP))})
        raise UsageError(
            f"no results store for {scheme}:// is installed (known: {', '.join(known)}). "
            f"Install the plugin that provides it, or give a file path for a DuckDB store."
        )
    cls = found[0].load()
    if not (isinstance(cls, type) and issubclass(cls, Store)):
        raise UsageError(
            f"the {STORE_GROUP} entry point {scheme!r} ({found[0].value}) is not a Store "
            "subclass. Fix that plugin's entry point."
        )
    store: Store = cls(text)
    return store
