"""llama.cpp's own ``llama-bench``, the peer the host engine is measured against: the flags
that reproduce an engine load's context, and the results ``llama-bench -o json`` prints.

The binary is built from the installed llama-cpp-python's sources by
``devicelab_android.hostcli.host_tool("llama-bench")``; bench/vs_llama_bench.py runs both.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import devicelab


class LlamaBenchOutputError(devicelab.DevicelabError):
    """llama-bench printed something that is not its JSON report."""


@dataclass(frozen=True)
class BenchTest:
    """One llama-bench test: ``pp`` (a cold prefill of ``n_prompt`` tokens) or ``tg``
    (``n_gen`` tokens decoded one by one after ``n_depth`` tokens already in the cache)."""

    kind: str
    n_prompt: int
    n_gen: int
    n_depth: int
    n_threads: int
    samples_ts: tuple[float, ...]  # tokens per second, one per repetition
    build_commit: str
    flash_attn: int  # llama.cpp's enum: -1 auto, 0 off, 1 on

    @property
    def tokens(self) -> int:
        return self.n_prompt if self.kind == "pp" else self.n_gen

    @property
    def median_ts(self) -> float:
        return statistics.median(self.samples_ts)


def parse_json(text: str) -> list[BenchTest]:
    """The tests in ``llama-bench -o json``'s output (a JSON array, one object per test)."""
    try:
        rows = json.loads(text)
    except ValueError as exc:
        raise LlamaBenchOutputError(
            f"llama-bench's output is not JSON ({exc}); run it with -o json and read stdout only."
        ) from None
    if not isinstance(rows, list):
        raise LlamaBenchOutputError("llama-bench -o json prints a list of tests; this is not one.")
    return [_test(row) for row in rows]


def _test(row: Any) -> BenchTest:
    try:
        n_prompt, n_gen = int(row["n_prompt"]), int(row["n_gen"])
        samples = tuple(float(x) for x in row["samples_ts"])
        test = BenchTest(
            # llama-bench runs a test with both set only for -pg; the lab never asks for that.
            kind="pp" if n_gen == 0 else "tg",
            n_prompt=n_prompt,
            n_gen=n_gen,
            n_depth=int(row.get("n_depth", 0)),
            n_threads=int(row["n_threads"]),
            samples_ts=samples,
            build_commit=str(row.get("build_commit", "")),
            flash_attn=int(row.get("flash_attn", -1)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LlamaBenchOutputError(
            f"a llama-bench test lacks a usable field ({exc!r}): expected n_prompt, n_gen, "
            "n_threads and samples_ts as llama-bench -o json prints them."
        ) from None
    if (n_prompt == 0) == (n_gen == 0) or not samples:
        raise LlamaBenchOutputError(
            f"a llama-bench test with n_prompt={n_prompt}, n_gen={n_gen} and "
            f"{len(samples)} samples is neither a prefill (-p) nor a decode (-n) result."
        )
    return test


def flags(context: Mapping[str, Any]) -> list[str]:
    """llama-bench's flags for an engine load's context parameters (the engine's
    ``context_params()``), so its figure can be reproduced: threads, batch sizes, flash
    attention, thread polling, mmap and weight repacking. llama-bench has no flag for a
    separate batch thread count; it runs prefill on ``-t`` threads."""
    return [
        *("-t", str(context["threads"])),
        *("-b", str(context["n_batch"])),
        *("-ub", str(context["n_ubatch"])),
        *("-fa", "on" if context["flash_attn"] else "off"),
        *("--poll", str(context["poll"])),
        *("-lm", "mmap" if context["use_mmap"] else "none"),
        *("--repack", "1" if context["extra_buffer_types"] else "0"),
    ]
