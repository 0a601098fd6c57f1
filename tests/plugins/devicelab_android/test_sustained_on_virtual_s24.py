"""A sustained run on a virtual S24 whose heat model runs 100 times faster than real time: in
a second of generation the phone heats past its throttling limits as a real one does in
minutes, and the run times the throttle and ranks the cells from what it measured."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import adbutils
import pytest
from wordsplugin import run_cli

from devicelab import ScenarioError
from devicelab import _plugins as plugin_manager
from devicelab._rundir import SUMMARY, TRIALS, read_jsonl
from devicelab._sustained import kendall_tau

# SUMM at two lengths on a virtual S24 heating 100 times faster than real time, each cell a
# 15 s segment in 3 s bins, cooled below 60 °C before the next.
HOT: dict[str, Any] = {
    "name": "hot",
    "kinds": ["SUMM"],
    "max_output_tokens": 48,
    "sections": 2,
    "lengths": [50, 100],
    "repetitions": None,
    "scenario_keys": {"timeout_s": 15, "reconnect_timeout_s": 20},
    "tables": {
        "device": {"options": {"heat_time_scale": 100}},
        "telemetry": {"interval_s": 0.2},
        "thermal": {"cooldown_below_c": 60, "cooldown_timeout_s": 20, "cooldown_poll_s": 0.1},
        "noise": {"on_noisy": "flag"},
        "sustained": {"duration_s": 15, "bin_s": 3},
    },
}


def test_a_heating_virtual_s24_throttles_within_each_segment_and_the_ranking_is_measured(
    tmp_path: Path, adb_server: adbutils.AdbClient, phone_scenario: Callable[..., Path]
) -> None:
    path = phone_scenario(**HOT)
    out = tmp_path / "run"
    assert run_cli(["run", str(path), "--out", str(out)]) == 0
    rows = json.loads((out / SUMMARY).read_text())
    assert [r["context_tokens"] for r in rows] == [50, 100]
    records = list(read_jsonl(out / TRIALS))
    for row in rows:
        s = row["sustained"]
        assert s["span_s"] >= 15 and s["trials"] == row["n"] >= 2
        # Each segment began cool (the cooldown waited below 60 °C) and heated past
        # Android's MODERATE status or a lowered frequency cap inside it.
        assert s["throttle_known"] is True
        assert s["first_throttled_s"] is not None and 0 < s["first_throttled_s"] < s["span_s"]
        assert s["bins"][0]["throttled"] is not None
        assert any(b["throttled"] for b in s["bins"])
        cell = [r for r in records if r["context_tokens"] == row["context_tokens"]]
        assert any(r["throttled"] for r in cell)
        assert row["throttled"] == sum(1 for r in cell if r["throttled"])
    # No cooldown inside a segment: only each cell's first trial may have waited.
    inside = [r for r in records if r["repetition"] > 0]
    assert inside and all(r["cooldown_s"] == 0.0 for r in inside)
    # The rank stability is the two cells' own first-bin and steady-state rates, ranked.
    for rate in ("otps", "itps"):
        first = [r["sustained"][rate]["burst"] for r in rows]
        steady = [r["sustained"][rate]["steady"] for r in rows]
        tau = rows[0]["sustained"]["rank_tau"][rate]
        assert tau == {"kendall_tau": kendall_tau(first, steady), "cells": 2}
        if first[0] != first[1] and steady[0] != steady[1]:
            same = (first[0] > first[1]) == (steady[0] > steady[1])
            assert tau["kendall_tau"] == (1.0 if same else -1.0)


@pytest.mark.parametrize("value", [0, -2.5, "fast", True])
def test_a_bad_heat_time_scale_is_refused_naming_what_it_is(value: object) -> None:
    virtual = plugin_manager.get_registry().devices["virtual"][1]
    with pytest.raises(ScenarioError, match="heat_time_scale must be a number above 0") as info:
        virtual.check("virtual-s24", {"options": {"heat_time_scale": value}})
    assert "times faster than real time" in str(info.value)
