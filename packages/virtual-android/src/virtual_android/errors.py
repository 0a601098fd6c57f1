"""The root of virtual-android's exceptions.

Every exception class the package defines derives from :class:`VirtualAndroidError`, so one
``except`` catches the phone's own failures (its filesystem, wire protocol, shell, installer,
models, u2 server); classes that also name a built-in kind (``NotGGUFError`` is a
``ValueError``) keep it as a second base. Misuse of the Python API (a bad argument) is still
the built-in ``ValueError`` or ``TypeError``.
"""

from __future__ import annotations

__all__ = ["VirtualAndroidError"]


class VirtualAndroidError(Exception):
    """A failure of the virtual phone itself."""
