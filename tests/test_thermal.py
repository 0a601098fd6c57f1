"""Thermal control: cooldown before trials, interleaved order, throttling state per trial."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from wordsplugin import HotCollector, WordEngine

from devicelab._errors import ScenarioError
from devicelab._executor import Reporter
from devicelab._plugins import Registry
from devicelab._rundir import TELEMETRY, TRIALS, read_jsonl
from devicelab._runtime.pipeline import run_pipeline
from devicelab._runtime.resolve import resolve
from devicelab._runtime.thermal import ThermalWatch as Thermal
from devicelab._scenario import load_scenario

FLAKY = '\n[device]\nname = "flaky"\n'


@pytest.fixture(autouse=True)
def reset_hot() -> Iterator[None]:
    saved = (HotCollector.start_c, HotCollector.step_c, HotCollector.thermal_status)
    cap = HotCollector.cap_from_generation
    yield
    HotCollector.start_c, HotCollector.step_c, HotCollector.thermal_status = saved
    HotCollector.cap_from_generation = cap


class Notes(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def status(self, text: str) -> None:
        self.lines.append(text)


def _scenario(make: Callable[..., Path], extra: str, **kw: Any) -> Path:
    path: Path = make(**{"reps": 1, "warmup": 0, "kinds": '["SUMM"]', **kw})
    path.write_text(path.read_text() + extra)
    return path


def _run(
    path: Path, registry: Registry, out: Path, resume: bool = False, rep: Reporter | None = None
) -> list[dict[str, Any]]:
    run_pipeline(path, registry, out=out, resume=resume, reporter=rep)
    return list(read_jsonl(out / TRIALS))


def _thermal(below: float = 45, timeout: float = 5, poll: float = 0.01) -> str:
    return (
        f"\n[thermal]\ncooldown_below_c = {below}\ncooldown_timeout_s = {timeout}\n"
        f"cooldown_poll_s = {poll}\n"
    )


def test_cooldown_waits_until_below_threshold(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    HotCollector.start_c, HotCollector.step_c = 50.0, 1.0
    path = _scenario(words_scenario, FLAKY + _thermal(below=45))
    records = _run(path, words_registry, tmp_path / "run")
    first = records[0]
    assert first["cooldown_s"] > 0
    assert first["cooldown_timed_out"] is False
    assert all(r["cooldown_timed_out"] is False for r in records)
    assert all(r["max_temp_c"] < 45 for r in records)  # every trial ran cool
    samples = list(read_jsonl(tmp_path / "run" / TELEMETRY))
    cooling = [s for s in samples if s["phase"] == "cooldown"]
    assert cooling and {s["trial_id"] for s in cooling} == {first["trial_id"]}
    assert max(s["temp_c"] for s in cooling) >= 45


def test_cooldown_stops_at_the_timeout(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    HotCollector.start_c, HotCollector.step_c = 80.0, 0.0  # never cools
    path = _scenario(words_scenario, FLAKY + _thermal(below=45, timeout=0.05))
    records = _run(path, words_registry, tmp_path / "run")
    assert len(records) == 4
    for r in records:
        assert r["cooldown_timed_out"] is True
        assert r["cooldown_s"] >= 0.05
        assert r["status"] == "ok"  # the trial still runs after the timeout


def test_no_cooldown_without_the_key(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    HotCollector.start_c, HotCollector.step_c = 80.0, 0.0
    records = _run(_scenario(words_scenario, FLAKY), words_registry, tmp_path / "run")
    assert [(r["cooldown_s"], r["cooldown_timed_out"]) for r in records] == [(0.0, False)] * 4
    samples = list(read_jsonl(tmp_path / "run" / TELEMETRY))
    assert not [s for s in samples if s["phase"] == "cooldown"]


def test_device_without_temperature_does_not_wait(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    notes = Notes()
    path = _scenario(words_scenario, FLAKY + _thermal(below=-200, timeout=30))
    records = _run(path, words_registry, tmp_path / "run", rep=notes)
    assert [(r["cooldown_s"], r["cooldown_timed_out"]) for r in records] == [(0.0, False)] * 4
    assert all(r["max_temp_c"] is None for r in records)
    assert sum("no temperature" in line for line in notes.lines) == 1


def _order(path: Path, registry: Registry) -> list[tuple[str, str, int, int, bool]]:
    trials = resolve(load_scenario(path), registry).trials()
    return [(t.task, t.doc_id, t.context_tokens, t.repetition, t.warmup) for t in trials]


def test_interleaved_order_runs_repetitions_round_robin(
    words_scenario: Callable[..., Path], words_registry: Registry
) -> None:
    path = words_scenario(reps=2, warmup=2, kinds='["SUMM"]')
    sequential = _order(path, words_registry)
    path.write_text(path.read_text().replace('name = "t"', 'name = "t"\norder = "interleaved"', 1))
    interleaved = _order(path, words_registry)
    cells = [("SUMM", d, n) for d in ("doc0", "doc1") for n in (10, 20)]
    warm = [("SUMM", "doc0", 10, 0, True), ("SUMM", "doc0", 10, 1, True)]
    assert interleaved == warm + [(*c, rep, False) for rep in (0, 1) for c in cells]
    assert sequential == warm + [(*c, rep, False) for c in cells for rep in (0, 1)]


def test_resume_with_interleaved_order(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    path = words_scenario(model="interrupt", reps=2, warmup=0, kinds='["SUMM"]')
    path.write_text(path.read_text().replace('name = "t"', 'name = "t"\norder = "interleaved"', 1))
    WordEngine.interrupted = False
    with pytest.raises(KeyboardInterrupt):
        _run(path, words_registry, tmp_path / "run")
    assert len(list(read_jsonl(tmp_path / "run" / TRIALS))) == 2
    records = _run(path, words_registry, tmp_path / "run", resume=True)
    expected = [t.trial_id for t in resolve(load_scenario(path), words_registry).trials()]
    assert [r["trial_id"] for r in records] == expected
    assert [r["repetition"] for r in records] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_order_does_not_change_the_fingerprint(
    words_scenario: Callable[..., Path], words_registry: Registry
) -> None:
    path = words_scenario()
    before = load_scenario(path).fingerprint()
    path.write_text(path.read_text().replace('name = "t"', 'name = "t"\norder = "interleaved"', 1))
    assert load_scenario(path).fingerprint() == before


@pytest.mark.parametrize(("status", "expected"), [(2, True), (3, True), (1, False), (0, False)])
def test_throttled_from_thermal_status(
    words_scenario: Callable[..., Path],
    words_registry: Registry,
    tmp_path: Path,
    status: int,
    expected: bool,
) -> None:
    HotCollector.thermal_status = status
    records = _run(_scenario(words_scenario, FLAKY), words_registry, tmp_path / "run")
    assert [r["throttled"] for r in records] == [expected] * 4
    assert [r["thermal_status_max"] for r in records] == [status] * 4


def test_throttled_from_a_lowered_cpu_cap(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    WordEngine.generations = 0
    HotCollector.cap_from_generation = 3  # the cap drops during the third trial
    records = _run(_scenario(words_scenario, FLAKY), words_registry, tmp_path / "run")
    assert [r["throttled"] for r in records] == [False, False, True, True]
    assert all(r["thermal_status_max"] is None for r in records)


def test_throttled_is_none_without_thermal_data(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    records = _run(_scenario(words_scenario, FLAKY), words_registry, tmp_path / "run")
    assert [(r["throttled"], r["thermal_status_max"]) for r in records] == [(None, None)] * 4


def test_thermal_cap_compares_with_the_run_so_far() -> None:
    thermal = Thermal()
    assert thermal.throttling([{"cpu_policy0_max_mhz": 2000}])["throttled"] is False
    assert thermal.throttling([{"cpu_policy4_max_mhz": 1000}])["throttled"] is False
    assert thermal.throttling([{"cpu_policy0_max_mhz": 1800}])["throttled"] is True
    assert thermal.throttling([{"cpu_policy0_max_mhz": 2000}])["throttled"] is False
    assert thermal.throttling([{"cpu_freq_mhz": 900}]) == {
        "throttled": None,
        "thermal_status_max": None,
    }


@pytest.mark.parametrize(
    ("body", "key", "why"),
    [
        ("[thermal]\ncooldown_below_c = \"hot\"\n", "[thermal] cooldown_below_c", "number"),
        ("[thermal]\ncooldown_below_c = 40\ncooldown_timeout_s = -1\n", "cooldown_timeout_s", "at least"),
        ("[thermal]\ncooldown_poll_s = 0\n", "[thermal] cooldown_poll_s", "at least"),
        ("[thermal]\ncooldown_below = 40\n", "[thermal] cooldown_below", "not a known key"),
        ("[thermal]\ncooldown_below_c = true\n", "[thermal] cooldown_below_c", "true or false"),
    ],
)  # fmt: skip
def test_thermal_table_is_validated(
    words_scenario: Callable[..., Path], body: str, key: str, why: str
) -> None:
    path = words_scenario()
    path.write_text(path.read_text() + "\n" + body)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(path) in str(err.value) and key in str(err.value) and why in str(err.value)


def test_order_is_validated(words_scenario: Callable[..., Path]) -> None:
    path = words_scenario()
    path.write_text(path.read_text().replace('name = "t"', 'name = "t"\norder = "random"', 1))
    with pytest.raises(ScenarioError, match=r"\[scenario\] order: must be"):
        load_scenario(path)
    path.write_text(path.read_text().replace('"random"', "1"))
    with pytest.raises(ScenarioError, match=r"\[scenario\] order: must be a string"):
        load_scenario(path)


def test_defaults_and_resolved_scenario(words_scenario: Callable[..., Path]) -> None:
    sc = load_scenario(words_scenario())
    assert (sc.order, sc.cooldown_below_c, sc.cooldown_timeout_s, sc.cooldown_poll_s) == (
        "sequential",
        None,
        120.0,
        1.0,
    )
    path = words_scenario()
    path.write_text(path.read_text() + _thermal(below=40))
    resolved = load_scenario(path).resolved()
    assert resolved["thermal"] == {
        "cooldown_below_c": 40.0,
        "cooldown_timeout_s": 5.0,
        "cooldown_poll_s": 0.01,
    }
