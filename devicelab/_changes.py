"""Change points in a series (E-divisive means with Apache Otava's significance test, as in
its and MongoDB's performance CI): where a new level starts. One algorithm for the project:
``devicelab history`` finds them in a cell's run medians, a sustained run
(:mod:`devicelab._sustained`) in a cell's rate per time bin."""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import MissingDependencyError

# Otava's defaults: E-divisive looks at the series in windows of WINDOW values, and a change
# must be this unlikely under "no change" (t-test over the two sides) to be reported.
WINDOW = 50
MAX_PVALUE = 0.001
# A change point with fewer values than this after it is provisional. Measured on seeded
# series at 2 % noise (bench/store_changepoints.py): a real -10 % step is found from its
# first value on, but so is one 10 % low value (in 90 % of series as the last one, 43 % as
# the second last, 12 % still as the fifth last); five values on, a real step shows in every
# series.
CONFIRM_RUNS = 5
INSTALL = "pip install 'devicelab[history]'"


@dataclass(frozen=True)
class ChangePoint:
    index: int  # the first value of the new level
    to_confirm: int = 0  # more values that would confirm it (0: confirmed)

    @property
    def provisional(self) -> bool:
        return self.to_confirm > 0


def max_pvalue(count: int) -> float:
    """The threshold for a series of ``count`` values: each window of a long series is one
    more chance of a false split, so the threshold is shared among the windows (Bonferroni);
    a flat series then shows as few false points over 1,000 values as over 60."""
    return MAX_PVALUE * min(1.0, WINDOW / count)


def require_otava(what: str) -> None:
    """A :class:`MissingDependencyError` naming the install line when Otava is missing."""
    try:
        import otava.analysis  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"{what} need Apache Otava: {INSTALL}") from None


def change_points(values: list[float]) -> list[ChangePoint]:
    """Where a new level starts in ``values`` (none in a flat series), oldest first; those
    fewer than :data:`CONFIRM_RUNS` from the end are provisional."""
    if len(values) < 4:
        return []  # too short for the significance test to say anything
    require_otava("change points")
    from otava.analysis import compute_change_points

    found, _ = compute_change_points(values, window_len=WINDOW, max_pvalue=max_pvalue(len(values)))
    return [
        ChangePoint(i, max(0, CONFIRM_RUNS - (len(values) - i)))
        for i in sorted(int(cp.index) for cp in found)
    ]
