"""The one TOML reader: the standard library's on Python 3.11+, its backport ``tomli`` on 3.10.

Scenarios, device and app profiles and a run's ``scenario.toml`` all go through here, so the
version switch lives in one place and no module can import ``tomllib`` bare (3.10 has none).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError


def read_toml(path: Path) -> dict[str, Any]:
    """The table in the UTF-8 TOML file at ``path``.

    Raises :class:`OSError` when it cannot be read, :class:`UnicodeDecodeError` when it is not
    UTF-8 and :class:`TOMLDecodeError` when it is not TOML; each caller turns those into the
    error its input calls for (a scenario's, a profile's, a run directory's).
    """
    return tomllib.loads(Path(path).read_text(encoding="utf-8"))


def loads(text: str) -> dict[str, Any]:
    """The table in TOML ``text``; :class:`TOMLDecodeError` when it is not TOML."""
    return tomllib.loads(text)
