"""Interference: how much of a device's CPU something other than the engine used in a trial.

llama.cpp's threads wait for each other at every barrier of every layer, so one busy core
stalls them all: a build at ``nice 19`` beside a run on a 2-core host cut single trials to a
tenth of their quiet speed while every record still said ``ok``. So each trial records
``other_cpu_pct`` and is marked ``noisy`` above ``[noise] max_other_cpu_pct``.

Collectors report three cumulative counters (CPU seconds summed over every core, counted from
any fixed point such as boot) in their samples; the core only subtracts:

- :data:`CPU_TOTAL` (``cpu_total_s``): all of the device's CPU time, idle included;
- :data:`CPU_BUSY` (``cpu_busy_s``): the part that was not idle (iowait counts as idle; a
  virtual machine's steal time as busy, since another guest took it);
- :data:`ENGINE_CPU` (``engine_cpu_s``): the part the engine used: its process with every
  thread, and its children. Absent when the engine's process cannot be read (a phone's
  engine that has not started yet, or has exited);
- :data:`ENGINE_ID` (``engine_id``, optional): which processes ``engine_cpu_s`` counts (a
  phone's engine pids); when it changes, the counter is another process's, counted from its
  birth. Left out where it is always the same (the host's own process).

``other_cpu_pct = 100 * (Δbusy - Δengine) / Δtotal`` over the trial's samples. The kernel
counts CPU time in ticks of 10 ms, so a window shorter than :data:`MIN_WINDOW_S` gives
``None`` rather than a figure that is mostly rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._record import TrialRecord

CPU_TOTAL = "cpu_total_s"
CPU_BUSY = "cpu_busy_s"
ENGINE_CPU = "engine_cpu_s"
ENGINE_ID = "engine_id"

# Below this the 10 ms tick of the kernel's CPU accounting is more than a few percent of the
# window (an error of about a tick per core at each end).
MIN_WINDOW_S = 0.5
# The window of the probes outside trials: the check before the first trial, and each look
# while waiting for a busy device to be quiet.
PROBE_S = 0.5


def _num(sample: Mapping[str, Any], key: str) -> float | None:
    v = sample.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _share(busy: float, engine: float, total: float) -> float | None:
    if total <= 0:
        return None
    return round(max(0.0, min(100.0, 100 * (busy - engine) / total)), 1)


def other_cpu_pct(samples: Sequence[Mapping[str, Any]]) -> float | None:
    """The share (percent) of the device's CPU that anything but the engine used over a
    trial's samples (in time order, each with ``t`` in seconds); ``None`` when the device
    reports no counters, the engine's process was never read, or the samples span less than
    :data:`MIN_WINDOW_S`.

    The window runs from the first to the last sample with device counters. The engine's
    CPU in it is summed over its readings: the change between two readings of the same
    processes (:data:`ENGINE_ID`), and the whole counter of processes that appear during the
    window (a phone's llama-cli starts with each trial; its counter starts at its birth).
    A sample that cannot read the engine (it exited) adds nothing.
    """
    counted = []
    for s in samples:
        t, total, busy = _num(s, "t"), _num(s, CPU_TOTAL), _num(s, CPU_BUSY)
        if t is not None and total is not None and busy is not None:
            counted.append((t, total, busy, _num(s, ENGINE_CPU), s.get(ENGINE_ID)))
    if len(counted) < 2 or counted[-1][0] - counted[0][0] < MIN_WINDOW_S:
        return None
    engine = 0.0
    seen = False
    last: tuple[float, Any] | None = None
    for i, (*_, used, who) in enumerate(counted):
        if used is None:
            continue
        seen = True
        if last is not None and last[1] == who:
            engine += max(0.0, used - last[0])
        elif i > 0:
            engine += used  # new processes: all they used, since they started
        last = (used, who)
    if not seen:
        return None
    (_, total0, busy0, *_), (_, total1, busy1, *_) = counted[0], counted[-1]
    return _share(busy1 - busy0, engine, total1 - total0)


def between(a: Mapping[str, Any], b: Mapping[str, Any]) -> float | None:
    """``other_cpu_pct`` between two readings taken outside a trial (a probe); an engine
    that is not running (no reading) used nothing."""
    ta, tb = _num(a, CPU_TOTAL), _num(b, CPU_TOTAL)
    ba, bb = _num(a, CPU_BUSY), _num(b, CPU_BUSY)
    if ta is None or tb is None or ba is None or bb is None:
        return None
    ea, eb = _num(a, ENGINE_CPU), _num(b, ENGINE_CPU)
    # An engine readable at one end only started or exited in between: count it as idle
    # rather than charge its whole life to the window.
    engine = eb - ea if ea is not None and eb is not None else 0.0
    return _share(bb - ba, max(0.0, engine), tb - ta)


def is_noisy(other: float | None, limit: float) -> bool | None:
    return None if other is None else other > limit


def noisy_count(records: Iterable[TrialRecord]) -> int:
    return sum(1 for r in records if r.tries.noisy is True)


def run_note(records: Iterable[TrialRecord]) -> str | None:
    """One line for the measured trials marked noisy; None when there are none."""
    measured = [r for r in records if r.measured]
    noisy = noisy_count(measured)
    if not noisy:
        return None
    worst = max(r.measures.other_cpu_pct or 0.0 for r in measured if r.tries.noisy)
    return (
        f"{noisy} of {len(measured)} measured trials were noisy: other processes used up to "
        f"{worst:.0f}% of the device's CPU while they ran (other_cpu_pct), which slows "
        "every thread of the engine. Their figures are marked; rerun on a quiet device."
    )


def gate_note(n_base: int, noisy_base: int, n_cand: int, noisy_cand: int) -> str:
    """What a gate's message adds when its data include noisy trials ("" when none does)."""
    if not noisy_base and not noisy_cand:
        return ""
    return (
        f"; over noisy data: {noisy_base} of {n_base} baseline and {noisy_cand} of {n_cand} "
        "candidate trials ran while other processes used the CPU (noisy), so the figures "
        "may reflect the machine, not the change"
    )


def top_line(device: str, other: float, consumers: Sequence[tuple[str, float]]) -> str:
    """The status line for a device found busy before the first trial."""
    top = ", ".join(f"{name} {pct:.0f}%" for name, pct in consumers[:5]) or "not known"
    return (
        f"{device} is busy before the first trial: other processes use {other:.0f}% of its "
        f"CPU (top: {top}); trials run now may be noisy"
    )
