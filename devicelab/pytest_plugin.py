"""The devicelab pytest plugin (the ``pytest11`` entry point): a fixture for plugin authors
and regression gates between two run directories.

The ``devicelab_plugin`` fixture installs a plugin object behind a throwaway ``devicelab``
entry point (see :func:`devicelab.testing.installed_plugin`), and removes it afterwards::

    def test_listed(devicelab_plugin):
        registry = devicelab_plugin(MyPlugin(), "mine")
        assert "MINE" in registry.tasks

Regression gates, in the manner of pytest-benchmark's ``--benchmark-compare-fail``::

    pytest --devicelab-baseline runs/main --devicelab-candidate runs/pr \\
           --devicelab-fail otps:median:5% --devicelab-fail ttft_s:median:10%

add one test item per (model/quant/task/L key, check), named
``devicelab-gates::gate[MODEL/QUANT/TASK/L<n>:CHECK]``: it passes, fails with the numbers
(baseline and candidate statistic, change, p-value) or is skipped as inconclusive (fewer
than 5 measured values on a side). Bad options are a pytest usage error. See
:mod:`devicelab._gates` for the rule.

With ``--devicelab-baseline-from-db [--devicelab-db PATH] [--devicelab-last N]`` instead of
``--devicelab-baseline``, the baseline is the last N accepted runs in the results database
with the candidate's device fingerprint, per cell (``devicelab db accept RUN_ID``), so CI
needs no committed baseline directory.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from . import _gates as gates
from . import _hooks as hooks
from ._errors import UsageError
from ._registry import Registry
from ._rundir import load_run
from .testing import installed_plugin

InstallPlugin = Callable[..., Registry]

_COMPARISON = pytest.StashKey[gates.Comparison]()


class DevicelabGateWarning(UserWarning):
    """The baseline and candidate differ in a way that weakens the comparison."""


@pytest.fixture
def devicelab_plugin() -> Iterator[InstallPlugin]:
    """``install(plugin, name=None) -> Registry``: install ``plugin`` (a module or an object
    with ``@devicelab.hookimpl`` methods) until the test ends; returns the registry
    ``devicelab`` now loads, which ``devicelab plugins`` and ``devicelab run`` also see."""
    with ExitStack() as stack:

        def install(plugin: object, name: str | None = None) -> Registry:
            return stack.enter_context(installed_plugin(plugin, name))

        yield install


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("devicelab", "devicelab regression gates")
    group.addoption(
        "--devicelab-baseline",
        metavar="RUN_DIR",
        help="Run directory to compare against (with --devicelab-candidate).",
    )
    group.addoption(
        "--devicelab-candidate",
        metavar="RUN_DIR",
        help="Run directory to check against --devicelab-baseline.",
    )
    group.addoption(
        "--devicelab-fail",
        action="append",
        default=[],
        metavar="METRIC:STAT:THRESHOLD",
        help="Fail on a significant regression beyond THRESHOLD, e.g. otps:median:5%% or "
        "peak_mem_mb:max:50 (repeatable).",
    )
    group.addoption(
        "--devicelab-alpha",
        type=float,
        default=gates.DEFAULT_ALPHA,
        metavar="P",
        help="Significance level of the one-sided Mann-Whitney U test (default: %(default)s).",
    )
    group.addoption(
        "--devicelab-baseline-from-db",
        action="store_true",
        default=False,
        help="Take the baseline from the results database: the last --devicelab-last accepted "
        "runs with the candidate's device fingerprint, per cell (instead of "
        "--devicelab-baseline).",
    )
    group.addoption(
        "--devicelab-db",
        metavar="PATH",
        help="The results database for --devicelab-baseline-from-db (default: $DEVICELAB_DB, "
        "else the default).",
    )
    group.addoption(
        "--devicelab-last",
        type=int,
        default=5,
        metavar="N",
        help="Accepted runs per cell in a baseline from the database (default: %(default)s).",
    )


def pytest_configure(config: pytest.Config) -> None:
    baseline = config.getoption("--devicelab-baseline", None)
    candidate = config.getoption("--devicelab-candidate", None)
    specs: list[str] = config.getoption("--devicelab-fail", None) or []
    alpha: float = config.getoption("--devicelab-alpha", gates.DEFAULT_ALPHA)
    from_db: bool = config.getoption("--devicelab-baseline-from-db", False)
    if from_db and baseline is not None:
        raise pytest.UsageError(
            "give --devicelab-baseline RUN_DIR or --devicelab-baseline-from-db, not both."
        )
    if from_db and candidate is None:
        raise pytest.UsageError(
            "--devicelab-baseline-from-db gates a candidate: add --devicelab-candidate RUN_DIR."
        )
    if baseline is None and candidate is None:
        if specs:
            raise pytest.UsageError(
                "--devicelab-fail needs --devicelab-baseline RUN_DIR and "
                "--devicelab-candidate RUN_DIR: the two runs to compare."
            )
        return
    if (baseline is None and not from_db) or candidate is None:
        missing = "--devicelab-baseline" if baseline is None else "--devicelab-candidate"
        raise pytest.UsageError(
            f"devicelab gates need both run directories: add {missing} RUN_DIR."
        )
    if not specs:
        raise pytest.UsageError(
            "devicelab gates need at least one check: add --devicelab-fail METRIC:STAT:THRESHOLD, "
            "for example --devicelab-fail otps:median:5%."
        )
    try:
        checks = [gates.parse_check(s) for s in specs]
        gates.check_alpha(alpha)
        cand = load_run(candidate)
        if from_db:
            last: int = config.getoption("--devicelab-last", 5)
            base = hooks.baseline_from_db(cand, config.getoption("--devicelab-db", None), last)
        else:
            base = load_run(baseline)
        comparison = gates.compare(base, cand, checks, alpha)
    except UsageError as exc:
        raise pytest.UsageError(f"devicelab: {exc}") from None
    config.stash[_COMPARISON] = comparison


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The gates' "provenance differs:" block at the top of the session: a regression
    next to a changed engine build or model file is read differently."""
    comparison = config.stash.get(_COMPARISON, None)
    lines = [] if comparison is None else comparison.provenance
    return [f"devicelab: {lines[0]}", *lines[1:]] if lines else []


class GateRegression(Exception):
    """A candidate significantly worse than the baseline beyond the threshold."""


class GateItem(pytest.Item):
    def __init__(self, *, result: gates.GateResult, warns: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.result = result
        self.warns = warns

    def runtest(self) -> None:
        for text in self.warns:
            warnings.warn(text, DevicelabGateWarning, stacklevel=1)
        if self.result.status == gates.PASS and (
            self.result.noisy_baseline or self.result.noisy_candidate
        ):
            # A pass over noisy trials still passes, but says it may be the machine's.
            warnings.warn(
                f"{self.result.name}: {self.result.reason}", DevicelabGateWarning, stacklevel=1
            )
        if self.result.status == gates.INCONCLUSIVE:
            pytest.skip(f"{self.result.name}: {self.result.reason}")
        if self.result.status == gates.FAIL:
            raise GateRegression(self.result.reason)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, GateRegression):
            return f"{self.result.name}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"devicelab gate {self.result.name}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    comparison = config.stash.get(_COMPARISON, None)
    if comparison is None:
        return
    for result in comparison.results:
        name = f"gate[{result.name}]"
        items.append(
            GateItem.from_parent(
                session,
                name=name,
                nodeid=f"devicelab-gates::{name}",
                result=result,
                warns=comparison.warnings,
            )
        )
