"""The sampler: collectors polled on their own clock, each sample tagged with trial and phase.

The sampler runs in a background thread. The scheduler tells it which trial is running
(:meth:`Sampler.begin`) and takes the samples back when the trial ends (:meth:`Sampler.end`).
The phase comes from the trial's :class:`~devicelab.TokenStream` (prefill, decode, idle)
or is set directly (load, cooldown).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from ._api import Collector, Phase, TokenStream, Value


class TokenRateCollector(Collector):
    """The token-rate timeline: tokens so far and tokens/s since the previous sample."""

    name = "stream"

    def __init__(self) -> None:
        self.stream: TokenStream | None = None
        self._last: tuple[float, int] | None = None

    def attach(self, stream: TokenStream | None) -> None:
        self.stream = stream
        self._last = None

    def sample(self) -> dict[str, Value]:
        if self.stream is None:
            return {}
        now, count = time.perf_counter(), self.stream.count
        rate = None
        if self._last is not None and now > self._last[0]:
            rate = (count - self._last[1]) / (now - self._last[0])
        self._last = (now, count)
        return {"tokens": count, "tok_s": rate}


class Sampler:
    """Polls ``collectors`` every ``interval_s`` seconds while a trial is open."""

    def __init__(self, collectors: Sequence[Collector], interval_s: float) -> None:
        self.tokens = TokenRateCollector()
        self.collectors: list[Collector] = [*collectors, self.tokens]
        self.interval_s = interval_s
        self._lock = threading.Lock()
        # Collectors are read by the sampler's thread and by read_now(); one at a time.
        self._collect_lock = threading.Lock()
        self._trial_id: str | None = None
        self._t0 = 0.0
        self._phase: Phase = "idle"
        self._samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: dict[str, str] = {}

    def start(self, *, poll: bool = True) -> None:
        """Start the collectors and, with ``poll``, the sampling thread."""
        for c in self.collectors:
            c.start()
        if not poll:
            return
        self._thread = threading.Thread(target=self._run, name="devicelab-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for c in self.collectors:
            try:
                c.stop()
            except Exception as exc:  # a collector must never break a run's shutdown
                self.errors[c.name] = f"stop: {exc}"

    def begin(
        self, trial_id: str, phase: Phase = "idle", stream: TokenStream | None = None
    ) -> None:
        """Start tagging samples with ``trial_id``; time counts from now."""
        with self._lock:
            self._trial_id = trial_id
            self._t0 = time.perf_counter()
            self._phase = phase
            self._samples = []
            self.tokens.attach(stream)
        # The first sample, at t = 0, on the caller's thread: with the one end() takes, it
        # brackets the trial exactly (the CPU counters of devicelab._noise need both ends;
        # the sampler's thread runs at low priority and could take it late).
        self._take()
        self._wake.set()  # the sampler's clock restarts from now

    def set_phase(self, phase: Phase) -> None:
        with self._lock:
            self._phase = phase

    def end(self) -> list[dict[str, Any]]:
        """Stop tagging; return the trial's samples (one final sample is taken now)."""
        self._take()
        with self._lock:
            samples, self._samples = self._samples, []
            self._trial_id = None
            self.tokens.attach(None)
        return samples

    def read_now(self) -> dict[str, Any]:
        """One merged sample of every collector, read now on the caller's thread; no trial
        tag and not recorded (the cooldown wait reads the temperature with it)."""
        return self._collect()

    def _collect(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        with self._collect_lock:
            for c in self.collectors:
                try:
                    values.update(c.sample())
                except Exception as exc:  # record the failure once; the run goes on
                    self.errors.setdefault(c.name, f"{type(exc).__name__}: {exc}")
        return values

    def _run(self) -> None:
        # The engine's threads usually fill every core; a sampler that preempts one of them
        # can stall all of them at their next barrier. At low priority it runs in the gaps.
        with contextlib.suppress(AttributeError, OSError):  # not on every platform
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        next_tick = time.perf_counter()
        while not self._stop.is_set():
            if self._wake.wait(max(0.0, next_tick - time.perf_counter())):
                # begin() took this tick's sample (or stop() was called): the clock
                # restarts from now.
                self._wake.clear()
                next_tick = time.perf_counter() + self.interval_s
                continue
            self._take()
            next_tick += self.interval_s
            now = time.perf_counter()
            if next_tick < now:  # fell behind (a slow collector): skip ticks, do not burst
                next_tick = now

    def _take(self) -> None:
        with self._lock:
            trial_id, t0, phase = self._trial_id, self._t0, self._phase
            stream = self.tokens.stream
        if trial_id is None:
            return
        if stream is not None and phase in ("idle", "prefill", "decode"):
            phase = stream.phase
        sample: dict[str, Any] = {
            "trial_id": trial_id,
            "t": round(time.perf_counter() - t0, 4),
            "phase": phase,
        }
        sample.update(self._collect())
        with self._lock:
            if self._trial_id == trial_id:
                self._samples.append(sample)
