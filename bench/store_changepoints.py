"""How well does ``devicelab history`` find change points? Seeded synthetic series, scored.

    python bench/store_changepoints.py [--series 20] [--json out.json]

Each kind of series is ``--series`` seeded series of run medians around 100 with 2 % noise
(Gaussian, per run):

- ``flat60``, ``flat1000``: no change at all, 60 and 1,000 runs;
- ``step60``: a -10 % step at run 30 of 60;
- ``two60``, ``two1000``: -10 % at a third of the runs and +10 % (back to 99) at two thirds;
- ``last60``: flat but for the last run, 10 % low (one bad run, not a change).

A change point counts as found when it lies within ``TOLERANCE`` runs of a true step.
Per kind: confirmed points per series, false ones (near no true step) per series, points
shown as provisional per series, recall (true steps found) and precision (confirmed points
that are true). The tests (tests/plugins/test_store.py) score the same seeded series.

The store's ``change_points`` is scored as installed; to score another version of it (main's,
for a before/after), put that version's plugins first: ``PYTHONPATH=/path/to/main/plugins``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

SERIES = 20
NOISE = 0.02
TOLERANCE = 2


@dataclass(frozen=True)
class Kind:
    name: str
    runs: int
    levels: tuple[tuple[int, float], ...]  # (first run, level) of each segment
    steps: tuple[int, ...]  # the true change points
    last_low: bool = False


def _two(runs: int) -> Kind:
    a, b = runs // 3, 2 * runs // 3
    return Kind(f"two{runs}", runs, ((0, 100.0), (a, 90.0), (b, 99.0)), (a, b))


KINDS = (
    Kind("flat60", 60, ((0, 100.0),), ()),
    Kind("flat1000", 1000, ((0, 100.0),), ()),
    Kind("step60", 60, ((0, 100.0), (30, 90.0)), (30,)),
    _two(60),
    _two(1000),
    Kind("last60", 60, ((0, 100.0),), (), last_low=True),
)


def series(kind: Kind, count: int = SERIES) -> list[list[float]]:
    """``count`` seeded series of ``kind``: the same values on every machine and run."""
    rng = random.Random(f"devicelab-store-{kind.name}")
    out = []
    for _ in range(count):
        values = []
        for i in range(kind.runs):
            level = [lv for start, lv in kind.levels if start <= i][-1]
            if kind.last_low and i == kind.runs - 1:
                level *= 0.9
            values.append(level * (1 + rng.gauss(0, NOISE)))
        out.append(values)
    return out


@dataclass
class Score:
    kind: str
    series: int
    points: float  # confirmed change points per series
    false: float  # confirmed points near no true step, per series
    provisional: float  # points shown as provisional, per series
    recall: float | None  # true steps with a confirmed point near them
    precision: float | None  # confirmed points near a true step
    cpu_s: float  # per series


def _found(values: list[float]) -> list[tuple[int, bool]]:
    from devicelab_store.history import change_points

    # Older versions return bare indices (every point confirmed); newer ones ChangePoints.
    return [
        (p, False) if isinstance(p, int) else (p.index, p.provisional)
        for p in change_points(values)
    ]


def score(kind: Kind, count: int = SERIES) -> Score:
    points = false = provisional = hits = found_steps = 0
    start = time.process_time()
    for values in series(kind, count):
        found = _found(values)
        confirmed = [i for i, prov in found if not prov]
        provisional += len(found) - len(confirmed)
        near = [i for i in confirmed if any(abs(i - s) <= TOLERANCE for s in kind.steps)]
        points += len(confirmed)
        hits += len(near)
        false += len(confirmed) - len(near)
        found_steps += sum(any(abs(i - s) <= TOLERANCE for i in confirmed) for s in kind.steps)
    cpu = (time.process_time() - start) / count
    return Score(
        kind.name,
        count,
        points / count,
        false / count,
        provisional / count,
        found_steps / (count * len(kind.steps)) if kind.steps else None,
        hits / points if kind.steps and points else None,
        cpu,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=SERIES)
    parser.add_argument("--json", default=None, help="Also write the scores here.")
    args = parser.parse_args()
    scores = [score(k, args.series) for k in KINDS]
    print(f"{'kind':10} {'points':>7} {'false':>6} {'prov.':>6} {'recall':>7} {'prec.':>6} cpu/s")
    for s in scores:

        def show(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        print(
            f"{s.kind:10} {s.points:7.2f} {s.false:6.2f} {s.provisional:6.2f} "
            f"{show(s.recall):>7} {show(s.precision):>6} {s.cpu_s:.3f}"
        )
    if args.json:
        out: list[dict[str, Any]] = [asdict(s) for s in scores]
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
