"""The ``ray`` executor: the driver side.

It checks that the cluster offers the scenario's device, starts one actor per matching device
(pinned to its node and its device resource), hands out trial ids as actors free up, and
writes each record the moment it comes back: the driver is the only writer of the run
directory, and its :class:`devicelab.Schedule` decides which trials run (with adaptive
repetitions, the next ones whenever the queue runs dry). A trial whose actor, host or phone
is lost goes back to the queue for another device (at most ``[scenario] retries`` times);
when no device is left it is recorded failed.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import devicelab
from devicelab import (
    Attempts,
    Executor,
    Plan,
    Reporter,
    RunDir,
    RunOutcome,
    Schedule,
    TrialRecord,
)

from . import resources

INSTALL = "pip install 'devicelab[ray]'"
# Trials queued per actor: the next one is already there when one finishes, so a device never
# waits for a round trip to the driver.
DEPTH = 2


def require_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise devicelab.MissingDependencyError(
            f"the ray executor and `devicelab worker` need Ray: {INSTALL}"
        ) from None
    return ray


@dataclass
class _Unit:
    label: str
    handle: Any
    load: int = 0
    alive: bool = True


@dataclass
class _Pending:
    trial_id: str
    lost: list[str] = field(default_factory=list)  # notes: why earlier attempts were lost
    # Counted apart from the notes: an actor whose phone is lost returns a note per attempt
    # and failed reconnect, but that is one device lost, and [scenario] retries bounds moves.
    attempts: int = 0
    moves: int = 0


class RayExecutor(Executor):
    name = "ray"
    description = "the devices of a Ray cluster (devicelab worker start on each host)"

    def __init__(self, address: str | None = None) -> None:
        address = address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise devicelab.UsageError(
                "the ray executor needs the cluster's address: add --address HEAD:PORT (the "
                "address `ray start --head` printed), or --address auto for the cluster this "
                "host belongs to, or set RAY_ADDRESS."
            )
        super().__init__(address)
        self.ray = require_ray()
        self._connected_here = False
        self._key: str | None = None

    # --- connection and placement ------------------------------------------------------

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        try:
            ray.init(
                address=self.address,
                namespace="devicelab",
                log_to_driver=False,
                logging_level="ERROR",
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise devicelab.UsageError(
                f"cannot join the Ray cluster at {self.address}: {exc}. Start a head with "
                "`ray start --head`, and pass the address it prints to --address."
            ) from None
        self._connected_here = True

    def _disconnect(self) -> None:
        if self._connected_here:
            self.ray.shutdown()
            self._connected_here = False

    def check(self, plan: Plan) -> None:
        """Fail at once, naming the resource, when no node offers the scenario's device."""
        self._connect()
        available = self.ray.cluster_resources()
        key = resources.pick(plan.device_name, available)
        if key is None:
            offered = ", ".join(resources.offered(available)) or "none"
            self._disconnect()
            raise devicelab.UsageError(
                f"no node of the Ray cluster at {self.address} has the device "
                f"{plan.device_name!r}: none offers the resource "
                f"{resources.DEVICE}{plan.device_name} (nor {resources.SERIAL}"
                f"{plan.device_name} or {resources.MODEL}{plan.device_name}). The cluster "
                f"offers: {offered}. Run `devicelab worker start --address {self.address}` on "
                "a host with that device attached."
            )
        self._key = key

    def _units(self, plan: Plan, run: RunDir) -> list[_Unit]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .actor import DeviceWorker

        assert self._key is not None
        remote = self.ray.remote(DeviceWorker)
        data = plan.scenario.resolved()
        units = []
        for node in self.ray.nodes():
            have = node.get("Resources", {})
            count = int(have.get(self._key, 0)) if node.get("Alive") else 0
            host = resources.host_of(have, str(node.get("NodeManagerHostname", "?")))
            for i in range(count):
                label = f"{host}/{plan.device_name}" + (f"#{i}" if count > 1 else "")
                handle = remote.options(
                    num_cpus=0,
                    resources={self._key: 1},
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                    max_restarts=0,
                    max_task_retries=0,
                ).remote(data, str(plan.scenario.source), run.run_id, i, label)
                units.append(_Unit(label, handle))
        return units

    # --- the run -------------------------------------------------------------------------

    def run(self, plan: Plan, run: RunDir, reporter: Reporter) -> RunOutcome:
        if self._key is None:
            self.check(plan)
        try:
            return self._run(plan, run, reporter)
        finally:
            self._disconnect()

    def _run(self, plan: Plan, run: RunDir, reporter: Reporter) -> RunOutcome:
        ray = self.ray
        from ray.exceptions import RayTaskError

        done = run.records()
        written = {r.trial_id for r in done}
        # The driver decides what runs: every trial at once, or (adaptive repetitions) the
        # repetitions of cells that have not stopped, asked for whenever the queue runs dry.
        schedule = Schedule(plan, done)
        trials = {t.trial_id: t for t in plan.trials()}
        todo = schedule.next()
        outcome = RunOutcome(skipped=schedule.skipped)
        reporter.start(schedule.remaining(), outcome.skipped)
        if not todo:
            reporter.finish()
            return outcome
        units = self._units(plan, run)
        reporter.status(f"{len(units)} devices in the cluster: {', '.join(u.label for u in units)}")
        queue = deque(_Pending(t.trial_id) for t in todo)
        inflight: dict[Any, tuple[_Unit, _Pending]] = {}
        retries = plan.scenario.retries
        last_loss = "no device of the cluster could be used"

        def record(
            rec: TrialRecord, samples: list[dict[str, Any]], token_ms: list[float] | None = None
        ) -> None:
            if rec.trial_id in written:
                return  # idempotent by trial_id: a trial run twice is written once
            written.add(rec.trial_id)
            run.append_trial(rec, samples, token_ms or ())
            outcome.add(rec)
            schedule.add(rec)
            reporter.trial_done(rec)

        def lose(unit: _Unit, pending: _Pending, why: str, attempts: int = 1) -> None:
            nonlocal last_loss
            if unit.alive:
                unit.alive = False
                reporter.status(f"lost {unit.label}: {why}")
                ray.kill(unit.handle, no_restart=True)
            last_loss = f"{unit.label}: {why}"
            pending.attempts += attempts
            pending.moves += 1
            pending.lost.append(f"attempt {pending.attempts} on {unit.label}: {why}")
            if pending.moves > retries:
                give_up(pending, f"lost {pending.moves} times, the last on {last_loss}")
            else:
                queue.appendleft(pending)

        def give_up(pending: _Pending, why: str) -> None:
            trial = trials[pending.trial_id]
            rec = plan.failed_record(trial, run.run_id, why, pending.lost, "")
            record(rec.but(tries=Attempts(pending.attempts, tuple(pending.lost))), [])

        try:
            while True:
                if not queue:
                    more = schedule.next()
                    queue.extend(_Pending(t.trial_id) for t in more)
                    if more:
                        reporter.expect(schedule.ran + schedule.remaining())
                if not queue and not inflight:
                    break
                for unit in units:
                    while unit.alive and unit.load < DEPTH and queue:
                        pending = queue.popleft()
                        inflight[unit.handle.run.remote(pending.trial_id)] = (unit, pending)
                        unit.load += 1
                if not inflight:
                    while queue:
                        give_up(
                            queue.popleft(),
                            f"no device {plan.device_name!r} is left in the cluster "
                            f"(last lost: {last_loss})",
                        )
                    break
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    unit, pending = inflight.pop(ref)
                    unit.load -= 1
                    try:
                        out = ray.get(ref)
                    except RayTaskError as exc:
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, devicelab.UsageError):
                            raise devicelab.UsageError(f"on {unit.label}: {cause}") from None
                        rec = plan.failed_record(
                            trials[pending.trial_id],
                            run.run_id,
                            f"the worker on {unit.label} failed: {cause or exc}",
                            pending.lost,
                            unit.label,
                        )
                        tries = Attempts(pending.attempts + 1, tuple(pending.lost))
                        record(rec.but(tries=tries), [])
                        continue
                    except ray.exceptions.RayError as exc:
                        lose(unit, pending, _short(exc))
                        continue
                    rec = TrialRecord.from_json(out["record"])
                    # The worker's load (engine build, model file, phone, host), sent once
                    # per load: kept even when this trial is retried elsewhere. .get: a
                    # worker of an older devicelab sends none.
                    run.add_provenance(out.get("provenance") or {})
                    if out["device_lost"]:
                        for note in rec.tries.lost_attempts:
                            pending.lost.append(f"on {unit.label}: {note}")
                        lose(
                            unit,
                            pending,
                            "the device was lost and did not come back",
                            rec.tries.attempts,
                        )
                        continue
                    if pending.lost:
                        # Only the lost-device counts change; noisy and noisy_attempts stay.
                        tries = replace(
                            rec.tries,
                            attempts=pending.attempts + rec.tries.attempts,
                            lost_attempts=(*pending.lost, *rec.tries.lost_attempts),
                        )
                        rec = rec.but(tries=tries)
                    # .get: a worker of an older devicelab sends no token times.
                    record(rec, out["samples"], out.get("token_ms"))
        finally:
            self._close_units(units)
            reporter.finish()
        return outcome

    def _close_units(self, units: list[_Unit]) -> None:
        alive = [u for u in units if u.alive]
        refs = [u.handle.close.remote() for u in alive]
        deadline = time.monotonic() + 10
        if refs:
            # Closing frees each phone (a virtual one stops); a dead host is not waited for.
            self.ray.wait(
                refs, num_returns=len(refs), timeout=max(0.0, deadline - time.monotonic())
            )
        for u in alive:
            self.ray.kill(u.handle, no_restart=True)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    head = text.split(". ")[0]
    return f"{type(exc).__name__}: {head[:200]}"
