"""Run a plan's trials on this host, on its one device, in plan order: the local executor's
work. Each record is appended the moment its trial finishes."""

from __future__ import annotations

from .._executor import Reporter, RunOutcome
from .._rundir import RunDir
from .plan import Plan
from .session import DeviceSession


def execute(plan: Plan, run: RunDir, reporter: Reporter | None = None) -> RunOutcome:
    """Run every trial not yet in ``run``."""
    rep = reporter or Reporter()
    done = run.done_trial_ids()
    trials = list(plan.trials())
    todo = [t for t in trials if t.trial_id not in done]
    rep.start(len(todo), len(trials) - len(todo))
    outcome = RunOutcome(skipped=len(trials) - len(todo))
    if not todo:
        rep.finish()
        return outcome

    session = DeviceSession(plan, run.run_id, rep)
    try:
        session.open()
        for trial in todo:
            try:
                result = session.run_trial(trial)
            finally:
                # A load that stops the run (a context too small) still leaves its samples.
                run.append_samples(session.take_samples())
            run.add_provenance(result.provenance)  # before the record that names it
            run.append_trial(result.record, result.samples)
            outcome.add(result.record)
            rep.trial_done(result.record)
    finally:
        try:
            session.close()
        finally:
            rep.finish()
    return outcome
