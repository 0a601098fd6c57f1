"""The phone's /system/bin/sh: its interpreter, its I/O and cancellation, its emulated commands.
Nothing sent to it is ever executed on the host."""

from .commands import builtin_commands
from .interpreter import SH, CommandContext, CommandHandler, ShellSyntaxError
from .shellio import CancelToken, ShellCancelled

__all__ = [
    "SH",
    "CancelToken",
    "CommandContext",
    "CommandHandler",
    "ShellCancelled",
    "ShellSyntaxError",
    "builtin_commands",
]
