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
(/proc/loadavg, the trials' other_cpu_pct) is printed beside: on a shared machine compare the
ratios of one run, never absolute speeds across runs. ``--quick`` is about 3 minutes.
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

from devicelab_android.hostcli import host_tool
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
) -> dict[tuple[str, int], float]:
    """llama-bench once per kind of work: ``-p N`` for each N, then ``-n tokens -d N``."""
    base = [str(binary), "-m", str(model), *flags, "-r", "1", "-o", "json"]
    sizes_arg = ",".join(map(str, sizes))
    out: dict[tuple[str, int], float] = {}
    for work in (["-p", sizes_arg, "-n", "0"], ["-p", "0", "-n", str(tokens), "-d", sizes_arg]):
        done = subprocess.run(
            [*base, *work], capture_output=True, text=True, check=False, timeout=1800
        )
        if done.returncode != 0:
            sys.exit(f"llama-bench failed ({done.returncode}):\n{done.stderr[-2000:]}")
        for test in llama_bench.parse_json(done.stdout):
            n = test.n_prompt if test.kind == "pp" else test.n_depth
            out[(test.kind, n)] = test.median_ts
    return out


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
        pairs: list[tuple[dict[int, dict[str, Any]], dict[tuple[str, int], float]]] = []
        loads = [loadavg()]
        for r in range(rounds):
            a = devicelab_round(plan, tmp)
            sizes = sorted({int(row["input_tokens"]) for row in a.values()})
            b = llama_bench_round(binary, model_path, flags, sizes, args.tokens)
            pairs.append((a, b))
            loads.append(loadavg())
            print(f"round {r + 1}/{rounds} done (load {loads[-1]})", flush=True)

    print(f"\nSmolLM2-135M Q4_1, {args.threads} threads, {args.tokens} output tokens, "
          f"{rounds} rounds of devicelab then llama-bench; load average (1 min) over the "
          f"run: {', '.join(loads)}; {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'L':>6}{'N':>6}  {'ITPS dl/lb':<36}{'OTPS dl/lb':<36}{'medians dl | lb':>28}")
    others: list[float] = []
    for length in lengths:
        itps: list[float] = []
        otps: list[float] = []
        abs_: dict[str, list[float]] = {"dl_i": [], "lb_i": [], "dl_o": [], "lb_o": []}
        n = 0
        for a, b in pairs:
            row = a.get(length)
            if row is None or not row["itps"] or not row["otps"]:
                continue
            n = int(row["input_tokens"])
            itps.append(row["itps"] / b[("pp", n)])
            otps.append(row["otps"] / b[("tg", n)])
            for key, value in (("dl_i", row["itps"]), ("lb_i", b[("pp", n)]),
                               ("dl_o", row["otps"]), ("lb_o", b[("tg", n)])):  # fmt: skip
                abs_[key].append(value)
            if row["other_cpu_pct"] is not None:
                others.append(row["other_cpu_pct"])
        med = {k: statistics.median(v) if v else 0.0 for k, v in abs_.items()}
        absolute = (f"{med['dl_i']:.0f}/{med['dl_o']:.0f} | "
                    f"{med['lb_i']:.0f}/{med['lb_o']:.0f} tok/s")  # fmt: skip
        print(f"{length:>6}{n:>6}  {describe(itps):<36}{describe(otps):<36}{absolute:>28}")
    if others:
        print(f"other_cpu_pct of devicelab's trials: median {statistics.median(others):.0f} %, "
              f"max {max(others):.0f} % (the machine's other load while they ran)")  # fmt: skip


if __name__ == "__main__":
    main()
