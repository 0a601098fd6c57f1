"""Run a plan's trials on this host, on its one device, in the order its :class:`Schedule`
gives: the local executor's work. Each record is appended the moment its trial finishes."""

from __future__ import annotations

from collections.abc import Iterator

from .._executor import Reporter, RunOutcome
from .._rundir import RunDir
from .interrupt import check
from .plan import Plan, Trial
from .schedule import Schedule
from .session import DeviceSession


def execute(plan: Plan, run: RunDir, reporter: Reporter | None = None) -> RunOutcome:
    """Run every trial not yet in ``run`` (with adaptive repetitions, until each cell stops)."""
    rep = reporter or Reporter()
    schedule = Schedule(plan, run.records())
    rep.start(schedule.remaining(), schedule.skipped)
    outcome = RunOutcome(skipped=schedule.skipped)
    todo = schedule.next()
    if not todo:
        rep.finish()
        return outcome

    session = DeviceSession(plan, run.run_id, rep)
    try:
        session.open()
        for trial in _in_turn(schedule, todo, rep):
            check()
            try:
                result = session.run_trial(trial)
            finally:
                # A load that stops the run (a context too small) still leaves its samples.
                run.append_samples(session.take_samples())
            run.add_provenance(result.provenance)  # before the record that names it
            run.append_trial(result.record, result.samples, result.token_ms)
            outcome.add(result.record)
            schedule.add(result.record)
            rep.trial_done(result.record)
    finally:
        try:
            session.close()
        finally:
            rep.finish()
    return outcome


def _in_turn(schedule: Schedule, batch: list[Trial], rep: Reporter) -> Iterator[Trial]:
    """The batch's trials, then each next batch once the records of the last one are in."""
    while batch:
        yield from batch
        batch = schedule.next()
        if schedule.adaptive:
            rep.expect(schedule.ran + schedule.remaining())
