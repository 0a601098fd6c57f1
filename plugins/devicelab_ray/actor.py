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
        self.session = DeviceSession.for_worker(
            scenario, source, devicelab.load_plugins(), run_id, label
        )
        self.trials = {t.trial_id: t for t in self.session.plan.trials()}
        self.label = label
        self.unit = unit
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
        # Plain JSON crosses the network, so a worker and a driver of other versions agree.
        return {
            "record": out.record.to_json(),
            "samples": out.samples,
            "device_lost": out.device_lost,
            # The worker's own engine build, model file, phone and host: the driver adds
            # them to its run.json, keyed as the record's "provenance" names them.
            "provenance": out.provenance,
            "token_ms": out.token_ms,
        }

    def close(self) -> None:
        self.session.close()
