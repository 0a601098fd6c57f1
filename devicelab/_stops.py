"""Stop sequences: where an answer ends when the model itself does not end it.

A base model continues a completion prompt past its answer (it writes the next "Question:",
or a new document), so a task's completion form names texts that end the answer
(``TaskPrompt.stop``). :func:`stop_at` cuts a finished text; :class:`StopCutter` does the same
token by token for an engine that samples tokens itself, so that it stops decoding at the stop
and counts only the tokens of the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest of ``stops`` begins in ``text``, looking only after the text's first
    non-blank character; ``None`` when none occurs.

    Stops before the answer has begun do not count: a base model often starts its answer on a
    new line after the cue ("Summary:\\n\\nThe ..."), and a stop such as "\\n\\n" would end every
    such answer before its first word.
    """
    begun = len(text) - len(text.lstrip())
    found = [i for i in (text.find(s, begun) for s in stops if s) if i >= 0]
    return min(found) if found else None


def stop_at(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first of ``stops`` (see :func:`find_stop`), or all of it."""
    at = find_stop(text, stops)
    return text if at is None else text[:at]


def _held_from(text: str, stops: Sequence[str]) -> int:
    """Where the longest end of ``text`` that could still grow into a stop begins
    (``len(text)`` when none could)."""
    for start in range(max(0, len(text) - max((len(s) for s in stops), default=0) + 1), len(text)):
        tail = text[start:]
        if any(s.startswith(tail) for s in stops if len(s) > len(tail)):
            return start
    return len(text)


@dataclass
class StopCutter(Generic[T]):
    """Token by token: which sampled tokens belong to the answer, for ``stops``.

    :meth:`add` takes each token's text as it is sampled and returns the tokens (with what
    was passed alongside, e.g. the time it was sampled) that are now known to be answer:
    a token whose text could be the beginning of a stop is held back until the next tokens
    tell. Once a stop is complete, :attr:`stopped` is true, :attr:`text` is the answer cut
    where the stop begins, and the held tokens that lie wholly inside the stop are dropped;
    :meth:`flush` releases whatever is still held when generation ends otherwise.
    """

    stops: Sequence[str]
    text: str = ""
    stopped: bool = False
    _held: list[tuple[int, str, T]] = field(default_factory=list)

    def add(self, piece: str, payload: T) -> list[tuple[str, T]]:
        """Token text ``piece`` was sampled: the (text, payload) of tokens released now."""
        if self.stopped:
            return []
        start = len(self.text)
        self.text += piece
        self._held.append((start, piece, payload))
        at = find_stop(self.text, self.stops)
        if at is not None:
            self.stopped = True
            self.text = self.text[:at]
            # A token that begins before the stop carries answer text: it counts.
            out = [(p[: max(0, at - s)], pay) for s, p, pay in self._held if s < at]
            self._held = []
            return out
        # Blanks before the answer begins are never the start of a stop (find_stop).
        if not self.text.strip():
            return self._release(len(self.text))
        return self._release(_held_from(self.text, self.stops))

    def flush(self) -> list[tuple[str, T]]:
        """Generation ended without a stop: every held token is answer."""
        return self._release(len(self.text) + 1)

    def _release(self, before: int) -> list[tuple[str, T]]:
        # Only whole tokens that end before ``before``: one whose text runs on into a possible
        # stop waits, so the stream never gets text that the stop later cuts.
        n = 0
        while n < len(self._held) and self._held[n][0] + len(self._held[n][1]) <= before:
            n += 1
        out = [(p, pay) for _, p, pay in self._held[:n]]
        self._held = self._held[n:]
        return out
