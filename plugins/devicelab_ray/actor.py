"""The worker side: one Ray actor per device, holding its loaded model between trials.

The actor gets data only (the resolved scenario, the run id and trial ids), makes its own
plan from the plugins installed on its host and runs each trial through the same
:class:`devicelab.DeviceSession` as a local run. It returns plain records and samples: the
driver writes them, and nothing from the worker ever runs on the driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import devicelab
from devicelab import DeviceSession


class DeviceWorker:
    def __init__(
        self, scenario: Mapping[str, Any], source: str, run_id: str, unit: int, label: str
    ) -> None:
        from devicelab.scheduler import prepare_resolved

        registry = devicelab.plugin_manager.get_registry()
        plan = prepare_resolved(scenario, source, registry)
        self.trials = {t.trial_id: t for t in plan.trials()}
        self.label = label
        self.unit = unit
        self.session = DeviceSession(plan, run_id, device_label=label)
        try:
            self.session.open()
        except BaseException:
            self.session.close()
            raise

    def run(self, trial_id: str) -> dict[str, Any]:
        trial = self.trials.get(trial_id)
        if trial is None:
            raise devicelab.ScenarioError(
                f"trial {trial_id} is not in the plan of worker {self.label}: its plugins "
                "make a different trial matrix. Install the same devicelab plugins there."
            )
        out = self.session.run_trial(trial)
        return {"record": out.record, "samples": out.samples, "device_lost": out.device_lost}

    def close(self) -> None:
        self.session.close()
