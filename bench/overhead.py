"""What does devicelab cost? The same prompts through a bare llama-cpp-python loop and through
devicelab (telemetry on and off, and telemetry on without keeping token times), interleaved in
one process, reported as ratios.

    python bench/overhead.py [--rounds 3] [--tokens 64] [--lengths 200,600,1000] [--quick]

Prints median ITPS and OTPS per condition, the ratios devicelab/bare (target >= 0.97), the
cost of 10 Hz telemetry (1 - on/off, target <= 1%), the OTPS ratio with and without keeping
every token's time (per-token fields and tokens.jsonl; target >= 0.99), plus the sampler's own
time per tick and the load average. ``--quick``: 1 round of one L (200), 32 tokens.
Machines are noisy: compare ratios from one run, never absolute speeds across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
from devicelab_host import HostCollector
from devicelab_llamacpp import LlamaCppEngine, _cpu_has_amx, _model_params

from devicelab import _plugins as plugin_manager
from devicelab import _tokens
from devicelab._metrics import speed
from devicelab._record import TrialRecord
from devicelab._rundir import RunDir, load_run
from devicelab._runtime.execute import execute
from devicelab._runtime.plan import Plan
from devicelab._runtime.prompts import build_prompts
from devicelab._runtime.resolve import resolve
from devicelab._scenario import load_scenario
from devicelab._telemetry import Sampler

SCENARIO = """\
[scenario]
name = "overhead"
repetitions = 1
warmup = 1

[[models]]
name = "smollm2-135m-instruct"
options = {{ {options} }}

[tasks]
kinds = ["SUMM"]
documents = "docassist-mini"
max_documents = 1
max_output_tokens = {tokens}

[context]
sections = {sections}
lengths = [{lengths}]

[telemetry]
enabled = {telemetry}
interval_s = 0.1

# The interference probe runs (other_cpu_pct is measured) but a noisy trial is not rerun:
# the bare loop cannot rerun its noisy prompts, so retries would bias the ratios.
[noise]
on_noisy = "flag"
"""


def make_plan(
    tmp: Path, tokens: int, lengths: list[int], telemetry: bool, options: str = ""
) -> Plan:
    """The plan of one condition; ``options`` is the model's options table's inside."""
    size = max(lengths)
    sections = size // min(lengths) if all(x % min(lengths) == 0 for x in lengths) else 1
    body = SCENARIO.format(
        tokens=tokens,
        sections=sections,
        lengths=", ".join(map(str, lengths)),
        telemetry=str(telemetry).lower(),
        options=options,
    )
    path = tmp / f"overhead-{telemetry}.toml"
    path.write_text(textwrap.dedent(body))
    return resolve(load_scenario(path), plugin_manager.get_registry())


def prompts_of(plan: Plan) -> list[list[int]]:
    """The exact prompt tokens devicelab sends, built by its own engine."""
    model = plan.models[0]
    engine = model.engine_cls(None, model.spec, model.options)  # type: ignore[arg-type]
    engine.load()
    assert isinstance(engine, LlamaCppEngine)
    prompts = build_prompts(plan, engine)
    out = [engine._prompt(p.messages) for _, p in sorted(prompts.items(), key=lambda kv: kv[0][3])]
    engine.close()
    return out


def bare_loop(model_path: str, prompts: list[list[int]], tokens: int) -> list[dict[str, float]]:
    """The reference: llama-cpp-python alone, the same settings and greedy decoding."""
    with _model_params(use_extra_bufts=not _cpu_has_amx()):
        llm = llama_cpp.Llama(
            model_path=model_path,
            n_ctx=2048,
            n_batch=512,
            n_threads=os.cpu_count() or 1,  # as the engine: llama-cpp-python's default is half
            n_threads_batch=os.cpu_count() or 1,
            verbose=False,
        )
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    results = []
    # The first prompt once more up front, unmeasured: devicelab's warm-up trial does the same.
    for i, prompt in enumerate([prompts[0], *prompts]):
        llm.reset()
        times: list[float] = []
        t_sent = time.perf_counter()
        gen = llm.generate(prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
        for tok in gen:
            if llama_cpp.llama_vocab_is_eog(vocab, tok):
                break
            times.append(time.perf_counter())
            if len(times) >= tokens:
                break
        gen.close()
        s = speed(t_sent, times, len(prompt), len(times))
        if i > 0:
            results.append({"itps": s.itps or 0.0, "otps": s.otps or 0.0})
    llm.close()
    return results


def run_records(plan: Plan, tmp: Path, tag: str) -> list[TrialRecord]:
    """One devicelab run of the plan; its measured (not warm-up) records."""
    out = tmp / f"run-{tag}-{time.monotonic_ns()}"
    run = RunDir.open(out, plan.scenario, resume=False)
    try:
        execute(plan, run)
    finally:
        run.close()
    return [r for r in load_run(out).records if not r.identity.warmup]


@contextlib.contextmanager
def without_token_times() -> Iterator[None]:
    """devicelab as it was before it kept token times: no per-token fields, no tokens.jsonl
    line (the session takes both from devicelab._tokens after each trial)."""
    saved = _tokens.offsets_ms, _tokens.measures
    _tokens.offsets_ms = lambda *a, **k: []
    _tokens.measures = lambda *a, **k: {}
    try:
        yield
    finally:
        _tokens.offsets_ms, _tokens.measures = saved


def devicelab_loop(plan: Plan, tmp: Path, tag: str, tokens: bool = True) -> list[dict[str, float]]:
    if not tokens:
        with without_token_times():
            return devicelab_loop(plan, tmp, tag)
    return [
        {
            "itps": r.measures.itps or 0.0,
            "otps": r.measures.otps or 0.0,
            "other": r.measures.other_cpu_pct if r.measures.other_cpu_pct is not None else -1,
        }
        for r in run_records(plan, tmp, tag)
    ]


def sampler_tick_ms(n: int = 200) -> float:
    """The sampler's own cost: milliseconds of work per tick with the host's collectors."""
    sampler = Sampler([HostCollector()], interval_s=0.1)
    for c in sampler.collectors:
        c.start()
    sampler.begin("bench")
    t0 = time.perf_counter()
    for _ in range(n):
        sampler._take()
    per_tick = (time.perf_counter() - t0) / n * 1000
    sampler.end()
    return per_tick


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--lengths", default="200,600,1000")
    ap.add_argument("--quick", action="store_true", help="1 round, L = 200, 32 tokens")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.tokens, args.lengths = 1, 32, "200"
    lengths = [int(x) for x in args.lengths.split(",")]

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        plan_on = make_plan(tmp, args.tokens, lengths, telemetry=True)
        plan_off = make_plan(tmp, args.tokens, lengths, telemetry=False)
        prompts = prompts_of(plan_on)
        model_path = str(plan_on.models[0].spec.path)
        # results[condition][round][prompt]: the same prompt in the same round pairs up.
        results: dict[str, list[list[dict[str, float]]]] = {
            "bare": [], "on": [], "off": [], "notok": []
        }  # fmt: skip
        runners: list[tuple[str, Any]] = [
            ("bare", lambda: bare_loop(model_path, prompts, args.tokens)),
            ("on", lambda: devicelab_loop(plan_on, tmp, "on")),
            ("off", lambda: devicelab_loop(plan_off, tmp, "off")),
            ("notok", lambda: devicelab_loop(plan_on, tmp, "notok", tokens=False)),
        ]
        for r in range(args.rounds):
            # Rotate the order each round so slow drift does not favour one condition.
            k = r % len(runners)
            order = runners[k:] + runners[:k]
            for name, fn in order:
                results[name].append(fn())
            print(f"round {r + 1}/{args.rounds} done", flush=True)

    tick = sampler_tick_ms()
    print(f"\n{len(prompts)} prompts (L = {args.lengths}), {args.tokens} output tokens, "
          f"{args.rounds} rounds; medians of per-prompt values:")  # fmt: skip
    print(f"{'condition':<28}{'ITPS tok/s':>12}{'OTPS tok/s':>12}")
    labels = {"bare": "bare llama-cpp-python", "on": "devicelab, 10 Hz telemetry",
              "off": "devicelab, no telemetry",
              "notok": "devicelab, no token times"}  # fmt: skip
    for name, label in labels.items():
        rows = [row for rnd in results[name] for row in rnd]
        print(f"{label:<28}{med(rows, 'itps'):>12.1f}{med(rows, 'otps'):>12.1f}")
    print("\nratios, median over (round, prompt) pairs run back to back:")
    for key in ("itps", "otps"):
        on_bare = paired(results["on"], results["bare"], key)
        off_bare = paired(results["off"], results["bare"], key)
        on_off = paired(results["on"], results["off"], key)
        print(f"{key.upper()}: devicelab/bare = {on_bare:.3f} (telemetry on), "
              f"{off_bare:.3f} (off); telemetry cost = {100 * (1 - on_off):+.1f}%")  # fmt: skip
    kept = paired(results["on"], results["notok"], "otps")
    print(f"token times: OTPS kept/not kept = {kept:.3f} (target >= 0.99)")
    load = os.getloadavg()
    print(f"load average during the bench: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"sampler: {tick:.3f} ms per tick = {tick * 10 / 1000:.2%} of one core at 10 Hz")
    others = [row["other"] for n in ("on", "off") for rnd in results[n] for row in rnd]
    known = sorted(v for v in others if v >= 0)
    if known:
        print(
            f"other_cpu_pct of devicelab's trials: median {statistics.median(known):.1f}%, "
            f"max {known[-1]:.1f}% ({len(known)} of {len(others)} measured; the machine's "
            "other load during the run)"
        )


def paired(a: list[list[dict[str, float]]], b: list[list[dict[str, float]]], key: str) -> float:
    return statistics.median(
        x[key] / y[key] for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)
    )


if __name__ == "__main__":
    main()
