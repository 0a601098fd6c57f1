"""Which store a ``--db`` value names.

A file path is a DuckDB store. ``SCHEME://...`` is a store another plugin provides: a package
that subclasses :class:`~.store.Store` (constructed with the whole URL) and names the class in
the ``devicelab.stores`` entry-point group under SCHEME, so a team database (PostgreSQL, say)
is added without changing devicelab.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import cast

from devicelab import UsageError

from .store import Store

ENV_DB = "DEVICELAB_DB"
STORE_GROUP = "devicelab.stores"


def default_db() -> str:
    return os.environ.get(ENV_DB) or str(Path.home() / ".local/share/devicelab/lab.duckdb")


def open_store(target: str | Path | None = None) -> Store:
    """The store at ``target``: a file path (DuckDB) or ``SCHEME://...`` of a store plugin."""
    # DuckDB is imported here, not with the plugin: every devicelab command loads the plugin.
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
    # A plugin's store is constructed with the whole URL (see the module docstring).
    make = cast("Callable[[str], Store]", cls)
    return make(text)
