"""The Android plugin end to end against the virtual S24, over the real adb binary."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from devicelab_android.adb import Adb
from devicelab_android.app import AppEngine
from devicelab_android.device import AndroidDevice, AndroidType
from devicelab_android.llamacli import LlamaCliEngine
from virtual_android.inference import llamacli as virtual_cli

import devicelab
from devicelab import (
    DeviceLostError,
    GenerationRequest,
    Message,
    MissingDependencyError,
    ModelError,
    ModelSpec,
    TokenStream,
    TrialError,
    TrialTimeout,
)
from devicelab._metrics import speed

HOSTILE = 'it\'s "$(touch /data/local/tmp/pwned)" `id`; echo pwned\nnext line'


def test_discovered_with_its_fingerprint(phone: AndroidDevice) -> None:
    [found] = [
        d for d in AndroidType(devicelab.load_plugins()).discover() if d.name == phone.serial
    ]
    assert "SM-S921B" in found.description
    info = phone.info()
    assert info["model"] == "SM-S921B" and info["platform"] == "s5e9945"
    assert info["android"] == "14" and 7000 < info["ram_mb"] < 8200


def test_s24_profile_matches_the_attached_phone(phone: AndroidDevice) -> None:
    profile = {"name": "s24", "match": {"models": ["SM-S921B", "SM-S921U"]}, "options": {}}
    assert AndroidType(devicelab.load_plugins()).resolve_serial("s24", profile) == phone.serial


def test_shell_quoting_keeps_hostile_text_literal(phone: AndroidDevice) -> None:
    adb = phone.require_adb()
    assert adb.run(["echo", HOSTILE]).stdout == HOSTILE + "\n"
    assert adb.run(["ls", "/data/local/tmp/pwned"]).code != 0  # nothing ran


def test_telemetry_streams_values_in_range(phone: AndroidDevice) -> None:
    collector = phone.telemetry
    assert collector is not None
    collector.start()
    try:
        deadline = time.monotonic() + 10
        while collector.ticks < 12:
            assert time.monotonic() < deadline, collector.error
            time.sleep(0.05)
        sample = collector.sample()
        assert 15 < sample["temp_c"] < 60  # type: ignore[operator]
        assert {"zone_BIG_c", "zone_SKIN_c"} <= set(sample)
        assert 0 < sample["mem_available_mb"] < 8192  # type: ignore[operator]
        assert sample["cpu_policy9_max_mhz"] == 3207.0  # the X4 core
        assert 0 < sample["cpu_policy9_mhz"] <= 3207.0  # type: ignore[operator]
        assert sample["thermal_status"] in range(7)
        assert 0 <= sample["battery_level"] <= 100  # type: ignore[operator]
    finally:
        collector.stop()


def test_llama_cli_pushes_once_and_streams_real_tokens(
    phone: AndroidDevice, smollm2: ModelSpec, cli_engine: LlamaCliEngine, virtual_llama_cli: Path
) -> None:
    engine = cli_engine
    adb = phone.require_adb()
    model_remote = engine._remote(smollm2.path.name)  # type: ignore[union-attr]
    assert not adb.push_if_changed(smollm2.path, model_remote)  # type: ignore[arg-type]
    messages = [Message("user", HOSTILE)]
    stream = TokenStream(deadline=time.perf_counter() + 60)
    result = engine.generate(GenerationRequest(messages, max_tokens=6), stream)
    assert 1 <= result.output_tokens <= 7 and result.text
    assert result.engine_timings["prefill_tokens"] == result.input_tokens
    # A new llama-cli per trial: its perf line proves the whole prompt was evaluated.
    assert result.prefilled_tokens == result.input_tokens
    assert result.engine_prefill_tps == result.engine_timings["prefill_tok_s"] > 0
    s = speed(stream.t_sent or 0, stream.token_times, result.input_tokens, result.output_tokens)
    assert s.ttft_s is not None and s.ttft_s > 0
    assert adb.run(["ls", "/data/local/tmp/pwned"]).code != 0
    # The phone's llama-cli says which llama.cpp it is (--version), and the binary that
    # was pushed is named by its sha256.
    assert engine.build_info() == {
        "llama_cpp_version": virtual_cli.VERSION,
        "llama_cpp_build": str(virtual_cli.BUILD_NUMBER),
        "llama_cpp_commit": virtual_cli.COMMIT,
        "compiler": virtual_cli.COMPILER,
        "target": virtual_cli.TARGET,
        "binary_sha256": hashlib.sha256(virtual_llama_cli.read_bytes()).hexdigest(),
    }


def test_llama_cli_without_a_binary_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVICELAB_LLAMA_CLI", raising=False)
    with pytest.raises(ModelError, match=r"/nope/llama-cli does not exist.*build-llama"):
        LlamaCliEngine.Options(binary="/nope/llama-cli")
    # No binary: devicelab builds one, which needs the cross compiler; without it, what to
    # install (a MissingDependencyError: bad input, exit 2).
    import shutil

    from devicelab_android import crossbuild

    real_which = shutil.which
    monkeypatch.setattr(
        crossbuild.shutil, "which", lambda name: None if "aarch64" in name else real_which(name)
    )
    with pytest.raises(MissingDependencyError, match=r"g\+\+-aarch64-linux-gnu.*binary ="):
        LlamaCliEngine.Options()


@pytest.mark.parametrize("app", ["docassist", "mlcchat"])
def test_app_engine_measures_through_the_ui(
    app: str, app_engine: Callable[[str], AppEngine]
) -> None:
    engine = app_engine(app)
    fields = {"document": "The ferry leaves at nine.", "request": "When does it leave?"}
    messages = [Message("user", "When does the ferry leave? It leaves at nine.")]
    stream = TokenStream(deadline=time.perf_counter() + 90)
    result = engine.generate(GenerationRequest(messages, 8, fields=fields), stream)
    assert result.text and result.output_tokens == stream.count >= 1
    assert {"prefill_tok_s", "decode_tok_s"} <= set(result.engine_timings)
    assert result.engine_prefill_tps == result.engine_timings["prefill_tok_s"]
    assert result.engine_decode_tps == result.engine_timings["decode_tok_s"]
    assert result.prefilled_tokens is None  # the app shows rates only
    assert stream.t_sent is not None and stream.token_times[0] > stream.t_sent


@pytest.mark.parametrize("app", ["docassist", "mlcchat"])
def test_app_engine_build_is_the_installed_apps_version(
    app: str, app_engine: Callable[..., AppEngine]
) -> None:
    engine = app_engine(app, load=False)
    build = engine.build_info()  # `dumpsys package PKG` over adb, read as a phone prints it
    assert build["app"] == app and build["package"] == engine.profile.package
    assert build["versionCode"].isdigit()
    assert re.fullmatch(r"\d+(\.\d+)*\S*", build["versionName"])


def test_app_killed_mid_trial_is_reported(
    phone: AndroidDevice,
    app_engine: Callable[[str], AppEngine],
    on_first_token: Callable[[Callable[[], object]], TokenStream],
) -> None:
    engine = app_engine("docassist")
    stopped: list[int] = []

    def kill() -> None:
        # As the low-memory killer would, once the app's answer has begun.
        stopped.append(phone.require_adb().run(["am", "force-stop", engine.profile.package]).code)

    fields = {"document": "word " * 150, "request": "Summarize the given document."}
    with pytest.raises(TrialError, match="app killed"):
        engine.generate(
            GenerationRequest([Message("user", "x")], 64, fields=fields), on_first_token(kill)
        )
    assert stopped == [0]


def test_cut_transport_is_a_lost_device_and_reconnect_brings_it_back(
    phone: AndroidDevice,
) -> None:
    vdev = phone.virtual  # type: ignore[attr-defined]
    adb: Adb = phone.require_adb()
    threading.Timer(0.3, vdev.cut_transport).start()
    with pytest.raises(DeviceLostError):
        adb.run("sleep 5", timeout=10)
    phone.reconnect(15)
    assert adb.run(["echo", "back"]).stdout == "back\n"


def test_hung_device_hits_the_timeout(phone: AndroidDevice) -> None:
    vdev = phone.virtual  # type: ignore[attr-defined]
    vdev.set_hung(True)
    try:
        t0 = time.monotonic()
        with pytest.raises(TrialTimeout):
            phone.require_adb().run(["echo", "hi"], timeout=1.0)
        assert time.monotonic() - t0 < 5  # the trial's limit, not a socket's default
    finally:
        vdev.set_hung(False)
