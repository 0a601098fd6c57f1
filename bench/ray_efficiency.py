"""The lab's own parallel efficiency on Ray: N virtual S24s, throughput against N.

    python bench/ray_efficiency.py [--sizes 1,2,4,8] [--per-device 16]

For each N it starts a throw-away Ray head on this machine (its state in a temporary
directory, token auth off) offering N units of ``devicelab-device:virtual-s24``, and runs a
scenario of 16 x N trials with ``--executor ray``. Each virtual phone uses the ``paced``
engine, which sleeps a phone's prefill and decode time instead of computing, so the phones
cost this host no CPU and the figures are the lab's (scheduling, actors, records, telemetry),
not this CPU's. Prints, per N: trials/s in the steady state (every device up) and over the
whole run (actor and phone start-up included), parallel efficiency = throughput(N) /
(N x throughput(1)) for each (goal >= 0.8), and the per-trial scheduling overhead: the mean
idle gap of a device between the end of one trial and the start of its next.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import adbutils
import psutil
import ray
from devicelab_ray.executor import RayExecutor
from virtual_android import free_port

from devicelab import Reporter, RunDir
from devicelab import _plugins as plugin_manager
from devicelab._rundir import load_run
from devicelab._runtime.resolve import load_and_resolve as load_and_prepare

SCENARIO = """\
[scenario]
name = "ray-efficiency"
repetitions = {reps}
warmup = 0

[device]
name = "virtual-s24"

[[models]]
name = "paced-135m"
engine = "paced"
options = {{ prefill_tps = {prefill}, decode_tps = {decode} }}

[tasks]
kinds = ["SUMM", "QA"]
documents = "docassist-mini"
max_documents = {docs}
max_output_tokens = {tokens}

[context]
sections = 1
lengths = [200]

[telemetry]
interval_s = 1.0
"""


def start_head(n: int, tmp: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    offer = {"devicelab-device:virtual-s24": n, "devicelab-host:bench": 1}
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--port", str(port)]
    cmd += ["--num-cpus", "0", "--resources", json.dumps(offer), "--temp-dir", tmp]
    cmd += ["--disable-usage-stats", "--include-dashboard=false", "--block"]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"127.0.0.1:{port}"
        time.sleep(0.2)
    raise SystemExit("the Ray head did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    proc.wait(timeout=30)


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def measure(n: int, args: argparse.Namespace, tmp: Path, env: dict[str, str]) -> dict[str, Any]:
    head, address = start_head(n, str(tmp / "ray"), env)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        path = tmp / f"n{n}.toml"
        body = SCENARIO.format(
            reps=4,
            docs=2 * n * args.per_device // 16,
            tokens=args.tokens,
            prefill=args.prefill_tps,
            decode=args.decode_tps,
        )
        path.write_text(textwrap.dedent(body))
        plan = load_and_prepare(path, plugin_manager.get_registry())
        run = RunDir.open(tmp / f"run-{n}", plan.scenario, resume=False)
        executor = RayExecutor(address)
        executor.check(plan)
        t0 = time.perf_counter()
        try:
            executor.run(plan, run, Reporter())
        finally:
            run.close()
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
        stop(head)
    records = [r.to_json() for r in load_run(tmp / f"run-{n}").records]
    bad = [r for r in records if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"N={n}: {len(bad)} trials failed, e.g. {bad[0]['error']}")
    start = min(ts(r["started_at"]) for r in records)
    end = max(ts(r["finished_at"]) for r in records)
    gaps = []
    by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_device[r["device"]].append(r)
    for recs in by_device.values():
        recs.sort(key=lambda r: ts(r["started_at"]))
        gaps += [ts(b["started_at"]) - ts(a["finished_at"]) for a, b in itertools.pairwise(recs)]
    # Steady state: from the moment the last device started its first trial to the moment the
    # first device finished its last one; trials count by the share of them inside it.
    t_a = max(ts(recs[0]["started_at"]) for recs in by_device.values())
    t_b = min(ts(recs[-1]["finished_at"]) for recs in by_device.values())
    done = 0.0
    for r in records:
        t0, t1 = ts(r["started_at"]), ts(r["finished_at"])
        if t1 > t0:
            done += max(0.0, min(t1, t_b) - max(t0, t_a)) / (t1 - t0)
    return {
        "n": n,
        "devices": len(by_device),
        "trials": len(records),
        "trial_s": statistics.mean(r["runtime_s"] for r in records),
        "span_s": end - start,
        "wall_s": wall,
        "ramp_s": t_a - start,
        "throughput": done / (t_b - t_a),
        "whole": len(records) / wall,
        "overhead_ms": 1000 * statistics.mean(gaps) if gaps else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,2,4,8")
    ap.add_argument("--per-device", type=int, default=16, help="trials per device (x16)")
    ap.add_argument("--prefill-tps", type=float, default=600.0)
    ap.add_argument("--decode-tps", type=float, default=61.0)
    ap.add_argument("--tokens", type=int, default=8)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="dlbench", dir="/tmp"))
    adb_port = free_port()
    env = {
        **os.environ,
        "ANDROID_ADB_SERVER_PORT": str(adb_port),
        "RAY_TMPDIR": str(tmp / "ray"),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    os.environ.update({k: env[k] for k in ("ANDROID_ADB_SERVER_PORT", "RAY_TMPDIR")})
    os.environ["RAY_AUTH_MODE"] = "disabled"
    adb = adbutils.adb_path()
    subprocess.run([adb, "-P", str(adb_port), "start-server"], check=True, capture_output=True)
    rows = []
    try:
        for n in sizes:
            rows.append(measure(n, args, tmp, env))
            print(f"N={n}: done", file=sys.stderr)
    finally:
        subprocess.run([adb, "-P", str(adb_port), "kill-server"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    one = next((r for r in rows if r["n"] == 1), None)
    print(
        f"{'N':>3} {'devices':>7} {'trials':>6} {'trial s':>8} {'run s':>7} {'ramp s':>7} "
        f"{'trials/s':>9} {'efficiency':>10} {'whole/s':>8} {'whole eff':>9} {'overhead ms':>11}"
    )
    for r in rows:
        eff = r["throughput"] / (r["n"] * one["throughput"]) if one else float("nan")
        whole = r["whole"] / (r["n"] * one["whole"]) if one else float("nan")
        print(
            f"{r['n']:>3} {r['devices']:>7} {r['trials']:>6} {r['trial_s']:>8.3f} "
            f"{r['wall_s']:>7.2f} {r['ramp_s']:>7.2f} {r['throughput']:>9.2f} {eff:>10.2f} "
            f"{r['whole']:>8.2f} {whole:>9.2f} {r['overhead_ms']:>11.1f}"
        )
    print(
        "trials/s and efficiency: steady state (every device up); whole/s and whole eff: the\n"
        "whole run, actor and phone start-up included; ramp s: from the first trial's start to\n"
        "the last device's first; overhead ms: mean idle gap of a device between two trials."
    )


if __name__ == "__main__":
    main()
