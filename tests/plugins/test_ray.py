"""The ray executor on a real local Ray cluster: a head and worker hosts (each a
`devicelab worker start` process with a virtual S24), all on this machine.

The virtual phones use the ``paced`` engine, which sleeps a phone's time instead of running
the model, so three phones on two cores still run in parallel.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from wordsplugin import free_port, run_cli

from devicelab import Reporter, RunDir, RunOutcome, TrialRecord
from devicelab import _plugins as plugin_manager
from devicelab._rundir import TRIALS, read_jsonl
from devicelab._runtime.resolve import load_and_resolve as load_and_prepare

ray = pytest.importorskip("ray")

PLUGINS = "host,llamacpp,docassist,android,virtual,quality,geval,openai,mlc,ray"
HOSTS = ("shelf-a", "shelf-b", "shelf-c")

SCENARIO = """\
[scenario]
name = "spread"
repetitions = {reps}
warmup = 0
retries = 2

[device]
name = "{device}"

[[models]]
name = "paced-135m"
engine = "paced"
options = {{ prefill_tps = 4000.0, decode_tps = 80.0 }}

[tasks]
kinds = ["SUMM", "QA"]
documents = "docassist-mini"
max_documents = 2
max_output_tokens = 8

[context]
sections = 1
lengths = [200]

[telemetry]
interval_s = 1.0
"""


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def join(self, host: str, offer: str = "", env: Mapping[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "devicelab", "worker", "start", "--address", self.address]
        cmd += ["--name", host, "--num-cpus", "0", "--block"]
        # Several nodes on one host: each needs its own agent ports and worker port range.
        low = 20000 + 300 * len(self.procs)
        ports = [f"--min-worker-port {low} --max-worker-port {low + 299}"]
        for opt in ("dashboard-agent-listen", "dashboard-agent-grpc", "runtime-env-agent"):
            ports.append(f"--{opt}-port {free_port()}")
        ports.append(f"--metrics-export-port {free_port()}")
        if offer:  # a `ray start --resources` of its own, in place of what it discovered
            ports.append(f"--resources '{offer}'")
        cmd += ["--ray-args", " ".join(ports)]
        self.procs[host] = _spawn(cmd, env or self.env)

    def kill(self, host: str) -> None:
        proc = self.procs.pop(host)
        _killpg(proc)

    def wait_for(
        self, units: int, name: str = "virtual-s24", timeout: float = 90, of: str = "device"
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [n for n in ray.nodes() if n["Alive"]]
            have = sum(n["Resources"].get(f"devicelab-{of}:{name}", 0) for n in alive)
            if have == units:
                return
            time.sleep(0.3)
        raise AssertionError(f"the cluster did not reach {units} {name}")


def _spawn(cmd: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the node and its workers die together
    )


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    """Kill a node as a power cut would: the process, its group and every descendant (Ray
    starts some in sessions of their own), all at once."""
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    proc.wait(timeout=30)


def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("the Ray head did not start")


@pytest.fixture(scope="module")
def cluster(adb_server: object) -> Iterator[Cluster]:
    """The cluster, for this module's tests only: later tests expect no child processes."""
    # A short directory: Ray's socket paths must fit in 107 bytes.
    tmp = tempfile.mkdtemp(prefix="dlray", dir="/tmp")
    port = free_port()
    env = {
        **os.environ,
        "RAY_TMPDIR": tmp,
        "RAY_AUTH_MODE": "disabled",  # no token auth on the throw-away test cluster
        "RAY_USAGE_STATS_ENABLED": "0",
        # A killed host is declared dead in about a second, not the default half minute.
        "RAY_health_check_initial_delay_ms": "0",
        "RAY_health_check_period_ms": "300",
        "RAY_health_check_timeout_ms": "300",
        "RAY_health_check_failure_threshold": "3",
        "DEVICELAB_PLUGINS": PLUGINS,
    }
    env.pop("RAY_ADDRESS", None)
    head = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--port", str(port)]
    head += ["--num-cpus", "0", "--temp-dir", tmp, "--disable-usage-stats"]
    head += ["--include-dashboard=false", "--block"]
    c = Cluster(f"127.0.0.1:{port}", env)
    c.procs["head"] = _spawn(head, env)
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_AUTH_MODE")}
    os.environ.update(RAY_TMPDIR=tmp, RAY_AUTH_MODE="disabled")
    try:
        _wait_port(port)
        ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
        # One at a time: nodes starting together on one host race for ports.
        for i, host in enumerate(HOSTS):
            c.join(host)
            c.wait_for(i + 1)
        yield c
    finally:
        ray.shutdown()
        for name in [n for n in c.procs if n != "head"] + ["head"]:
            if name in c.procs:
                c.kill(name)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        subprocess.run(["rm", "-rf", tmp], check=False)


def write(tmp: Path, device: str = "virtual-s24", reps: int = 2) -> Path:
    path = tmp / "spread.toml"
    path.write_text(textwrap.dedent(SCENARIO.format(device=device, reps=reps)))
    return path


def test_a_scenario_spreads_over_the_cluster_and_each_trial_is_recorded_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["run", str(write(tmp_path, reps=3)), "--out", str(out)]
    assert run_cli([*args, "--executor", "ray", "--address", cluster.address]) == 0
    records = list(read_jsonl(out / TRIALS))
    ids = [r["trial_id"] for r in records]
    assert len(ids) == len(set(ids)) == 2 * 2 * 3  # 2 documents x 2 tasks x 3 repetitions
    assert all(r["status"] == "ok" for r in records)
    used = {r["device"] for r in records}
    assert len(used) > 1 and used <= {f"{h}/virtual-s24" for h in HOSTS}
    # Telemetry comes back with the records and carries their trial ids.
    sampled = {s["trial_id"] for s in read_jsonl(out / "telemetry.jsonl")}
    assert set(ids) <= sampled
    # So do the token times: a line of tokens.jsonl per trial, one offset per output token.
    kept = {t["trial_id"]: t["ms"] for t in read_jsonl(out / "tokens.jsonl")}
    assert set(kept) == set(ids)
    assert all(len(kept[r["trial_id"]]) == r["output_tokens"] for r in records)
    # Each worker's load (its phone, engine and model) reaches the driver's run.json, keyed
    # as the records name it.
    loads = json.loads((out / "run.json").read_text())["provenance"]["loads"]
    assert {r["provenance"] for r in records} == set(loads)
    assert {e["device"] for e in loads.values()} == used
    assert all(e["device_info"]["build"] and e["engine"]["name"] == "paced" for e in loads.values())
    # A second pass resumes from trials.jsonl and runs nothing again.
    assert run_cli([*args, "--resume", "--executor", "ray", "--address", cluster.address]) == 0
    assert len(list(read_jsonl(out / TRIALS))) == len(records)


def test_adaptive_repetitions_run_in_rounds_the_driver_decides(
    cluster: Cluster, tmp_path: Path
) -> None:
    path = write(tmp_path)
    auto = 'repetitions = "auto"\nmin_repetitions = 2\nmax_repetitions = 4\norder = "interleaved"'
    path.write_text(path.read_text().replace("repetitions = 2", auto))
    out = tmp_path / "run"
    args = ["run", str(path), "--out", str(out), "--executor", "ray", "--address", cluster.address]
    assert run_cli(args) == 0
    records = list(read_jsonl(out / TRIALS))
    ids = [r["trial_id"] for r in records]
    assert len(ids) == len(set(ids)) and all(r["status"] == "ok" for r in records)
    assert len({r["device"] for r in records}) > 1  # a round is spread over the phones
    rows = json.loads((out / "summary.json").read_text())
    stopped = {}
    for task in ("SUMM", "QA"):
        reps = [r["repetition"] for r in records if r["task"] == task]
        n = max(reps) + 1
        # 2 documents a repetition: an interval from 3 repetitions on; none past the maximum.
        assert sorted(reps) == sorted(list(range(n)) * 2) and 3 <= n <= 4
        # A row per phone that ran the cell, each with the cell's one reason.
        (reason,) = {r["stopped"] for r in rows if r["task"] == task}
        assert f"after {n} (" in reason or reason.startswith("max_repetitions 4")
        stopped[task] = reason
    # Resumed, the driver makes the same decisions from the records and runs nothing.
    assert run_cli([*args, "--resume"]) == 0
    assert len(list(read_jsonl(out / TRIALS))) == len(records)
    again = json.loads((out / "summary.json").read_text())
    assert {r["task"]: r["stopped"] for r in again} == stopped


def test_a_device_no_node_has_is_reported_at_once_by_its_resource(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fold.toml").write_text('[device]\nname = "virtual-fold"\nkind = "virtual"\n')
    scenario = write(tmp_path, device=str(tmp_path / "fold.toml"))
    out = tmp_path / "run"
    args = ["run", str(scenario), "--out", str(out), "--executor", "ray"]
    assert run_cli([*args, "--address", cluster.address]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "devicelab-device:virtual-fold" in err and "devicelab-device:virtual-s24" in err
    assert not out.exists()


def test_the_ray_executor_needs_an_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    args = ["run", str(write(tmp_path)), "--out", str(tmp_path / "r"), "--executor", "ray"]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert "--address HEAD:PORT" in err and "Traceback" not in err


class KillOnFirst(Reporter):
    """Kills a worker host the moment its first trial is recorded: mid-run, by construction."""

    def __init__(self, cluster: Cluster, host: str) -> None:
        self.cluster, self.host = cluster, host

    def trial_done(self, record: TrialRecord) -> None:
        if record.identity.device.startswith(self.host + "/") and self.host in self.cluster.procs:
            self.cluster.kill(self.host)


def run_killing(
    cluster: Cluster, scenario: Path, out: Path, host: str
) -> tuple[RunOutcome, list[dict[str, Any]]]:
    """Run ``scenario`` on the cluster into ``out``, killing ``host`` after its first trial;
    the outcome and the records written."""
    from devicelab_ray.executor import RayExecutor

    plan = load_and_prepare(scenario, plugin_manager.get_registry())
    rundir = RunDir.open(out, plan.scenario, resume=False)
    executor = RayExecutor(cluster.address)
    executor.check(plan)
    try:
        outcome = executor.run(plan, rundir, KillOnFirst(cluster, host))
    finally:
        rundir.close()
    return outcome, list(read_jsonl(out / TRIALS))


def test_a_host_killed_mid_run_has_its_trials_finish_elsewhere(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.join("doomed")
    cluster.wait_for(len(HOSTS) + 1)
    outcome, records = run_killing(cluster, write(tmp_path, reps=4), tmp_path / "run", "doomed")
    ids = [r["trial_id"] for r in records]
    assert len(ids) == len(set(ids)) == 2 * 2 * 4 and outcome.failed == 0
    assert "doomed" not in cluster.procs  # it was killed while trials were left
    moved = [r for r in records if any("doomed" in n for n in r["lost_attempts"])]
    assert moved, "a trial in flight on the killed host should have moved to another"
    assert all(r["attempts"] >= 2 and not r["device"].startswith("doomed") for r in moved)
    assert all(r["status"] == "ok" for r in records)


def test_trials_left_when_the_last_matching_device_is_lost_are_recorded_failed(
    cluster: Cluster, tmp_path: Path
) -> None:
    # One host with the only "virtual-solo": a virtual S24 under a profile name of its own.
    cluster.join("solo", '{"devicelab-device:virtual-solo": 1, "devicelab-host:solo": 1}')
    cluster.wait_for(1, "virtual-solo")
    (tmp_path / "solo.toml").write_text('[device]\nname = "virtual-solo"\nkind = "virtual"\n')
    scenario = write(tmp_path, device=str(tmp_path / "solo.toml"))
    outcome, records = run_killing(cluster, scenario, tmp_path / "run", "solo")
    ids = [r["trial_id"] for r in records]
    assert len(ids) == len(set(ids)) == 2 * 2 * 2  # every trial recorded, once
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] == "failed"]
    assert ok and failed and outcome.failed == len(failed)
    assert all(r["device"] == "solo/virtual-solo" for r in ok)
    assert all("no device 'virtual-solo' is left" in r["error"] for r in failed)


PHONE = """\
[device]
name = "SM-S921B"
kind = "android"

[device.match]
models = ["SM-S921B"]
"""


@dataclass
class PhoneHost:
    """A worker host with one phone on its own adb server: a virtual S24 in a process of its
    own (`devicelab virtual start`), so it can be stopped while the host keeps running."""

    name: str
    env: dict[str, str]
    serial: str = ""

    def virtual(self, *args: str) -> str:
        cmd = [sys.executable, "-m", "devicelab", "virtual", *args]
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture
def phone_hosts(cluster: Cluster, tmp_path: Path) -> Iterator[list[PhoneHost]]:
    import adbutils

    hosts = []
    for name in ("keeps", "drops"):
        (tmp_path / name).mkdir()
        env = {**cluster.env, "ANDROID_ADB_SERVER_PORT": str(free_port())}
        env["XDG_RUNTIME_DIR"] = str(tmp_path / name)  # where `devicelab virtual` keeps its phones
        hosts.append(PhoneHost(name, env))
    try:
        # Both at once (each starts its host's adb server, then the phone): seconds saved.
        cmd = [sys.executable, "-m", "devicelab", "virtual", "start"]
        starts = [
            subprocess.Popen(cmd, env=h.env, stdout=subprocess.PIPE, text=True) for h in hosts
        ]
        for h, proc in zip(hosts, starts, strict=True):
            h.serial = proc.communicate(timeout=60)[0].strip()
            assert proc.returncode == 0 and h.serial
        for i, h in enumerate(hosts):
            # Offered as discovered (devicelab-model:SM-S921B), without the virtual-s24 the
            # other tests count.
            offer = f'{{"devicelab-model:SM-S921B": 1, "devicelab-host:{h.name}": 1}}'
            cluster.join(h.name, offer, h.env)
            cluster.wait_for(i + 1, "SM-S921B", of="model")  # one at a time, as above
        yield hosts
    finally:
        for h in hosts:
            if h.name in cluster.procs:
                cluster.kill(h.name)
            stop = [sys.executable, "-m", "devicelab", "virtual", "stop"]
            subprocess.run(stop, env=h.env, capture_output=True, timeout=60, check=False)
            port = h.env["ANDROID_ADB_SERVER_PORT"]
            kill = [adbutils.adb_path(), "-P", port, "kill-server"]
            subprocess.run(kill, capture_output=True, timeout=30, check=False)


def test_a_phone_lost_mid_run_on_a_host_that_stays_up_has_its_trials_moved(
    cluster: Cluster,
    phone_hosts: list[PhoneHost],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    phone_scenario: Callable[..., Path],
) -> None:
    keeps, drops = phone_hosts
    # llama.cpp on the phone, not the paced engine: paced never talks to the phone, so a phone
    # lost under it would go unnoticed. A phone is lost when a trial's adb shell breaks.
    (tmp_path / "phone.toml").write_text(PHONE)
    # Three trials per cell on two documents, each retried twice, a lost phone not waited for.
    scenario = phone_scenario(
        name="phones", device=str(tmp_path / "phone.toml"), repetitions=3, max_documents=2,
        max_output_tokens=2, tables={"telemetry": {"interval_s": 1.0}},
        scenario_keys={"timeout_s": 300, "retries": 2, "reconnect_timeout_s": 1},
    )  # fmt: skip
    out = tmp_path / "run"
    stopped = threading.Event()

    def stop_the_phone_after_its_first_trial() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(r["device"].startswith("drops/") for r in read_jsonl(out / TRIALS)):
                drops.virtual("stop", drops.serial)
                stopped.set()
                return
            time.sleep(0.05)

    # The driver checks the scenario against a phone it sees: the one on the host "keeps".
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", keeps.env["ANDROID_ADB_SERVER_PORT"])
    stopper = threading.Thread(target=stop_the_phone_after_its_first_trial, daemon=True)
    stopper.start()
    args = ["run", str(scenario), "--out", str(out), "--executor", "ray"]
    code = run_cli([*args, "--address", cluster.address])
    stopper.join(timeout=60)
    records = list(read_jsonl(out / TRIALS))
    ids = [r["trial_id"] for r in records]
    assert len(ids) == len(set(ids)) == 2 * 3  # 2 documents x QA x 3 repetitions, once each
    assert stopped.is_set()
    host = "devicelab-host:drops"  # the host stayed up: its node is alive in the cluster
    assert any(n["Alive"] and host in n["Resources"] for n in ray.nodes())
    assert code == 0 and all(r["status"] == "ok" for r in records)
    # A trial can also be retried on its own phone (a device fault the phone survived, such
    # as a killed engine, on a loaded machine); moved are the trials whose phone was lost.
    moved = [r for r in records if any("did not come back" in n for n in r["lost_attempts"])]
    assert moved, "a trial left on the stopped phone should have moved to the other"
    for r in moved:
        assert r["device"] == "keeps/SM-S921B" and r["attempts"] >= 2
        assert all("drops/SM-S921B" in note for note in r["lost_attempts"])
    ran_on_drops = [r for r in records if r["device"] == "drops/SM-S921B"]
    assert ran_on_drops  # it ran trials before it was stopped
