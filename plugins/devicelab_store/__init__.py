"""Keep results: every run in a database, queried with SQL (``devicelab db ...``).

The built-in store is a DuckDB file; the :class:`~.store.Store` interface lets a plugin add a
server database (docs/store.md).
"""

from __future__ import annotations

import click

import devicelab

from .factory import default_db, open_store
from .store import IngestResult, QueryResult, RunRow, Store

__all__ = ["IngestResult", "QueryResult", "RunRow", "Store", "default_db", "open_store"]


@devicelab.hookimpl
def devicelab_register_commands(cli: click.Group) -> None:
    from .cli import db, history_command

    cli.add_command(db)
    cli.add_command(history_command)
