"""devicelab's llama.cpp engine against llama.cpp's own llama-bench: the same build, model,
threads, context parameters and work, interleaved, reported as ratios with their spread.

    python bench/vs_llama_bench.py [--quick] [--rounds 16] [--lengths 200,1000] [--threads 2]

llama-bench is built once (cached, a few minutes) from the installed llama-cpp-python's own
sources, so both run the same llama.cpp. For each prompt length L, devicelab runs a full trial
(telemetry and the interference probe on) on its L-token context prompt of N tokens in all;
llama-bench then runs the same work: ``-p N`` (a cold prefill of N tokens) against the
trial's ITPS, and ``-n 64 -d N`` (64 tokens decoded after N in the cache; plain ``-n 64``
decodes from an empty cache and is faster) against its OTPS, with the flags that reproduce
the engine's context (the ``llama_bench`` entry of the load's provenance). Each round runs A
then B, one repetition each; a ratio is devicelab / llama-bench within one round, and the
report gives the median and IQR over rounds. Target: >= 0.97. The machine's load
(/proc/loadavg) is printed beside, and each side's interference: the trials' other_cpu_pct
and, for llama-bench, the same share measured around its runs. The report gives the ratios
over every round, then over the quiet rounds alone (neither side above 5 %): on a shared
machine compare the ratios of one run, never absolute speeds across runs. ``--quick`` is
about 3 minutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
from devicelab_android.hostcli import host_tool
from devicelab_host import cpu_counters
from devicelab_llamacpp import LlamaCppEngine, llama_bench
from overhead import make_plan, run_records

from devicelab._metrics import spread
from devicelab._runtime.plan import Plan


def devicelab_round(plan: Plan, tmp: Path) -> dict[int, dict[str, Any]]:
    """One devicelab run of the plan (telemetry and the interference probe on, a noisy trial
    flagged, never rerun: llama-bench's paired run cannot be); per context length, the
    trial's measures."""
    rows: dict[int, dict[str, Any]] = {}
    for r in run_records(plan, tmp, "vs-llama-bench"):
        m = r.measures
        rows[r.identity.context_tokens] = {
            "input_tokens": m.input_tokens,
            "itps": m.itps,
            "otps": m.otps,
            "other_cpu_pct": m.other_cpu_pct,
        }
    return rows


def engine_context(plan: Plan) -> dict[str, Any]:
    model = plan.models[0]
    engine = model.engine_cls(None, model.spec, model.options)  # type: ignore[arg-type]
    assert isinstance(engine, LlamaCppEngine)
    return engine.context_params()


def llama_bench_round(
    binary: Path, model: Path, flags: list[str], sizes: list[int], tokens: int
) -> tuple[dict[tuple[str, int], float], float]:
    """llama-bench once per kind of work: ``-p N`` for each N, then ``-n tokens -d N``; with
    the share of the machine's CPU that something else used meanwhile (as the lab measures
    it for its own trials: busy time less llama-bench's own, over all of the CPU time)."""
    base = [str(binary), "-m", str(model), *flags, "-r", "1", "-o", "json"]
    sizes_arg = ",".join(map(str, sizes))
    out: dict[tuple[str, int], float] = {}
    total0, busy0 = cpu_counters(psutil.cpu_times())
    child0 = sum(os.times()[2:4])
    for work in (["-p", sizes_arg, "-n", "0"], ["-p", "0", "-n", str(tokens), "-d", sizes_arg]):
        done = subprocess.run(
            [*base, *work], capture_output=True, text=True, check=False, timeout=1800
        )
        if done.returncode != 0:
            sys.exit(f"llama-bench failed ({done.returncode}):\n{done.stderr[-2000:]}")
        for test in llama_bench.parse_json(done.stdout):
            n = test.n_prompt if test.kind == "pp" else test.n_depth
            out[(test.kind, n)] = test.median_ts
    total1, busy1 = cpu_counters(psutil.cpu_times())
    own = sum(os.times()[2:4]) - child0
    other = 100 * max(0.0, (busy1 - busy0) - own) / max(total1 - total0, 1e-9)
    return out, other


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text(encoding="utf-8").split(" ", 1)[0]
    except OSError:
        return "?"


def describe(ratios: list[float]) -> str:
    s = spread(ratios)
    if s is None:
        return "n/a"
    return f"{statistics.median(ratios):.3f} (IQR {s.p25:.3f}-{s.p75:.3f}, n={len(ratios)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="6 rounds (about 3 minutes)")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--lengths", default="200,1000", help="context lengths L, comma-separated")
    ap.add_argument("--tokens", type=int, default=64, help="output tokens per trial")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--llama-bench", type=Path, help="a llama-bench binary (default: build one)")
    args = ap.parse_args()
    rounds = 6 if args.quick else args.rounds
    lengths = [int(x) for x in args.lengths.split(",")]
    binary = args.llama_bench or host_tool(
        "llama-bench", lambda line: print(line, file=sys.stderr, flush=True)
    )

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        plan = make_plan(
            tmp, args.tokens, lengths, telemetry=True, options=f"threads = {args.threads}"
        )
        context = engine_context(plan)
        flags = llama_bench.flags(context)
        model_path = plan.models[0].spec.path
        assert model_path is not None
        print(f"llama-bench: {binary}\nflags: {' '.join(flags)}", flush=True)
        pairs: list[Pair] = []
        loads = [loadavg()]
        for r in range(rounds):
            a = devicelab_round(plan, tmp)
            sizes = sorted({int(row["input_tokens"]) for row in a.values()})
            b, b_other = llama_bench_round(binary, model_path, flags, sizes, args.tokens)
            pairs.append((a, b, b_other))
            loads.append(loadavg())
            mine = max((row["other_cpu_pct"] or 0.0 for row in a.values()), default=0.0)
            print(f"round {r + 1}/{rounds} done (load {loads[-1]}; other CPU "
                  f"{mine:.1f} % | {b_other:.1f} %)", flush=True)  # fmt: skip

    print(f"\nSmolLM2-135M Q4_1, {args.threads} threads, {args.tokens} output tokens, "
          f"{rounds} rounds of devicelab then llama-bench; load average (1 min) over the "
          f"run: {', '.join(loads)}; {os.cpu_count()} CPUs")  # fmt: skip
    table(pairs, lengths, None)
    table(pairs, lengths, QUIET_PCT)


Pair = tuple[dict[int, dict[str, Any]], dict[tuple[str, int], float], float]
# A pair counts as quiet when neither side saw more than this share of the CPU used by
# something else: a busy sibling on one of 2 cores slows llama.cpp's barriers far more than
# its share, and the two sides of a pair are seconds apart, so one may be hit and not the other.
QUIET_PCT = 5.0


def table(pairs: list[Pair], lengths: list[int], quiet: float | None) -> None:
    """The ratios per length over every pair, or over the quiet ones only."""
    kept = [
        (a, b) for a, b, b_other in pairs
        if quiet is None or (b_other <= quiet and all(
            row["other_cpu_pct"] is not None and row["other_cpu_pct"] <= quiet
            for row in a.values()))
    ]  # fmt: skip
    which = (
        "all rounds"
        if quiet is None
        else f"quiet rounds (other CPU <= {quiet:.0f} % on both sides)"
    )
    print(f"\n{which}: {len(kept)} of {len(pairs)}")
    print(f"{'L':>6}{'N':>6}  {'ITPS dl/lb':<36}{'OTPS dl/lb':<36}{'medians dl | lb':>28}")
    for length in lengths:
        itps: list[float] = []
        otps: list[float] = []
        abs_: dict[str, list[float]] = {"dl_i": [], "lb_i": [], "dl_o": [], "lb_o": []}
        n = 0
        for a, b in kept:
            row = a.get(length)
            if row is None or not row["itps"] or not row["otps"]:
                continue
            n = int(row["input_tokens"])
            itps.append(row["itps"] / b[("pp", n)])
            otps.append(row["otps"] / b[("tg", n)])
            for key, value in (("dl_i", row["itps"]), ("lb_i", b[("pp", n)]),
                               ("dl_o", row["otps"]), ("lb_o", b[("tg", n)])):  # fmt: skip
                abs_[key].append(value)
        med = {k: statistics.median(v) if v else 0.0 for k, v in abs_.items()}
        absolute = (f"{med['dl_i']:.0f}/{med['dl_o']:.0f} | "
                    f"{med['lb_i']:.0f}/{med['lb_o']:.0f} tok/s")  # fmt: skip
        print(f"{length:>6}{n:>6}  {describe(itps):<36}{describe(otps):<36}{absolute:>28}")
    if quiet is None:
        mine = [r["other_cpu_pct"] for a, _, _ in pairs for r in a.values()
                if r["other_cpu_pct"] is not None]  # fmt: skip
        theirs = [b_other for _, _, b_other in pairs]
        for who, values in (("devicelab's trials", mine), ("llama-bench's runs", theirs)):
            if values:
                print(f"other CPU during {who}: median {statistics.median(values):.1f} %, "
                      f"max {max(values):.1f} %")  # fmt: skip


if __name__ == "__main__":
    main()
