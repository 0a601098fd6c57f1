"""Run a plan's trials on this host, on its one device, in the order its :class:`Schedule`
gives: the local executor's work. Each record is appended the moment its trial finishes."""

from __future__ import annotations

from .._executor import Reporter, RunOutcome
from .._rundir import RunDir
from .plan import Plan
from .schedule import Schedule
from .session import DeviceSession


def execute(plan: Plan, run: RunDir, reporter: Reporter | None = None) -> RunOutcome:
    """Run every trial not yet in ``run`` (with adaptive repetitions, until each cell stops)."""
    rep = reporter or Reporter()
    schedule = Schedule(plan, run.records())
    rep.start(schedule.remaining(), schedule.skipped)
    outcome = RunOutcome(skipped=schedule.skipped)
    batch = schedule.next()
    if not batch:
        rep.finish()
        return outcome

    session = DeviceSession(plan, run.run_id, rep)
    try:
        session.open()
        while batch:
            for trial in batch:
                try:
                    result = session.run_trial(trial)
                finally:
                    # A load that stops the run (a context too small) still leaves its samples.
                    run.append_samples(session.take_samples())
                run.append_samples(result.samples)
                run.append_trial(result.record)
                outcome.add(result.record)
                schedule.add(result.record)
                rep.trial_done(result.record)
            batch = schedule.next()
            if schedule.adaptive:
                rep.expect(schedule.ran + schedule.remaining())
    finally:
        try:
            session.close()
        finally:
            rep.finish()
    return outcome
