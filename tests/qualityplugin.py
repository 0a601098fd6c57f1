"""A test plugin of quality metrics for the scoring process's tests.

Installed through a real ``devicelab`` entry point (see test_quality.py), because the
scoring process loads its plugins itself, as a user's installed plugin would be loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import devicelab
from devicelab import Metric, MetricContext, Scored


class Answers(Metric):
    """How many answers there are and how many words the first one has; the scale option
    multiplies both. Records the scoring process's pid, to prove where it ran."""

    name = "answers"
    needs_references = False

    @dataclass(frozen=True)
    class Options:
        scale: float = 1.0

    def score(self, item: Scored) -> dict[str, float]:
        first = item.candidates[0] if item.candidates else ""
        return {
            "answers": len(item.candidates) * self.options.scale,
            "first_words": len(first.split()) * self.options.scale,
            "scorer_pid": float(os.getpid()),
        }


class Overlap(Metric):
    """Share of the answers' words found in the references; fails on a request (a QA
    question) that mentions "boom"."""

    name = "overlap"

    def score(self, item: Scored) -> dict[str, float]:
        if not item.references:
            return {}
        if "boom" in item.request:
            raise ValueError("cannot score an explosion")
        words = " ".join(item.candidates).split()
        seen = set(" ".join(item.references).split())
        return {"overlap": sum(w in seen for w in words) / max(len(words), 1)}


class NoLoad(Metric):
    """A metric whose model is missing: load() fails."""

    name = "noload"
    needs_references = False

    def load(self, context: MetricContext) -> None:
        raise FileNotFoundError("judge.gguf is not there")

    def score(self, item: Scored) -> dict[str, float]:
        return {}


class QualityTestPlugin:
    @devicelab.hookimpl
    def devicelab_register_metrics(self, register: Callable[[type[Metric]], None]) -> None:
        register(Answers)
        register(Overlap)
        register(NoLoad)


PLUGIN: Any = QualityTestPlugin()
