"""The scoring process: a scenario's quality metrics, run away from the measured process.

Metrics may hold big models (sentence embeddings, a judge LLM). Loaded in the process that
runs the measured engine, they would count in its memory and compete for its caches, so a
:class:`Scorer` runs them in a child process of their own (``spawn``: a fresh interpreter,
no copy of the parent's loaded model). The child loads the plugins itself through
:mod:`devicelab._plugins`, with the parent's environment, builds each metric from
its name and options, and calls :meth:`Metric.load` once. The parent sends one
:class:`~devicelab.Scored` per ok trial and receives metric -> value, plus the reason
of each metric that raised. Scoring happens between trials, never inside a trial's
telemetry window.

The child ignores Ctrl-C (the terminal sends it to the whole process group): the parent
decides when it stops, and stops it in :meth:`Scorer.close`, also after errors. If the
parent dies, the child's end of the pipe closes and it exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

from ._api import Engine, Metric, MetricContext, Scored
from ._errors import DevicelabError, UsageError
from ._options import parse_options
from ._registry import Registry

# How long close() waits for the child to finish its metrics' close() before killing it.
STOP_TIMEOUT_S = 10.0


class ScorerError(UsageError):
    """The scoring process could not start: a metric failed to load."""


@dataclass
class Scoring:
    """One output's scores: metric -> value, and metric name -> reason for those that raised."""

    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class Scorer:
    """Runs ``metrics`` (name -> raw ``[quality.options.<name>]`` table) in a child process.

    ``scenario_source`` is the scenario file: device profiles named by a metric's engine
    (a judge) are found relative to it, as the scenario's own are.
    """

    def __init__(
        self, metrics: Mapping[str, Mapping[str, Any]], scenario_source: Path | None = None
    ) -> None:
        self.metrics = {name: dict(opts) for name, opts in metrics.items()}
        self.scenario_source = scenario_source
        self.load_s: dict[str, float] = {}
        self._proc: Any = None
        self._conn: Connection | None = None
        self._dead: str | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else int(self._proc.pid)

    def start(self) -> None:
        """Start the child and wait until every metric has loaded.

        Raises :class:`ScorerError` naming the metric that failed to load, after stopping
        the child.
        """
        if self._proc is not None:
            return
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        source = None if self.scenario_source is None else str(self.scenario_source)
        proc = ctx.Process(
            target=_serve,
            args=(child, self.metrics, source),
            name="devicelab-scorer",
            daemon=True,  # multiprocessing ends it at exit if close() was never reached
        )
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        try:
            reply = self._receive()
        except BaseException:
            self.close()
            raise
        if reply[0] == "ready":
            self.load_s = dict(reply[1])
            return
        self.close()
        _, name, reason = reply
        if not name:
            raise ScorerError(f"the scoring process could not load the plugins: {reason}.")
        raise ScorerError(
            f"the quality metric {name!r} failed to load in the scoring process: "
            f"{reason.rstrip('.')}. "
            f"Fix its [quality.options.{name}] table or what it needs (an installed package, "
            "a registered model), or remove it from [quality] metrics."
        )

    def score(self, item: Scored) -> Scoring:
        """Every metric's values for ``item``; a metric that raised is in ``errors``."""
        if self._dead is not None:
            return Scoring(errors={name: self._dead for name in self.metrics})
        if self._conn is None:
            self.start()
        assert self._conn is not None
        try:
            self._conn.send(("score", item))
            reply = self._receive()
        except ScorerError as exc:
            self._dead = str(exc)
            return Scoring(errors={name: self._dead for name in self.metrics})
        _, values, errors = reply
        return Scoring(dict(values), dict(errors))

    def close(self) -> None:
        """Stop the child (its metrics close their models and engines). Never raises."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is None:
            return
        try:
            if conn is not None and proc.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    conn.send(("stop",))
            proc.join(STOP_TIMEOUT_S)
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        finally:
            if conn is not None:
                conn.close()

    def __enter__(self) -> Scorer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _receive(self) -> Any:
        """The child's next reply; waits while it is alive (a judge may take long)."""
        assert self._conn is not None and self._proc is not None
        while not self._conn.poll(0.05):
            if not self._proc.is_alive():
                raise ScorerError(
                    f"the scoring process exited unexpectedly (exit code {self._proc.exitcode})."
                )
        try:
            return self._conn.recv()
        except EOFError:
            self._proc.join(1.0)
            raise ScorerError(
                f"the scoring process exited unexpectedly (exit code {self._proc.exitcode})."
            ) from None


# --- the child ----------------------------------------------------------------------------


class _Context(MetricContext):
    """Engines for metrics, opened as :func:`devicelab._engines.open_engine` opens them (names
    resolved as a scenario's); all closed, with their devices, at the end."""

    def __init__(self, registry: Registry, scenario_source: str | None) -> None:
        self.registry = registry
        self.source = Path(scenario_source) if scenario_source else None
        self.stack = contextlib.ExitStack()

    def open_engine(self, model: str, device: str = "host") -> Engine:
        from ._engines import open_engine

        return self.stack.enter_context(
            open_engine(self.registry, model, device, scenario_source=self.source)
        )

    def close(self) -> None:
        _quietly(self.stack.close)


def _quietly(fn: Any) -> None:
    # Closing after a failure must not hide the failure.
    with contextlib.suppress(Exception):
        fn()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DevicelabError):
        return str(exc)
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


def _serve(conn: Connection, wanted: dict[str, dict[str, Any]], source: str | None) -> None:
    """The child's main loop: load the metrics, then answer "score" until "stop" or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from . import _plugins as plugin_manager

    loaded: dict[str, Metric] = {}
    context: _Context | None = None
    try:
        try:
            registry = plugin_manager.get_registry()
        except BaseException as exc:
            conn.send(("failed", "", _describe(exc)))
            return
        context = _Context(registry, source)
        load_s: dict[str, float] = {}
        for name, raw in wanted.items():
            t0 = time.perf_counter()
            try:
                if name not in registry.metrics:
                    raise UsageError(
                        "it is not registered in the scoring process; a metric must come "
                        "from an installed plugin (a 'devicelab' entry point)"
                    )
                cls = registry.metrics[name][1]
                options = parse_options(cls.Options, raw, f"[quality.options.{name}]")
                metric = cls(options)
                loaded[name] = metric
                metric.load(context)
            except BaseException as exc:
                conn.send(("failed", name, _describe(exc)))
                return
            load_s[name] = round(time.perf_counter() - t0, 4)
        conn.send(("ready", load_s))
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] != "score":
                return
            item: Scored = msg[1]
            values: dict[str, float] = {}
            errors: dict[str, str] = {}
            for name, metric in loaded.items():
                try:
                    got = metric.score(item)
                    values.update({str(k): float(v) for k, v in got.items()})
                except Exception as exc:
                    errors[name] = _describe(exc)
            conn.send(("scored", values, errors))
    finally:
        for metric in loaded.values():
            _quietly(metric.close)
        if context is not None:
            context.close()
        conn.close()
