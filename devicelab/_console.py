"""The two consoles every command writes to: ``out`` for results, ``err`` for progress,
notes and errors (so ``devicelab compare --json > file`` stays clean)."""

from __future__ import annotations

import sys

from rich.console import Console

# markup=False: scenario keys like "[context] lengths" must print as written.
# Piped or logged output gets a wide table rather than rich's 80-column default.
err = Console(stderr=True, highlight=False, markup=False)
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 150)
