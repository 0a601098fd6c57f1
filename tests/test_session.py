from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from wordsplugin import FlakyDevice, WordEngine

from devicelab._errors import ModelError
from devicelab._plugins import Registry
from devicelab._rundir import TELEMETRY, TRIALS, read_jsonl
from devicelab._runtime.pipeline import run_pipeline
from devicelab._runtime.resolve import resolve
from devicelab._scenario import load_scenario

CONTRACT_FIELDS = {
    "run_id", "trial_id", "status", "error", "device", "device_info", "engine", "model",
    "quant", "task", "doc_id", "context_tokens", "sections", "repetition", "warmup",
    "input_tokens", "output_tokens", "load_s", "ttft_s", "itps", "otps", "runtime_s",
    "peak_mem_mb", "max_temp_c", "output_text", "started_at", "finished_at", "engine_timings",
    "quality",
}  # fmt: skip


def _run(
    scenario: Path, registry: Registry, out: Path, resume: bool = False
) -> list[dict[str, object]]:
    run_pipeline(scenario, registry, out=out, resume=resume)
    return list(read_jsonl(out / TRIALS))


def test_matrix_expands_task_doc_item_length_and_repetitions(
    words_scenario: Callable[..., Path], words_registry: Registry
) -> None:
    plan = resolve(load_scenario(words_scenario(reps=2, warmup=1)), words_registry)
    trials = list(plan.trials())
    # SUMM: 2 docs x 1 item; QA: 2 docs x 1 question (qa_questions = 1); x 2 lengths x 2 reps,
    # plus one warm-up after the model loads.
    assert len(trials) == (2 + 2) * 2 * 2 + 1
    assert len({t.trial_id for t in trials}) == len(trials)
    assert [t.warmup for t in trials[:2]] == [True, False]
    assert sum(t.warmup for t in trials) == 1
    assert [(t.task, t.doc_id, t.context_tokens, t.warmup, t.repetition) for t in trials[:4]] == [
        ("SUMM", "doc0", 10, True, 0),
        ("SUMM", "doc0", 10, False, 0),
        ("SUMM", "doc0", 10, False, 1),
        ("SUMM", "doc0", 20, False, 0),
    ]
    assert {t.sections for t in trials} == {1, 2}
    assert trials[-1].task == "QA" and trials[-1].trial_id.endswith("/doc1/qa0/L20/r1")


def test_warmups_come_after_each_model_load(
    words_scenario: Callable[..., Path], words_registry: Registry
) -> None:
    path = words_scenario(warmup=2)
    path.write_text(
        path.read_text().replace(
            '[[models]]\nname = "words-a"',
            '[[models]]\nname = "words-a"\n\n[[models]]\nname = "words-b"',
        )
    )
    trials = list(resolve(load_scenario(path), words_registry).trials())
    per_model = len(trials) // 2
    assert [t.warmup for t in trials[per_model : per_model + 3]] == [True, True, False]
    assert trials[per_model].model.spec.name == "words-b"


def test_run_records_every_trial_with_contract_fields(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    WordEngine.loads = 0
    records = _run(words_scenario(), words_registry, tmp_path / "run")
    assert len(records) == 17
    assert WordEngine.loads == 1  # loaded once per device, not once per trial
    for rec in records:
        assert set(rec) >= CONTRACT_FIELDS
        assert rec["status"] == "ok", rec["error"]
        assert rec["ttft_s"] > 0 and rec["runtime_s"] >= rec["ttft_s"]
        assert rec["output_tokens"] == 8
        assert rec["device_info"]["kind"] == "host"
    assert records[0]["load_s"] >= 0
    assert (tmp_path / "run" / "scenario.toml").is_file()


def test_context_holds_exactly_the_first_sections(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    records = _run(words_scenario(), words_registry, tmp_path / "run")
    by_len = {r["context_tokens"]: r for r in records if r["task"] == "SUMM"}
    # WordEngine counts one token per word; the prompt adds a fixed number of words.
    assert by_len[20]["input_tokens"] - by_len[10]["input_tokens"] == 10


def test_telemetry_samples_are_tagged_with_trial_and_phase(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    _run(words_scenario(model="slow", reps=1, warmup=0), words_registry, tmp_path / "run")
    samples = list(read_jsonl(tmp_path / "run" / TELEMETRY))
    trials = {r["trial_id"] for r in read_jsonl(tmp_path / "run" / TRIALS)}
    assert samples
    assert {s["phase"] for s in samples} >= {"load", "decode"}
    trial_samples = [s for s in samples if s["trial_id"] in trials]
    assert {s["trial_id"] for s in trial_samples} == trials
    for s in trial_samples:
        assert s["t"] >= 0
        assert s["mem_mb"] > 0
    assert any(s.get("tok_s") for s in trial_samples if s["phase"] == "decode")


def test_failed_trial_is_recorded_and_the_run_goes_on(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    records = _run(words_scenario(model="fail-trial"), words_registry, tmp_path / "run")
    assert len(records) == 17
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 8
    assert all("engine crashed" in r["error"] for r in failed)
    assert all(r["ttft_s"] is None for r in failed)


def test_model_that_fails_to_load_fails_its_trials_not_the_run(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    records = _run(words_scenario(model="fail-load"), words_registry, tmp_path / "run")
    assert len(records) == 17
    assert all(r["status"] == "failed" for r in records)
    assert "weights are corrupt" in records[0]["error"]


def test_timeout_fails_the_trial(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    records = _run(
        words_scenario(model="slow", reps=1, warmup=0, timeout=0.1), words_registry, tmp_path / "r"
    )
    assert records and all(r["status"] == "failed" for r in records)
    assert all("timeout" in r["error"] for r in records)


def test_resume_runs_only_missing_trials(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    WordEngine.interrupted = False
    scenario = words_scenario(model="interrupt", reps=1, warmup=0)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(scenario, words_registry, out)
    kept = list(read_jsonl(out / TRIALS))
    assert len(kept) == 2  # the two trials finished before Ctrl-C
    records = _run(scenario, words_registry, out, resume=True)
    ids = [r["trial_id"] for r in records]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert records[:2] == kept


def test_prompt_beyond_context_window_is_bad_input(
    tmp_path: Path, words_registry: Registry, words_scenario: Callable[..., Path]
) -> None:
    path = words_scenario()
    text = path.read_text().replace('name = "words-a"', 'name = "words-a"\noptions = {n_ctx = 30}')
    path.write_text(text)
    with pytest.raises(ModelError, match="n_ctx"):
        _run(path, words_registry, tmp_path / "run")
    assert not list(read_jsonl(tmp_path / "run" / TRIALS))


def test_resolved_scenario_is_written(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    _run(words_scenario(), words_registry, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["scenario_name"] == "t"
    text = (tmp_path / "run" / "scenario.toml").read_text()
    assert "qa_questions = 1" in text  # defaults filled in


def test_lost_device_is_reconnected_and_the_trial_retried_once_recorded(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    FlakyDevice.reconnects, FlakyDevice.can_reconnect = 0, True
    path = words_scenario(model="lost-once", reps=1, warmup=0, kinds='["SUMM"]')
    path.write_text(
        path.read_text().replace("[[models]]", '[device]\nname = "flaky"\n\n[[models]]')
    )
    records = _run(path, words_registry, tmp_path / "run")
    assert len(records) == 4 and len({r["trial_id"] for r in records}) == 4
    assert all(r["status"] == "ok" and r["attempts"] == 2 for r in records)
    assert records[0]["lost_attempts"] == ["attempt 1: transport closed"]
    assert FlakyDevice.reconnects == 4
    samples = list(read_jsonl(tmp_path / "run" / TELEMETRY))
    assert {s.get("attempt") for s in samples if s["trial_id"] == records[0]["trial_id"]} == {
        None,
        2,
    }


def test_device_that_does_not_come_back_fails_the_trial(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    FlakyDevice.can_reconnect = False
    path = words_scenario(model="lost-once", reps=1, warmup=0, kinds='["SUMM"]')
    path.write_text(
        path.read_text().replace("[[models]]", '[device]\nname = "flaky"\n\n[[models]]')
    )
    records = _run(path, words_registry, tmp_path / "run")
    FlakyDevice.can_reconnect = True
    assert records[0]["status"] == "failed" and records[0]["attempts"] == 1
    assert records[0]["error"] == (
        "attempt 1: transport closed; reconnect failed: no device after 0.0 s"
    )


def test_energy_is_integrated_from_power_samples(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    path = words_scenario(model="slow", reps=1, warmup=0, kinds='["SUMM"]')
    path.write_text(
        path.read_text().replace("[[models]]", '[device]\nname = "flaky"\n\n[[models]]')
    )
    records = _run(path, words_registry, tmp_path / "run")
    for r in records:
        samples = [
            s for s in read_jsonl(tmp_path / "run" / TELEMETRY) if s["trial_id"] == r["trial_id"]
        ]
        span = samples[-1]["t"] - samples[0]["t"]
        assert r["energy_j"] == pytest.approx(2.0 * span, rel=0.01)
        assert r["energy_reliable"] is False  # USB-powered: computed, flagged
    host = _run(words_scenario(), words_registry, tmp_path / "host")
    assert host[0]["energy_j"] is None and host[0]["energy_reliable"] is None


def test_quality_is_the_tasks_own_metric(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    """Task.score goes into each ok record's quality; a failed trial: {}. DocAssist's SUMM
    scores the reply's format (the word echo follows none of it)."""
    path = words_scenario(model="fail-trial", reps=1, warmup=0, kinds='["COUNT", "SUMM"]')
    records = _run(path, words_registry, tmp_path / "run")
    count_ok = [r for r in records if r["task"] == "COUNT" and r["status"] == "ok"]
    assert count_ok and all(r["quality"] == {"words": 8.0, "from_context": 1.0} for r in count_ok)
    assert all(isinstance(v, float) for r in count_ok for v in r["quality"].values())
    summ_ok = [r for r in records if r["task"] == "SUMM" and r["status"] == "ok"]
    assert summ_ok and all(r["quality"] == {"intent_ok": 0.0, "format_ok": 0.0} for r in summ_ok)
    failed = [r for r in records if r["status"] == "failed"]
    assert failed and all(r["quality"] == {} for r in failed)


def test_a_failing_metric_fails_the_trial_and_names_the_task(
    words_scenario: Callable[..., Path],
    words_registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wordsplugin import CountWords

    monkeypatch.setattr(CountWords, "score", lambda self, prompt, output: {"words": "many"})
    path = words_scenario(reps=1, warmup=0, kinds='["COUNT"]')
    records = _run(path, words_registry, tmp_path / "run")
    assert records and all(r["status"] == "failed" for r in records)
    assert "quality metric of task 'COUNT' failed: ValueError" in records[0]["error"]
    assert records[0]["quality"] == {}


def test_a_device_name_that_is_a_kind_asks_no_other_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`name = "host"` resolves to the host kind without asking the others, whose accepts may
    be costly (Android's starts an adb server); the first kind that accepts is taken."""
    from devicelab import DeviceInfo, DeviceType
    from devicelab._runtime.resolve import resolve_device
    from devicelab._scenario import Scenario

    asked: list[str] = []

    class Kind(DeviceType):
        def __init__(self, kind: str, names: set[str]) -> None:
            self.kind = kind  # type: ignore[misc]
            self.names = names

        def discover(self) -> list[DeviceInfo]:
            return []

        def accepts(self, name: str) -> bool:
            asked.append(self.kind)
            return name in self.names

        def open(self, name: str, profile: object) -> FlakyDevice:
            raise AssertionError("not opened here")

    phones, host = Kind("android", {"SER1", "host"}), Kind("host", {"host"})
    registry = Registry(devices={"android": ("a", phones), "host": ("h", host)})
    monkeypatch.chdir(tmp_path)  # no devices/ profile here: the names go to the kinds
    scenario = Scenario(source=tmp_path / "s" / "s.toml", name="s", device="host")
    assert resolve_device(scenario, registry)[0] is host
    assert asked == ["host"]
    asked.clear()
    assert resolve_device(scenario.with_device("SER1"), registry)[0] is phones
    assert asked == ["android"]


def test_a_prefix_cache_hit_fails_the_trial_unless_allowed(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    """An engine that reports a shortfall of prefilled tokens (a repetition served from its
    prefix cache) fails that trial with the reason; allow_prefix_cache keeps it, marked."""
    path = words_scenario(model="cached", reps=2, warmup=0, kinds='["SUMM"]')
    records = _run(path, words_registry, tmp_path / "strict")
    # The words engine makes doc1's prompts equal to doc0's, so only doc0's first runs are new.
    first = [r for r in records if r["repetition"] == 0 and r["doc_id"] == "doc0"]
    again = [r for r in records if r["repetition"] == 1]
    assert all(r["status"] == "ok" and r["prefix_cached"] is False for r in first)
    for r in again:
        assert r["status"] == "failed" and r["prefix_cached"] is True
        assert r["prefilled_tokens"] == 1 and "allow_prefix_cache = true" in r["error"]
    path.write_text(path.read_text().replace('name = "t"', 'name = "t"\nallow_prefix_cache = true'))
    kept = _run(path, words_registry, tmp_path / "allowed")
    assert all(r["status"] == "ok" for r in kept)
    assert all(r["prefix_cached"] for r in kept if r["repetition"] == 1)


def test_an_engine_that_reports_nothing_leaves_prefix_cached_unknown(
    words_scenario: Callable[..., Path], words_registry: Registry, tmp_path: Path
) -> None:
    records = _run(words_scenario(warmup=0, reps=1), words_registry, tmp_path / "run")
    assert records and all(r["prefix_cached"] is None for r in records)
    assert all(r["client_engine_gap"] == {"itps": None, "otps": None} for r in records)
