"""Fault soak: a long app-versus-CLI run on a virtual S24 while faults hit it from outside.

    python bench/soak.py [--repetitions 25] [--every 6 10] [--seed 0] [--out DIR] [--db]

Starts a virtual S24 on a private adb server (the real adb binary) and runs
scenarios/app_vs_cli.toml on it (llama-cli and the MLCChat app; ``--repetitions`` per cell,
``[scenario] retries = 3``) with ``devicelab run`` in a process of its own. Every ``--every``
seconds, while an engine is working (its CPU time grows), one fault goes to the phone through
the adb binary, as a user or the phone itself would do it: ``am force-stop`` of the app, the
low-memory killer's kill of the app's process, ``kill -9`` of the running llama-cli,
``adb reboot``, ``adb disconnect``. Halfway through, the run gets a Ctrl-C (SIGINT) and is
continued with ``--resume``. Then it checks the run:

- every planned trial is recorded exactly once (none missing, none doubled);
- every fault that landed shows in the trial it hit as a lost attempt (``lost_attempts``);
- no trial failed on a fault a retry survives unless it used up ``retries``;
- the kept figures of a retried trial come from its last attempt's telemetry alone;
- with ``--db``, the results store holds the same rows as trials.jsonl.

It prints the counts (trials, faults by kind, retried, failed, lost, doubled) and exits 1 when
a check fails. ``soak()`` is the same as a function: tests run a short one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import adbutils

ROOT = Path(__file__).resolve().parents[1]
APP = "ai.mlc.mlcchat"
ENGINE = "llama-cli"
# Which fault can hit which engine while it works; a reboot and a disconnect hit either.
FAULTS = {
    ENGINE: ("kill_engine", "kill_engine", "reboot", "disconnect"),
    APP: ("force_stop", "lmk_app", "force_stop", "lmk_app", "reboot", "disconnect"),
}
# What a lost attempt's reason says, by the fault that causes it.
REASONS = {
    "kill_engine": ("llama-cli killed",),
    "force_stop": ("app killed",),
    "lmk_app": ("app killed",),
    "reboot": ("lost the connection", "closed the shell", "UI server went away", "not ready"),
    "disconnect": ("lost the connection", "closed the shell", "UI server went away", "not ready"),
}
SURVIVABLE = tuple({r for rs in REASONS.values() for r in rs})
# How long a fault may take to bite: `adb reboot` drops the link after half a second.
EFFECT_S = 0.6


def scenario_text(
    serial: str, repetitions: int, max_output_tokens: int, small: bool = False
) -> str:
    """The shipped app-versus-CLI scenario on ``serial``, ``repetitions`` per cell; ``small``:
    one task and one L (a cell per engine)."""
    text = (ROOT / "scenarios" / "app_vs_cli.toml").read_text()
    cells = (("kinds", '["QA"]'), ("lengths", "[100]")) if small else ()
    for key, value in (
        ("repetitions", str(repetitions)),
        ("timeout_s", "60"),
        ("max_output_tokens", str(max_output_tokens)),
        *cells,
    ):
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
        assert n == 1, key
    text = text.replace('name = "app_vs_cli"', 'name = "soak"', 1)
    # The [device] name line is the second "name =": the first was the scenario's.
    text = re.sub(r'(?m)^name = "virtual-s24"$', f'name = "{serial}"', text)
    binary = ROOT / "devices" / "virtual-s24" / "llama-cli"
    text = text.replace("[scenario]\n", "[scenario]\nretries = 3\nreconnect_timeout_s = 40\n", 1)
    text = text.replace('"devices/virtual-s24/llama-cli"', f'"{binary}"')
    # Noise is not what this soak is about: flagged, never rerun, so every attempt beyond
    # the first is a fault's.
    return text + '\n[noise]\non_noisy = "flag"\n'


@dataclass
class Fault:
    kind: str
    at: float  # time.time()
    target: str  # the engine that was working
    landed: bool  # the command did what it does (the process was there to kill)
    detail: str = ""


@dataclass
class Report:
    planned: int = 0
    trials: int = 0
    doubled: int = 0
    missing: int = 0
    unplanned: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    landed: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    lost: int = 0
    failed: int = 0
    failed_at_limit: int = 0
    interrupted_at: int = 0
    ctrl_c: int = 0  # presses it took to stop the first run
    stopped_at: float = 0.0  # time.time() when the interrupted run had exited
    cut_short: int = 0  # faults that hit the trial the Ctrl-C stopped (never recorded)
    absorbed: int = 0  # faults between two attempts, absorbed by the next one's restart
    unexplained: int = 0  # lost attempts no fault explains (a second one of a reboot)
    resume_code: int | None = None
    problems: list[str] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        yield (
            f"trials: {self.trials} recorded of {self.planned} planned "
            f"(doubled {self.doubled}, missing {self.missing}, unplanned {self.unplanned}); "
            f"Ctrl-C after {self.interrupted_at} (pressed {self.ctrl_c}x), resumed "
            f"(exit {self.resume_code})"
        )
        kinds = ", ".join(f"{k} {self.landed[k]}/{n}" for k, n in sorted(self.faults.items()))
        yield f"faults (landed/sent): {kinds or 'none'}"
        yield (
            f"  as lost attempts: {sum(self.landed.values()) - self.absorbed - self.cut_short}"
            f"; between attempts (absorbed): {self.absorbed}; in the trial the Ctrl-C "
            f"stopped: {self.cut_short}; lost attempts no fault explains: {self.unexplained}"
        )
        yield (
            f"retried trials: {self.retried}; lost attempts: {self.lost}; failed trials: "
            f"{self.failed} ({self.failed_at_limit} at the retry limit)"
        )
        for p in self.problems:
            yield f"PROBLEM: {p}"
        yield "all checks passed" if not self.problems else f"{len(self.problems)} problem(s)"


class Adb:
    """The real adb binary on the soak's own server."""

    def __init__(self, port: int, serial: str) -> None:
        self.port, self.serial = port, serial

    def __call__(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        cmd = [adbutils.adb_path(), "-P", str(self.port), *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(cmd, 124, "", "timed out")

    def shell(self, command: str) -> subprocess.CompletedProcess[str]:
        return self("-s", self.serial, "shell", command)


class Injector(threading.Thread):
    """Sends a fault every ``every`` seconds, at a moment an engine is working."""

    def __init__(self, adb: Adb, every: tuple[float, float], rng: random.Random) -> None:
        super().__init__(name="soak-faults", daemon=True)
        self.adb, self.every, self.rng = adb, every, rng
        self.faults: list[Fault] = []
        self.stop = threading.Event()

    def _pids(self, name: str) -> list[int]:
        out = self.adb.shell(f"pidof {name}").stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def _ticks(self, pid: int) -> int | None:
        line = self.adb.shell(f"cat /proc/{pid}/stat").stdout
        fields = line.rpartition(")")[2].split()
        return sum(int(v) for v in fields[11:15]) if len(fields) >= 15 else None

    def working(self) -> tuple[str, int] | None:
        """The engine working now (its CPU time grew over 0.2 s) and its pid."""
        for name in (ENGINE, APP):
            for pid in self._pids(name):
                before = self._ticks(pid)
                time.sleep(0.2)
                after = self._ticks(pid)
                if before is not None and after is not None and after > before:
                    return name, pid
        return None

    def inject(self, kind: str, pid: int) -> tuple[bool, str]:
        adb = self.adb
        if kind == "force_stop":
            # A force-stop lands only when the app is still there to stop.
            landed = bool(self._pids(APP))
            res = adb.shell(f"am force-stop {APP}")
        elif kind in ("kill_engine", "lmk_app"):
            res = adb.shell(f"kill -9 {pid}")
            landed = res.returncode == 0 and "No such process" not in res.stdout + res.stderr
            return landed, (res.stdout + res.stderr).strip()
        elif kind == "reboot":
            res = adb("-s", adb.serial, "reboot")
            landed = res.returncode == 0
        else:
            res = adb("disconnect", adb.serial)
            landed = "disconnected" in res.stdout
        return landed and res.returncode == 0, (res.stdout + res.stderr).strip()

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(*self.every)):
            busy = None
            while busy is None and not self.stop.is_set():
                with contextlib.suppress(Exception):
                    busy = self.working()
                if busy is None:
                    self.stop.wait(0.1)
            if busy is None:
                return
            name, pid = busy
            kind = self.rng.choice(FAULTS[name])
            at = time.time()
            landed, detail = self.inject(kind, pid)
            self.faults.append(Fault(kind, at, name, landed, detail))


def _default_sigint() -> None:
    # A job started in the background (`cmd &`) inherits SIGINT ignored, and Python then
    # leaves it so: the run would never see the Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _count(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


def soak(
    out: Path,
    repetitions: int = 25,
    every: tuple[float, float] = (6.0, 10.0),
    seed: int = 0,
    db: bool = False,
    max_output_tokens: int = 16,
    interrupt_at: float = 0.5,
    log: Any = None,
    small: bool = False,
) -> Report:
    """Run the soak in ``out`` (a new directory); the checks' :class:`Report`."""
    from devicelab_virtual.launch import make_virtual_s24, register_with_adb, shutdown
    from virtual_android import apps_of, free_port

    import devicelab
    from devicelab._runtime.resolve import load_and_resolve

    def say(msg: str) -> None:
        if log is not None:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=log, flush=True)

    out.mkdir(parents=True)
    port = free_port()
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(port)}
    saved = os.environ.get("ANDROID_ADB_SERVER_PORT")
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    subprocess.run(
        [adbutils.adb_path(), "-P", str(port), "start-server"], check=True, capture_output=True
    )
    phone = make_virtual_s24()
    phone.start()
    report = Report()
    injector: Injector | None = None
    try:
        register_with_adb(phone.serial)
        # MLCChat has no setting for the answer's length: the virtual phone caps it.
        apps_of(phone).mlcchat.max_tokens = max_output_tokens
        scenario = out / "soak.toml"
        scenario.write_text(scenario_text(phone.serial, repetitions, max_output_tokens, small))
        plan = load_and_resolve(scenario, devicelab.load_plugins())
        planned = {t.trial_id for t in plan.trials()}
        report.planned = len(planned)
        (out / "planned.json").write_text(json.dumps(sorted(planned)))
        run_dir = out / "run"
        cmd = [sys.executable, "-m", "devicelab", "run", str(scenario), "--out", str(run_dir)]
        if db:
            cmd += ["--db", str(out / "results.duckdb")]
        injector = Injector(Adb(port, phone.serial), every, random.Random(seed))
        injector.start()
        say(f"{report.planned} trials planned on {phone.serial}; faults every {every} s")
        trials = run_dir / "trials.jsonl"
        with (out / "run-1.log").open("w") as fh:
            first = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, preexec_fn=_default_sigint
            )
            while first.poll() is None and _count(trials) < interrupt_at * report.planned:
                time.sleep(0.2)
            report.interrupted_at = _count(trials)
            code = None
            while code is None:
                # Ctrl-C; again if it was lost (one landing in llama.cpp's log callback
                # during a model load is: ctypes drops exceptions raised in callbacks).
                first.send_signal(signal.SIGINT)
                report.ctrl_c += 1
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = first.wait(timeout=30)
        report.stopped_at = time.time()
        say(f"Ctrl-C after {report.interrupted_at} trials: exit {code}")
        if code != 130:
            report.problems.append(f"the interrupted run exited {code}, not 130")
        # A fault just before the Ctrl-C may have left the phone disconnected or rebooting:
        # as a user would, reconnect it before resuming.
        register_with_adb(phone.serial, timeout_s=60)
        with (out / "run-2.log").open("w") as fh:
            report.resume_code = subprocess.run(
                [*cmd, "--resume"], stdout=fh, stderr=subprocess.STDOUT, env=env
            ).returncode
        say(f"resumed run exited {report.resume_code}")
        injector.stop.set()
        injector.join(timeout=30)
        check(report, planned, run_dir, injector.faults, out / "results.duckdb" if db else None)
    finally:
        if injector is not None:
            injector.stop.set()
        shutdown(phone)
        subprocess.run([adbutils.adb_path(), "-P", str(port), "kill-server"], capture_output=True)
        if saved is None:
            os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
        else:
            os.environ["ANDROID_ADB_SERVER_PORT"] = saved
    (out / "faults.json").write_text(json.dumps([f.__dict__ for f in injector.faults], indent=1))
    (out / "soak.json").write_text(
        json.dumps({"interrupted_at": report.interrupted_at, "stopped_at": report.stopped_at})
    )
    return report


def check(
    report: Report, planned: set[str], run_dir: Path, faults: list[Fault], db: Path | None
) -> None:
    from devicelab import _noise as noise

    records = _jsonl(run_dir / "trials.jsonl")
    scenario = (run_dir / "scenario.toml").read_text()
    retries = int(m.group(1)) if (m := re.search(r"(?m)^retries = (\d+)", scenario)) else 2
    ids = [r["trial_id"] for r in records]
    report.trials = len(records)
    report.doubled = len(ids) - len(set(ids))
    report.missing = len(planned - set(ids))
    report.unplanned = len(set(ids) - planned)
    if report.doubled or report.missing or report.unplanned:
        report.problems.append(
            f"not every planned trial recorded once: {report.doubled} doubled, "
            f"{report.missing} missing, {report.unplanned} unplanned"
        )
    # Faults. A measured trial must never have run through one: no fault lands inside a kept
    # attempt (a reboot takes half a second to drop the link, so one sent in the last
    # moments of a trial hits the next). Each other fault is a lost attempt, of the trial it
    # hit or the next one, matched in time order; one that fell between two attempts (while
    # the lab was reconnecting or restarting the app) is absorbed by the next attempt's
    # restart and shows nowhere: counted, not a problem. One fault may cost two attempts (a
    # reboot drops the shell, then the UI server): lost attempts no fault explains are
    # counted too.
    order = sorted(records, key=lambda r: _ts(r["finished_at"]))
    pool: list[tuple[float, str]] = []  # (by when the attempt ended, its reason)
    for r in order:
        # A trial that ran out of retries lost its last attempt too: until it finished.
        tries = [x for x in r["lost_attempts"] if x.startswith("attempt ")]
        last_lost = r["status"] == "failed" and len(tries) >= r["attempts"]
        until = _ts(r["finished_at"] if last_lost else r["started_at"])
        pool.extend((until, reason) for reason in r["lost_attempts"])
    kept = [
        (_ts(r["started_at"]), _ts(r["finished_at"]) - EFFECT_S, r["trial_id"])
        for r in records
        if r["status"] == "ok"
    ]
    first = records[: report.interrupted_at]
    cut_from = max((_ts(r["finished_at"]) for r in first), default=0.0)
    used: set[int] = set()
    for f in sorted(faults, key=lambda f: f.at):
        report.faults[f.kind] += 1
        if not f.landed:
            continue
        report.landed[f.kind] += 1
        inside = next((t for a, b, t in kept if a < f.at < b), None)
        if inside is not None:
            report.problems.append(
                f"{f.kind} ({f.target}) at {datetime.fromtimestamp(f.at).time()} landed in "
                f"the kept attempt of {inside}"
            )
            continue
        if cut_from < f.at <= report.stopped_at:
            report.cut_short += 1  # the trial the Ctrl-C stopped: never recorded
            continue
        match = next(
            (
                i
                for i, (until, reason) in enumerate(pool)
                if i not in used and until > f.at and any(w in reason for w in REASONS[f.kind])
            ),
            None,
        )
        if match is None:
            report.absorbed += 1
        else:
            used.add(match)
    report.unexplained = len(pool) - len(used)
    report.retried = sum(1 for r in records if r["lost_attempts"])
    report.lost = sum(len(r["lost_attempts"]) for r in records)
    for r in records:
        tries = [x for x in r["lost_attempts"] if x.startswith("attempt ")]
        last_lost = len(tries) > retries or len(tries) < len(r["lost_attempts"])
        if r["attempts"] != len(tries) + len(r["noisy_attempts"]) + (0 if last_lost else 1):
            report.problems.append(f"{r['trial_id']}: attempts do not add up: {r['attempts']}")
        if r["status"] != "failed":
            continue
        report.failed += 1
        survivable = any(w in (r["error"] or "") for w in SURVIVABLE)
        if survivable and last_lost:
            report.failed_at_limit += 1
        elif survivable or "killed" in (r["error"] or ""):
            report.problems.append(f"{r['trial_id']} failed on a survivable fault: {r['error']}")
    _check_telemetry(report, records, run_dir, noise.other_cpu_pct)
    if db is not None:
        _check_store(report, records, run_dir, db)


def _check_telemetry(
    report: Report, records: list[dict[str, Any]], run_dir: Path, other: Any
) -> None:
    """A retried trial's figures are its kept attempt's: recomputed from the samples of that
    attempt alone they agree, and the lost attempts' samples are in telemetry.jsonl marked."""
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for s in _jsonl(run_dir / "telemetry.jsonl"):
        by_trial.setdefault(str(s.get("trial_id")), []).append(s)
    for r in records:
        if not r["lost_attempts"] or r["status"] != "ok":
            continue
        samples = [s for s in by_trial.get(r["trial_id"], []) if s.get("phase") != "cooldown"]
        kept = [s for s in samples if s.get("attempt", 1) == r["attempts"]]
        mems = [s["mem_mb"] for s in kept if s.get("mem_mb") is not None]
        peak = round(max(mems), 1) if mems else None
        if (other(kept), peak) != (r["other_cpu_pct"], r["peak_mem_mb"]):
            report.problems.append(
                f"{r['trial_id']}: figures ({r['other_cpu_pct']}, {r['peak_mem_mb']}) are not "
                f"the kept attempt's ({other(kept)}, {peak})"
            )


def _check_store(report: Report, records: list[dict[str, Any]], run_dir: Path, db: Path) -> None:
    from devicelab_store.factory import open_store

    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    with open_store(db) as store:
        rows = store.query("SELECT trial_id, record FROM trials WHERE run_id = ?", [run_id]).rows
    stored = {str(t): json.loads(rec) if isinstance(rec, str) else rec for t, rec in rows}
    mine = {r["trial_id"]: r for r in records}
    if set(stored) != set(mine):
        report.problems.append(
            f"the store has {len(stored)} rows, trials.jsonl {len(mine)} "
            f"({len(set(mine) - set(stored))} not stored, {len(set(stored) - set(mine))} extra)"
        )
    differ = [t for t in set(stored) & set(mine) if stored[t] != mine[t]]
    if differ:
        report.problems.append(f"{len(differ)} stored rows differ from trials.jsonl: {differ[:3]}")


def recheck(out: Path) -> Report:
    """The checks again, on the directory a soak left (``--check DIR``)."""
    run_dir = out / "run"
    if (out / "planned.json").exists():
        planned = set(json.loads((out / "planned.json").read_text()))
    else:  # a soak from before planned.json: the plan on its own (virtual) device name
        import devicelab
        from devicelab._runtime.resolve import load_and_resolve

        serial = json.loads((run_dir / "trials.jsonl").read_text().splitlines()[0])["device"]
        plan = load_and_resolve(out / "soak.toml", devicelab.load_plugins(), "virtual-s24")
        planned = {serial + t.trial_id.removeprefix("virtual-s24") for t in plan.trials()}
    faults = [Fault(**f) for f in json.loads((out / "faults.json").read_text())]
    report = Report(planned=len(planned))
    if (out / "soak.json").exists():
        meta = json.loads((out / "soak.json").read_text())
        report.interrupted_at, report.stopped_at = meta["interrupted_at"], meta["stopped_at"]
    else:  # from before soak.json: the first run's log was last written as it exited
        report.interrupted_at = int(
            re.findall(r"(\d+) finished trials are kept", (out / "run-1.log").read_text())[-1]
        )
        report.stopped_at = (out / "run-1.log").stat().st_mtime
    db = out / "results.duckdb"
    check(report, planned, run_dir, faults, db if db.exists() else None)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repetitions", type=int, default=25, help="per cell (25: 202 trials)")
    ap.add_argument("--every", type=float, nargs=2, default=(6.0, 10.0), metavar=("MIN", "MAX"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--db", action="store_true", help="also store the trials (--db)")
    ap.add_argument("--check", type=Path, metavar="DIR", help="only check a soak's directory")
    args = ap.parse_args()
    if args.check is not None:
        report = recheck(args.check)
        for line in report.lines():
            print(line)
        sys.exit(1 if report.problems else 0)
    out = args.out or Path("runs") / f"soak-{time.strftime('%Y%m%d-%H%M%S')}"
    t0 = time.monotonic()
    report = soak(out, args.repetitions, tuple(args.every), args.seed, args.db, log=sys.stderr)
    for line in report.lines():
        print(line)
    print(f"({time.monotonic() - t0:.0f} s; run directory {out / 'run'})")
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
