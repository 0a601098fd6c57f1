"""The sampler: collectors polled on their own clock, each sample tagged with trial and phase.

The scheduler tells the sampler which trial is running (:meth:`Sampler.begin`) and takes the
samples back when the trial ends (:meth:`Sampler.end`). The phase comes from the trial's
:class:`~devicelab.TokenStream` (prefill, decode, idle) or is set directly (load, cooldown).

Where a sample is taken matters on a small CPU. llama.cpp's threads fill every core and wait
for each other at each barrier, so a sampler thread that wakes mid-graph preempts one and
stalls them all: at 10 Hz on 2 cores it cost 3.5 % of OTPS and ITPS (bench/overhead.py) for
0.2 ms of work per tick. So while tokens flow, samples are taken on the engine's own thread
between two decodes (the stream's ``on_token`` hook), when llama.cpp's threads are idle; the
background thread takes the rest (prefill, load, idle), at the lowest scheduling class the OS
offers (``SCHED_IDLE`` on Linux: it never preempts a running thread, it fills idle time).
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
        self._due = 0.0  # perf_counter time of the next sample
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
            self._due = self._t0 + self.interval_s
        if stream is not None and self._thread is not None:
            stream.on_token = self._on_token
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
            if self.tokens.stream is not None:
                self.tokens.stream.on_token = None
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

    def _flowing(self, now: float) -> bool:
        """Tokens are arriving often enough for the stream's hook to take the samples."""
        stream = self.tokens.stream
        if stream is None or stream.phase != "decode" or not stream.token_times:
            return False
        return now - stream.token_times[-1] < self.interval_s

    def _claim(self, now: float) -> bool:
        """Whether a sample is due at ``now``; if so, the next one is due an interval on
        (ticks missed while busy are skipped, never taken in a burst)."""
        with self._lock:
            if now < self._due:
                return False
            self._due = max(self._due + self.interval_s, now)
            return True

    def _on_token(self, now: float) -> None:
        if self._claim(now):
            self._take()

    def _run(self) -> None:
        _lowest_priority()
        look = 0.0  # when this thread looks next, if later than the due time
        while not self._stop.is_set():
            with self._lock:
                wait = max(self._due, look) - time.perf_counter()
            if self._wake.wait(max(0.0, wait)):
                # begin() took this tick's sample (or stop() was called): the clock
                # restarts from the due time it set.
                self._wake.clear()
                look = 0.0
                continue
            now = time.perf_counter()
            if self._flowing(now):
                # The stream's hook takes the due sample at the next token; look again an
                # interval on, in case the tokens stop.
                look = now + self.interval_s
                continue
            if self._claim(now):
                self._take()

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


def _lowest_priority() -> None:
    """Put the calling thread in the OS's idle scheduling class (Linux ``SCHED_IDLE``), or
    else at nice 19: it then runs on cores the engine leaves idle."""
    tid = threading.get_native_id()
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is not None:
        try:
            os.sched_setscheduler(tid, idle, os.sched_param(0))
            return
        except OSError:
            pass
    with contextlib.suppress(AttributeError, OSError):  # not on every platform
        os.setpriority(os.PRIO_PROCESS, tid, 19)
