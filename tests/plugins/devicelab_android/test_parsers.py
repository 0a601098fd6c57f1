"""Parsers and builders of the Android plugin, on the real output formats."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from devicelab_android.adb import quote
from devicelab_android.app import load_profile, parse_dumpsys_package
from devicelab_android.llamacli import parse_perf, parse_version
from devicelab_android.telemetry import (
    CONSUMERS_MARK,
    cpu_line,
    loop_script,
    milli_celsius,
    parse_block,
    parse_consumers,
    parse_slow,
    process_ticks,
)

from devicelab import ScenarioError
from devicelab._noise import other_cpu_pct

GREP = """\
/sys/class/thermal/thermal_zone0/type:BIG
/sys/class/thermal/thermal_zone0/temp:41500
/sys/class/thermal/thermal_zone1/type:battery
/sys/class/thermal/thermal_zone1/temp:30
/sys/class/thermal/thermal_zone2/type:broken
/sys/class/thermal/thermal_zone2/temp:-2147483648
/sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq:1950000
/sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq:1950000
/sys/devices/system/cpu/cpufreq/policy9/scaling_cur_freq:3207000
/sys/class/power_supply/battery/capacity:87
/sys/class/power_supply/battery/current_now:-412
/sys/class/power_supply/battery/voltage_now:4012000
/sys/class/power_supply/battery/temp:296
/sys/class/power_supply/battery/status:Discharging
/proc/meminfo:MemTotal:        7654321 kB
/proc/meminfo:MemAvailable:    3145728 kB
/proc/4242/status:Name:\tllama-cli
/proc/4242/status:VmHWM:\t  204800 kB
/proc/4242/status:VmRSS:\t  153600 kB
"""

DUMPSYS = """\
Thermal Status: 2
Temperature{mValue=38.5, mType=0, mName=AP, mStatus=0}
  AC powered: false
  USB powered: true
  Wireless powered: false
  status: 2
  current now: 412
"""


def test_grep_block_becomes_values_with_units_checked() -> None:
    v = parse_block(GREP.splitlines(), {})
    assert v["zone_BIG_c"] == 41.5
    assert v["zone_battery_c"] == 30.0  # a zone that reports whole degrees
    assert "zone_broken_c" not in v  # unreadable: dropped, not guessed
    assert v["temp_c"] == 41.5
    assert v["cpu_policy0_mhz"] == 1950.0 and v["cpu_policy9_mhz"] == 3207.0
    assert v["mem_available_mb"] == 3072.0
    assert v["mem_mb"] == v["rss_mb"] == 150.0 and v["mem_hwm_mb"] == 200.0
    assert v["battery_level"] == 87 and v["battery_temp_c"] == 29.6
    # -412 from a Samsung kernel is mA: 0.412 A x 4.012 V
    assert v["power_w"] == pytest.approx(1.653, abs=0.001)
    assert v["on_battery"] is True


def test_dumpsys_says_usb_powers_the_phone() -> None:
    state: dict[str, object] = {}
    parse_slow(DUMPSYS.splitlines(), state)
    assert state["thermal_status"] == 2
    v = parse_block(GREP.splitlines(), state)
    assert v["on_battery"] is False  # USB: energy is then marked unreliable
    assert v["thermal_status"] == 2


def test_an_apps_memory_is_its_pss() -> None:
    state: dict[str, object] = {}
    parse_slow(
        [
            "** MEMINFO in pid 4242 [ai.mlc.mlcchat] **",
            "TOTAL PSS:   90277  TOTAL RSS:  190372  TOTAL SWAP PSS: 0",
        ],
        state,
    )
    v = parse_block(GREP.splitlines(), state)
    assert v["pss_mb"] == 88.2 and v["mem_mb"] == 88.2 and v["rss_mb"] == 150.0
    parse_slow(["   TOTAL:    51200"], state)  # older releases
    assert parse_block([], state)["pss_mb"] == 50.0


def test_microamps_are_told_from_milliamps() -> None:
    lines = [
        "/sys/class/power_supply/battery/current_now:-1200000",
        "/sys/class/power_supply/battery/voltage_now:4000000",
    ]
    assert parse_block(lines, {})["power_w"] == pytest.approx(4.8)


@pytest.mark.parametrize(
    ("raw", "c"), [("45000", 45.0), ("45", 45.0), ("450", 45.0), ("x", None), ("999999", None)]
)
def test_zone_temperature_units(raw: str, c: float | None) -> None:
    assert milli_celsius(raw) == c


def test_loop_is_one_stream_with_plain_commands() -> None:
    script = loop_script([4242], 0.05, "ai.mlc.mlcchat")
    assert script.startswith("while true; do") and script.endswith("done")
    assert "/proc/4242/status" in script and "$(" not in script and "`" not in script
    assert "/proc/stat" in script and "/proc/4242/stat" in script
    assert script.count("dumpsys thermalservice") == 1
    assert script.count("dumpsys meminfo ai.mlc.mlcchat") == 1


def test_quote_keeps_hostile_text_literal() -> None:
    hostile = 'it\'s "$(rm -rf /)" `id`; echo pwned\nnext'
    line = quote(["echo", hostile])
    assert shlex.split(line) == ["echo", hostile]


PERF = """\
llama_perf_sampler_print:    sampling time =       1.10 ms /    95 runs   (    0.01 ms per token, 86363.64 tokens per second)
llama_perf_context_print:        load time =     512.34 ms
llama_perf_context_print: prompt eval time =     123.45 ms /    87 tokens (    1.42 ms per token,   704.74 tokens per second)
llama_perf_context_print:        eval time =     140.00 ms /     7 runs   (   20.00 ms per token,    50.00 tokens per second)
llama_perf_context_print:       total time =     800.00 ms /    94 tokens
"""


def test_llama_perf_lines() -> None:
    t = parse_perf(PERF)
    assert t["load_ms"] == 512.34 and t["total_ms"] == 800.0
    assert (t["prefill_ms"], t["prefill_tokens"]) == (123.45, 87)
    assert (t["decode_ms"], t["decode_tokens"]) == (140.0, 7)
    assert t["decode_tok_s"] == 50.0


def test_builtin_app_profiles_load() -> None:
    for name in ("mlcchat", "docassist"):
        profile = load_profile(name)
        assert profile.package and any(s.action == "watch" for s in profile.trial)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[app]\nname="x"\npackage="p"\n[[trial]]\naction="tap"', r"step 1: 'action' must be one of"),
        ('[app]\nname="x"\npackage="p"\n[[trial]]\naction="click"', r"step 1 \(click\): missing selector"),
        ('[app]\nname="x"\npackage="p"\n[[trial]]\naction="click"\nselector={txt="a"}', r"unknown selector key\(s\) txt"),
        ('[app]\nname="x"\npackage="p"\n[[trial]]\naction="sleep"\nseconds=1', r"needs a 'watch' step"),
        ('[app]\nname="x"\n', r"\[app\] package is missing"),
    ],
)  # fmt: skip
def test_bad_app_profiles_name_the_step(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "app.toml"
    path.write_text(body)
    with pytest.raises(ScenarioError, match=message):
        load_profile(str(path))


# `dumpsys package PKG` in the layout Android 14 prints (AOSP's Settings.dumpPackageLPr under
# "Packages:", an updated system app's factory copy under "Hidden system packages:"), the
# values made up: the version lines are `versionCode=N minSdk=N targetSdk=N` and
# `versionName=X`, four spaces in, inside the package's `Package [PKG] (hash):` block.
DUMPSYS_PACKAGE = """\
Activity Resolver Table:
  Non-Data Actions:
      android.intent.action.MAIN:
        5d0c2a1 ai.mlc.mlcchat/.MainActivity filter 8e3f0b2
          Action: "android.intent.action.MAIN"
          Category: "android.intent.category.LAUNCHER"

Key Set Manager:
  [ai.mlc.mlcchat]
      Signing KeySets: 61

Packages:
  Package [ai.mlc.mlcchat] (3b0bf8e):
    appId=10234
    pkg=Package{9c4a3d7 ai.mlc.mlcchat}
    codePath=/data/app/~~Xq0b2Ue1mVQ7yK7aGJ5zFg==/ai.mlc.mlcchat-8wJ1w3nq0G5bB2yPqD8xXw==
    resourcePath=/data/app/~~Xq0b2Ue1mVQ7yK7aGJ5zFg==/ai.mlc.mlcchat-8wJ1w3nq0G5bB2yPqD8xXw==
    legacyNativeLibraryDir=/data/app/~~Xq0b2Ue1mVQ7yK7aGJ5zFg==/ai.mlc.mlcchat-8wJ1w3nq0G5bB2yPqD8xXw==/lib
    extractNativeLibs=false
    primaryCpuAbi=arm64-v8a
    secondaryCpuAbi=null
    cpuAbiOverride=null
    versionCode=4 minSdk=26 targetSdk=33
    minExtensionVersions=[]
    versionName=0.1.3
    usesNonSdkApi=false
    splits=[base]
    apkSigningVersion=2
    flags=[ HAS_CODE ALLOW_CLEAR_USER_DATA ALLOW_BACKUP ]
    timeStamp=2024-11-02 18:41:07
    lastUpdateTime=2024-11-02 18:41:09
      firstInstallTime=2024-11-02 18:41:09
    installerPackageName=com.android.shell
    User 0: ceDataInode=221845 installed=true hidden=false suspended=false distractionFlags=0 stopped=false notLaunched=false enabled=0 instant=false virtual=false quarantined=false
      gids=[3003]
      runtime permissions:
  Package [com.google.android.webview] (a81c0f2):
    appId=10119
    versionCode=667821533 minSdk=29 targetSdk=34
    versionName=126.0.6478.134

Hidden system packages:
  Package [com.google.android.webview] (5e2d77a):
    appId=10119
    versionCode=602316933 minSdk=29 targetSdk=34
    versionName=120.0.6099.43

Queries:
  system apps queryable: false
"""


def test_dumpsys_package_gives_the_apps_version() -> None:
    assert parse_dumpsys_package(DUMPSYS_PACKAGE, "ai.mlc.mlcchat") == {
        "versionCode": "4",
        "minSdk": "26",
        "targetSdk": "33",
        "versionName": "0.1.3",
    }


def test_dumpsys_package_of_an_updated_system_app_is_the_installed_version() -> None:
    got = parse_dumpsys_package(DUMPSYS_PACKAGE, "com.google.android.webview")
    assert got["versionCode"] == "667821533" and got["versionName"] == "126.0.6478.134"


def test_dumpsys_package_of_a_missing_app_gives_nothing() -> None:
    assert parse_dumpsys_package("Unable to find package: ai.mlc.nope\n", "ai.mlc.nope") == {}
    # A package whose name is a prefix of another's is not mistaken for it.
    assert parse_dumpsys_package(DUMPSYS_PACKAGE, "ai.mlc") == {}


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        # llama_print_build_info's two lines, as newer builds print them (this is the host CLI
        # built from llama-cpp-python 0.3.36's vendored tree)...
        (
            "version: 0.5.0-dev (build 1, commit 0c1e570)\nbuilt with GNU 12.2.0 for Linux x86_64\n",
            {"llama_cpp_version": "0.5.0-dev", "llama_cpp_build": "1", "llama_cpp_commit": "0c1e570",
             "compiler": "GNU 12.2.0", "target": "Linux x86_64"},
        ),
        # ... and as older builds did (common/arg.cpp): build number and commit only.
        (
            "version: 4932 (5f4a5f17)\nbuilt with cc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0 for x86_64-linux-gnu\n",
            {"llama_cpp_build": "4932", "llama_cpp_commit": "5f4a5f17",
             "compiler": "cc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0", "target": "x86_64-linux-gnu"},
        ),
        ("error: invalid argument: --version\n", {}),
    ],
)  # fmt: skip
def test_llama_cpp_version_lines(text: str, facts: dict[str, str]) -> None:
    assert parse_version(text) == facts


# /proc/stat and the engine's /proc/PID/stat as the loop's grep prints them, one second apart
# on an 8-core phone (800 ticks of CPU time): the engine used 400 ticks, the rest of the
# phone 120 (busy 520, idle 270 + iowait 10).
STAT_A = """\
/proc/stat:cpu  1000000 20000 300000 8000000 5000 10000 6000 0 0 0
/proc/4242/stat:4242 (llama-cli) R 3377 4242 4242 0 -1 4194560 900 0 0 0 5000 1000 0 0 20 0 9 0 71234 917504000 40000 18446744073709551615
"""
STAT_B = """\
/proc/stat:cpu  1000400 20000 300100 8000270 5010 10015 6005 0 0 0
/proc/4242/stat:4242 (llama-cli) R 3377 4242 4242 0 -1 4194560 900 0 0 0 5330 1070 0 0 20 0 9 0 71234 917504000 40000 18446744073709551615
"""


def test_proc_stat_counters_give_the_share_others_used() -> None:
    a, b = parse_block(STAT_A.splitlines(), {}), parse_block(STAT_B.splitlines(), {})
    assert a["cpu_total_s"] == pytest.approx(93410.0)
    assert b["cpu_total_s"] - a["cpu_total_s"] == pytest.approx(8.0)  # type: ignore[operator]
    assert b["cpu_busy_s"] - a["cpu_busy_s"] == pytest.approx(5.2)  # type: ignore[operator]
    assert a["engine_cpu_s"] == 60.0 and b["engine_cpu_s"] == 64.0
    assert other_cpu_pct([{**a, "t": 0.0}, {**b, "t": 1.0}]) == 15.0


def test_a_phone_without_the_engine_process_has_no_engine_counter() -> None:
    v = parse_block(STAT_A.splitlines()[:1], {})
    assert v["cpu_total_s"] is not None and v["engine_cpu_s"] is None


def test_process_stat_names_with_spaces_and_parentheses() -> None:
    line = "77 (my (odd) app) S 1 77 77 0 -1 0 0 0 0 0 150 50 7 3 20 0 4 0 100 0 0 0"
    assert process_ticks(line) == 210
    assert process_ticks("77 (short) S 1") is None
    assert cpu_line("cpu0 1 2 3 4") is None and cpu_line("cpu  1 2 3 4 5 6 7 8") == (
        pytest.approx(0.36),
        pytest.approx(0.27),
    )


def test_cpu_consumers_from_two_reads_of_every_process() -> None:
    first = "\n".join(
        [
            "cpu  1000 0 0 9000 0 0 0 0 0 0",
            "1450 (system_server) S 812 0 0 0 0 0 0 0 0 0 500 100 0 0",
            "9001 (com.spotify.music) S 812 0 0 0 0 0 0 0 0 0 100 20 0 0",
            "9002 (kworker/u16:3) S 2 0 0 0 0 0 0 0 0 0 10 90 0 0",
            "9003 (kworker/u16:3) S 2 0 0 0 0 0 0 0 0 0 0 0 0 0",
            "4242 (llama-cli) R 3377 0 0 0 0 0 0 0 0 0 800 10 0 0",
        ]
    )
    second = "\n".join(
        [
            "cpu  1500 0 0 9500 0 0 0 0 0 0",  # 1000 ticks of the phone's CPU
            "1450 (system_server) S 812 0 0 0 0 0 0 0 0 0 520 110 0 0",
            "9001 (com.spotify.music) S 812 0 0 0 0 0 0 0 0 0 300 70 0 0",
            "9002 (kworker/u16:3) S 2 0 0 0 0 0 0 0 0 0 40 90 0 0",
            "9003 (kworker/u16:3) S 2 0 0 0 0 0 0 0 0 0 20 0 0 0",
            "4242 (llama-cli) R 3377 0 0 0 0 0 0 0 0 0 1200 10 0 0",
            "9100 (sleep) S 1 0 0 0 0 0 0 0 0 0 0 0 0 0",
        ]
    )
    text = f"{first}\n{CONSUMERS_MARK}\n{second}\n"
    # The engine (4242) is left out; processes of one name are summed.
    assert parse_consumers(text, exclude=[4242]) == [
        ("com.spotify.music", 25.0),
        ("kworker/u16:3", 5.0),
        ("system_server", 3.0),
    ]
    assert parse_consumers("garbage") == []
