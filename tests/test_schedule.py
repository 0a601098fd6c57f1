"""The schedule: which trials run, in what order, for fixed and adaptive repetitions, and how
a run resumes to the same decisions."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from wordsplugin import run_cli

import devicelab
from devicelab import Measures, Plan, Schedule, TrialRecord
from devicelab._errors import ScenarioError
from devicelab._plugins import Registry
from devicelab._record import RUN_KEY
from devicelab._rundir import SUMMARY, TRIALS, read_jsonl
from devicelab._runtime.resolve import resolve
from devicelab._scenario import load_scenario
from devicelab._stopping import Stop
from devicelab.testing import make_scenario

AUTO = '"auto"\nmin_repetitions = {lo}\nmax_repetitions = {hi}'


def _plan(make: Callable[..., Path], registry: Registry, order: str = "", **kw: object) -> Plan:
    path = make(**kw)
    if order:
        path.write_text(path.read_text().replace('name = "t"', f'name = "t"\norder = "{order}"'))
    return resolve(load_scenario(path), registry)


def _ok(plan: Plan, trial: object, value: float = 50.0) -> TrialRecord:
    ident = plan.identity(trial, "run")  # type: ignore[arg-type]
    return TrialRecord(ident, measures=Measures(otps=value))


def _drive(schedule: Schedule, value: Callable[[str], float] = lambda _: 50.0) -> list[str]:
    """Run ``schedule`` to its end as an executor would; the trial ids in run order."""
    ran: list[str] = []
    while batch := schedule.next():
        for trial in batch:
            ran.append(trial.trial_id)
            schedule.add(_ok(schedule.plan, trial, value(trial.trial_id)))
    return ran


def _short(trial_id: str) -> str:
    """``SUMM/doc0/summary/L10/r2`` from a full trial id (device/model/quant/...)."""
    return "/".join(trial_id.split("/")[3:])


def _task_l(key: tuple[object, ...]) -> tuple[object, object]:
    """The task and L of a cell's RUN_KEY values."""
    named = dict(zip(RUN_KEY, key, strict=True))
    return named["task"], named["context_tokens"]


# A rule with known answers: SUMM L10 stops after 2 repetitions, SUMM L20 after 3, QA L20
# after 2; QA L10 never (the schedule stops it at max_repetitions).
STOP_AT = {("SUMM", 10): 2, ("SUMM", 20): 3, ("QA", 20): 2}


def fake_rule(records: Sequence[TrialRecord], k: int) -> Stop | None:
    who = records[0].identity
    assert {r.identity.repetition for r in records} == set(range(k))  # all of 0..k-1, no more
    at = STOP_AT.get((who.task, who.context_tokens))
    return Stop(k, f"fake after {k}", "target") if at == k else None


def test_interleaved_rounds_go_over_the_cells_that_have_not_stopped(
    words_scenario: Callable[..., Path], words_registry: Registry
) -> None:
    plan = _plan(words_scenario, words_registry, "interleaved", reps=AUTO.format(lo=2, hi=4))
    ran = [_short(t) for t in _drive(Schedule(plan, rule=fake_rule))]
    every = [f"{t}/{d}/{i}/L{n}" for t, i in (("SUMM", "summary"), ("QA", "qa0"))
             for d in ("doc0", "doc1") for n in (10, 20)]  # fmt: skip
    expected = ["SUMM/doc0/summary/L10/w0"]
    expected += [f"{c}/r0" for c in every] + [f"{c}/r1" for c in every]
    longer = [c for c in every if c.startswith("SUMM") == c.endswith("L20")]  # SUMM L20, QA L10
    expected += [f"{c}/r2" for c in longer]
    expected += [f"{c}/r3" for c in longer if c.startswith("QA")]
    assert ran == expected


def test_sequential_order_repeats_each_cell_until_it_stops(
    words_scenario: Callable[..., Path], words_registry: Registry
) -> None:
    plan = _plan(words_scenario, words_registry, reps=AUTO.format(lo=2, hi=4))
    schedule = Schedule(plan, rule=fake_rule)
    ran = [_short(t) for t in _drive(schedule)]

    def reps(cell: str, n: int) -> list[str]:
        task, item, length = cell.split()
        return [f"{task}/{d}/{item}/{length}/r{r}" for r in range(n) for d in ("doc0", "doc1")]

    assert ran == [
        "SUMM/doc0/summary/L10/w0",
        *reps("SUMM summary L10", 2),
        *reps("SUMM summary L20", 3),
        *reps("QA qa0 L10", 4),
        *reps("QA qa0 L20", 2),
    ]
    stops = schedule.stops()
    assert {_task_l(k): s.repetitions for k, s in stops.items()} == {
        ("SUMM", 10): 2, ("SUMM", 20): 3, ("QA", 10): 4, ("QA", 20): 2,
    }  # fmt: skip
    (qa10,) = [s for k, s in stops.items() if _task_l(k) == ("QA", 10)]
    assert qa10 == Stop(4, "max_repetitions 4", "max")


def test_fixed_repetitions_are_the_plan_matrix_in_one_batch(
    words_scenario: Callable[..., Path], words_registry: Registry
) -> None:
    for order in ("sequential", "interleaved"):
        plan = _plan(words_scenario, words_registry, order, reps=3)
        schedule = Schedule(plan)
        batch = schedule.next()
        assert [t.trial_id for t in batch] == [t.trial_id for t in plan.trials()]
        assert schedule.remaining() == len(batch) == 1 + 8 * 3
        for t in batch[:5]:
            schedule.add(_ok(plan, t))
        assert schedule.next() == [] and schedule.stops() == {}
        # Resumed with 5 recorded: the other trials, in the same order.
        again = Schedule(plan, [_ok(plan, t) for t in batch[:5]])
        assert again.skipped == 5 and again.next() == batch[5:]


def _noisy(trial_id: str) -> float:
    """A deterministic value per trial: SUMM cells are tight (±0.5 %), QA cells wide (±30 %)."""
    spread = 0.005 if "/SUMM/" in trial_id else 0.3
    return 50.0 * (1 + random.Random(trial_id).uniform(-spread, spread))


@pytest.mark.parametrize("order", ["sequential", "interleaved"])
def test_a_resumed_schedule_continues_to_the_same_decisions(
    words_scenario: Callable[..., Path], words_registry: Registry, order: str
) -> None:
    plan = _plan(words_scenario, words_registry, order, reps=AUTO.format(lo=2, hi=5))
    whole = Schedule(plan)
    ran = _drive(whole, _noisy)
    stops = whole.stops()
    # The real rule: the tight cells stop once they have 6 values (3 repetitions of 2
    # documents), the wide ones run to the maximum.
    assert {_task_l(k): (s.repetitions, s.why) for k, s in stops.items()} == {
        ("SUMM", 10): (3, "target"), ("SUMM", 20): (3, "target"),
        ("QA", 10): (5, "max"), ("QA", 20): (5, "max"),
    }  # fmt: skip
    trials = {t.trial_id: t for t in plan.trials()}
    for cut in (1, 4, 9, 13, 20, len(ran) - 1):
        done = [_ok(plan, trials[tid], _noisy(tid)) for tid in ran[:cut]]
        resumed = Schedule(plan, done)
        assert resumed.skipped == cut
        assert _drive(resumed, _noisy) == ran[cut:], f"resumed after {cut} trials"
        assert resumed.stops() == stops


def test_progress_total_is_the_most_left_and_falls_as_cells_stop(
    words_scenario: Callable[..., Path], words_registry: Registry
) -> None:
    plan = _plan(words_scenario, words_registry, "interleaved", reps=AUTO.format(lo=2, hi=4))
    schedule = Schedule(plan, rule=fake_rule)
    assert schedule.remaining() == 1 + 8 * 4  # the warm-up and every cell to the maximum
    totals = []
    while batch := schedule.next():
        for t in batch:
            schedule.add(_ok(plan, t))
        totals.append(schedule.ran + schedule.remaining())
    # After round 1 (repetition 1), SUMM L10 and QA L20 stop: 2 x 2 documents x 2
    # repetitions fewer; after round 2, SUMM L20 stops: 2 fewer.
    assert totals == [33, 25, 23, 23]
    assert schedule.ran == 23


def test_max_repetitions_too_few_for_any_interval_is_bad_input(
    words_scenario: Callable[..., Path], words_registry: Registry
) -> None:
    # 2 documents per cell: 2 repetitions give 4 values, and the interval needs 6.
    with pytest.raises(ScenarioError, match=r"Raise max_repetitions to 3 or more, or set "):
        _plan(words_scenario, words_registry, reps=AUTO.format(lo=1, hi=2))


@pytest.mark.usefixtures("words_installed")
def test_an_auto_run_interrupted_and_resumed_ends_as_one_run_would(
    words_scenario: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wordsplugin import WordEngine

    WordEngine.interrupted = False
    path = words_scenario(model="interrupt", reps=AUTO.format(lo=2, hi=4))
    out = tmp_path / "run"
    assert run_cli(["run", str(path), "--out", str(out)]) == 130  # Ctrl-C on the 3rd trial
    assert len(list(read_jsonl(out / TRIALS))) == 2
    capsys.readouterr()
    assert run_cli(["run", str(path), "--out", str(out), "--resume"]) == 0
    records = [TrialRecord.from_json(r) for r in read_jsonl(out / TRIALS)]
    ids = [r.trial_id for r in records]
    assert len(ids) == len(set(ids))
    plan = resolve(load_scenario(path), devicelab.load_plugins())
    stops = Schedule(plan, records).stops()
    assert len(stops) == 4  # every cell stopped, each for a reason of the rule
    for key, stop in stops.items():
        reps = {r.identity.repetition for r in records if r.cell(RUN_KEY) == key and r.measured}
        # No repetition after the decision, none missing before it.
        assert reps == set(range(stop.repetitions)), key
        assert 2 <= stop.repetitions <= 4
    rows = json.loads((out / SUMMARY).read_text())
    assert {r["stopped"] for r in rows} == {s.reason for s in stops.values()}
    printed = capsys.readouterr()
    assert "Adaptive repetitions: why each cell stopped" in printed.out
    assert 'repetitions = "auto":' in printed.err and "of 4 cells reached" in printed.err


@pytest.mark.e2e
def test_a_real_host_run_repeats_each_cell_until_it_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # SmolLM2 on the host; 2 documents, so 3 repetitions give a cell the 6 values a 95 %
    # interval needs. Whether a cell reaches ±5 % depends on how busy the host is: either
    # way it stops for a reason the rule gives, and never past max_repetitions.
    path = make_scenario(
        tmp_path,
        kinds=["QA"],
        lengths=[50],
        max_documents=2,
        max_output_tokens=4,
        repetitions="auto",
        scenario_keys={"min_repetitions": 2, "max_repetitions": 3, "order": "interleaved"},
    )
    out = tmp_path / "run"
    assert run_cli(["run", str(path), "--out", str(out)]) == 0
    records = [TrialRecord.from_json(r) for r in read_jsonl(out / TRIALS)]
    assert records and all(r.ok for r in records)
    rows = json.loads((out / SUMMARY).read_text())
    assert [r["context_tokens"] for r in rows] == [50]
    for row in rows:
        reps = {
            r.identity.repetition
            for r in records
            if r.identity.context_tokens == row["context_tokens"]
        }
        n = len(reps)
        # 2 repetitions give 4 values, no interval yet: each cell decides at 3.
        assert reps == set(range(n)) and n == 3 and row["n"] == 2 * n
        met = rf"ci ±[\d.]+% <= 5% after {n} \((itps|otps|ttft_s|runtime_s)\)"
        short = r"max_repetitions 3, ci ±[\d.]+% \((itps|otps|ttft_s|runtime_s)\)"
        assert re.fullmatch(met, row["stopped"]) or (n == 3 and re.fullmatch(short, row["stopped"]))
    assert "why each cell stopped" in capsys.readouterr().out
