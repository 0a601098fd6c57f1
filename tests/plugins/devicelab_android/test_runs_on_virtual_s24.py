"""Whole runs through the CLI against virtual S24s: the scheduler, the Android plugin and the
virtual device together, faults included. Short outputs keep each run to seconds."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import adbutils
import pytest
from devicelab_llamacpp import smollm2_path
from devicelab_virtual import VirtualType
from wordsplugin import run_cli

from devicelab._rundir import RUN_META, TELEMETRY, TRIALS, read_jsonl

# Two QA trials on one virtual S24 by its llama-cli; a reconnect gets 20 s.
VIRTUAL: dict[str, Any] = {
    "name": "virtual",
    "repetitions": 2,
    "scenario_keys": {"timeout_s": 60, "reconnect_timeout_s": 20},
}


@pytest.fixture
def scenario(phone_scenario: Callable[..., Path], adb_server: adbutils.AdbClient) -> Path:
    return phone_scenario(**VIRTUAL)


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """The virtual S24s the virtual device type starts, as they start."""
    phones: list[object] = []
    original = VirtualType.open

    def spy(self: VirtualType, name: str, profile: dict[str, object]) -> object:
        device = original(self, name, profile)
        phones.append(self._launched[id(device)])
        return device

    monkeypatch.setattr(VirtualType, "open", spy)
    yield phones


def test_virtual_s24_is_started_for_the_run_and_stopped_after(
    scenario: Path, tmp_path: Path, adb_server: adbutils.AdbClient, launched: list[object]
) -> None:
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    records = list(read_jsonl(out / TRIALS))
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    info = records[0]["device_info"]
    assert info["model"] == "SM-S921B" and info["platform"] == "s5e9945"
    assert records[0]["engine_timings"]["prefill_tokens"] == records[0]["input_tokens"]
    assert records[0]["max_temp_c"] is not None and records[0]["peak_mem_mb"] > 50
    assert records[0]["energy_j"] is not None
    # run.json names the phone's build, its llama-cli and the model file the records ran on.
    meta = json.loads((out / RUN_META).read_text())
    [load] = meta["provenance"]["loads"].values()
    assert {r["provenance"] for r in records} == set(meta["provenance"]["loads"])
    assert load["device_info"]["build"] == info["build"] != ""
    assert load["engine"]["build"]["llama_cpp_commit"] == "virtual"
    model = smollm2_path()
    assert model is not None and load["model"]["path"] == str(model)
    assert load["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    [phone] = launched
    serial = phone.serial  # type: ignore[attr-defined]
    assert all(d.serial != serial for d in adb_server.device_list())  # stopped and gone


def test_transport_cut_mid_trial_is_retried_and_recorded_once(
    scenario: Path, tmp_path: Path, launched: list[object]
) -> None:
    def cut_during_first_generation() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if launched:
                phone = launched[0]
                names = [p.name for p in phone._processes.values()]  # type: ignore[attr-defined]
                if "llama-cli" in names:
                    phone.cut_transport()  # type: ignore[attr-defined]
                    return
            time.sleep(0.02)

    cutter = threading.Thread(target=cut_during_first_generation, daemon=True)
    cutter.start()
    out = tmp_path / "run"
    assert run_cli(["run", str(scenario), "--out", str(out)]) == 0
    cutter.join(timeout=5)
    records = list(read_jsonl(out / TRIALS))
    assert len(records) == 2 and len({r["trial_id"] for r in records}) == 2
    assert all(r["status"] == "ok" for r in records)
    # One fault retry for the cut, none for the trial after it. On a loaded machine a trial
    # may also be run again for noise ([noise] on_noisy = "retry"): such reruns are counted
    # in noisy_attempts, not in lost_attempts, and are no fault's.
    [lost] = records[0]["lost_attempts"]
    assert "lost the connection" in lost or "closed" in lost
    assert records[1]["lost_attempts"] == []
    for r in records:
        assert r["attempts"] == 1 + len(r["lost_attempts"]) + len(r["noisy_attempts"])


def test_virtual_start_and_stop_commands(adb_server: adbutils.AdbClient, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "devicelab", "virtual"]
    started = subprocess.run([*cmd, "start"], capture_output=True, text=True, env=env, timeout=60)
    assert started.returncode == 0, started.stderr
    serial = started.stdout.strip()
    try:
        listed = subprocess.run(
            [adbutils.adb_path(), "-P", str(adb_server.port), "devices", "-l"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert serial in listed.stdout and "model:SM_S921B" in listed.stdout
    finally:
        stopped = subprocess.run(
            [*cmd, "stop"], capture_output=True, text=True, env=env, timeout=60
        )
    assert stopped.returncode == 0 and f"stopped {serial}" in stopped.stdout
    assert all(d.serial != serial for d in adb_server.device_list())
    again = subprocess.run([*cmd, "stop", serial], capture_output=True, text=True, env=env)
    assert again.returncode == 2 and "no running virtual S24" in again.stderr


# Outputs long enough for the CPU counters (half a second at least); noisy trials are flagged.
LONGER: dict[str, Any] = {
    **VIRTUAL,
    "max_output_tokens": 32,
    "tables": {"noise": {"on_noisy": "flag"}},
}


@pytest.fixture
def longer(phone_scenario: Callable[..., Path], adb_server: adbutils.AdbClient) -> Path:
    return phone_scenario(**LONGER)


def measured_background(out: Path, record: dict[str, Any]) -> tuple[float, float, float]:
    """In % of the phone's CPU, from the run's own telemetry: the phone's background (its
    busy time over every interval of the run in which no engine work was counted and none
    can have been done: no engine process running, or outside prefill and decode), the work of the trial's engine the
    telemetry could not see (its rate while it ran, over the gap from its last reading to
    the next sample: an exited process cannot be read) and the engine's whole share."""
    every = [s for s in read_jsonl(out / TELEMETRY) if s.get("cpu_total_s") is not None]
    idle_busy = idle_total = 0.0
    for a, b in itertools.pairwise(every):
        ea, eb = a.get("engine_cpu_s"), b.get("engine_cpu_s")
        still = ea == eb and a.get("engine_id") == b.get("engine_id")
        # Outside prefill and decode: an engine whose work were not counted to it (the
        # regression these tests catch) must not pass for background.
        quiet = {a.get("phase"), b.get("phase")} <= {"idle", "cooldown"} or ea is eb is None
        if (
            a["trial_id"] == b["trial_id"]
            and b["cpu_total_s"] > a["cpu_total_s"]
            and still
            and quiet
        ):
            idle_busy += b["cpu_busy_s"] - a["cpu_busy_s"]
            idle_total += b["cpu_total_s"] - a["cpu_total_s"]
    mine = [
        s
        for s in every
        if s["trial_id"] == record["trial_id"]
        and s.get("phase") != "cooldown"
        and s.get("attempt", 1) == record["attempts"]
    ]
    window = mine[-1]["cpu_total_s"] - mine[0]["cpu_total_s"]
    engine_rate = tail_s = engine = 0.0
    for a, b in itertools.pairwise(mine):
        ea, eb = a.get("engine_cpu_s"), b.get("engine_cpu_s")
        if ea is not None and eb is not None and a.get("engine_id") == b.get("engine_id"):
            if b["t"] > a["t"]:
                engine_rate = max(engine_rate, (eb - ea) / (b["t"] - a["t"]))
            engine += eb - ea
        elif ea is not None and eb is None:
            tail_s = max(tail_s, b["t"] - a["t"])
        elif eb is not None:
            engine += eb  # a new process: all it used since it started
    assert window > 0 and idle_total > 0
    background = 100 * idle_busy / idle_total
    return (
        round(background, 1),
        round(100 * engine_rate * tail_s / window, 1),
        round(100 * engine / window, 1),
    )


def _only_background_is_other(out: Path, records: list[dict[str, Any]]) -> None:
    """Each trial's "other" CPU is no more than the phone's background and the engine's tail
    measured in the same run, and far less than the engine's own share."""
    for r in records:
        background, tail, share = measured_background(out, r)
        limit = background + tail + 1.5
        # A regression (the engine's work counted as other) reads about the engine's share,
        # so the check below can tell only while that share stands clear of the limit; a
        # short trial on a loaded host leaves a long tail after the engine's last reading.
        if background + tail > 30 or share <= 1.5 * limit:
            pytest.skip(
                f"the host is too busy to tell: background {background}%, tail {tail}%, "
                f"the engine's share {share}%"
            )
        assert r["other_cpu_pct"] is not None, r
        assert r["other_cpu_pct"] <= limit, (r, background, tail)
        assert r["noisy_attempts"] == [] and r["noisy"] is (r["other_cpu_pct"] > 10)


def test_phone_trials_record_the_cpu_others_used(
    longer: Path, tmp_path: Path, launched: list[object]
) -> None:
    out = tmp_path / "run"
    assert run_cli(["run", str(longer), "--out", str(out)]) == 0
    # The model's work is counted to llama-cli's own /proc/PID/stat, so it is not "other":
    # what is left is the phone's background, measured in the same trial, and the engine's
    # work after its last reading (the telemetry cannot read an exited process), which grows
    # with the host's load. Were the engine's work counted as other, it would be several
    # times that.
    _only_background_is_other(out, list(read_jsonl(out / TRIALS)))


def _run_busy(
    scenario: Path, out: Path, launched: list[object], load: Callable[[Any], None]
) -> list[dict[str, Any]]:
    """Run ``scenario`` while ``load(phone)`` keeps the phone's cores busy every 50 ms; both
    measured trials are flagged noisy, with more than half the CPU used by others."""
    stop = threading.Event()

    def burn() -> None:
        while not stop.wait(0.05):
            if launched:
                load(launched[0])

    burner = threading.Thread(target=burn, daemon=True)
    burner.start()
    try:
        code = run_cli(["run", str(scenario), "--out", str(out)])
    finally:
        stop.set()
        burner.join(timeout=5)
    assert code == 0
    records = list(read_jsonl(out / TRIALS))
    assert [r["noisy"] for r in records] == [True, True]
    assert all(r["other_cpu_pct"] > 50 for r in records)
    return records


def test_a_busy_phone_marks_its_trials_noisy(
    longer: Path, tmp_path: Path, launched: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    # Work no process of the phone owns (as a kernel thread's): busy cores, not the engine.
    _run_busy(longer, tmp_path / "run", launched, lambda phone: phone.add_work(0.05, 1.0))
    err = capsys.readouterr().err
    assert "is busy before the first trial" in err and "system_server" in err
    assert "2 of 2 measured trials were noisy" in err


@pytest.fixture
def app_scenario(
    phone_scenario: Callable[..., Path],
    adb_server: adbutils.AdbClient,
    capped_mlcchat: Callable[[int], None],
) -> Path:
    """The longer scenario run by the MLCChat app instead of llama-cli, its answers capped
    (the app has no setting for their length) at what the CLI's are."""
    capped_mlcchat(32)
    return phone_scenario(**LONGER, model_keys={"engine": "app"}, model_options={"app": "mlcchat"})


def test_app_trials_charge_the_apps_model_work_to_the_app(
    app_scenario: Path, tmp_path: Path, launched: list[object]
) -> None:
    out = tmp_path / "run"
    assert run_cli(["run", str(app_scenario), "--out", str(out)]) == 0
    records = list(read_jsonl(out / TRIALS))
    assert [r["engine"] for r in records] == ["app", "app"]
    # The app's inference is counted to its own process (its UID's): not "other".
    _only_background_is_other(out, records)


def test_an_unowned_busy_process_flags_app_trials(
    app_scenario: Path, tmp_path: Path, launched: list[object]
) -> None:
    hogd: list[int] = []

    def load(phone: Any) -> None:
        # A daemon of the phone's own (not the app's UID) keeping cores busy.
        if not hogd:
            hogd.append(phone.register_process("hogd"))
        phone.add_work(0.05, 1.0, hogd[0])

    _run_busy(app_scenario, tmp_path / "run", launched, load)
