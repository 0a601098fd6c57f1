"""Run-wide thermal state: whether a trial ran throttled, read from its telemetry samples.

A phone reports its thermal status (Android's ``THERMAL_STATUS_*``) and each CPU cluster's
current frequency cap (``cpu_N_max_mhz``); a cap below the highest seen in the run counts as
a thermal cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Sample = dict[str, Any]

THROTTLED_STATUS = 2  # Android's THERMAL_STATUS_MODERATE


@dataclass
class ThermalWatch:
    """Run-wide thermal state: the highest ``cpu_*_max_mhz`` of each key seen so far (a lower
    value later is a thermal cap) and whether the missing temperature was reported."""

    max_mhz: dict[str, float] = field(default_factory=dict)
    noted_no_temp: bool = False

    def observe(self, samples: list[Sample]) -> None:
        for s in samples:
            for key, value in s.items():
                if _is_cap_key(key) and isinstance(value, (int, float)):
                    self.max_mhz[key] = max(value, self.max_mhz.get(key, value))

    def throttling(self, samples: list[Sample]) -> dict[str, Any]:
        """``throttled`` and ``thermal_status_max`` of one trial's samples (in time order)."""
        statuses = [
            int(s["thermal_status"])
            for s in samples
            if isinstance(s.get("thermal_status"), (int, float))
            and not isinstance(s.get("thermal_status"), bool)
        ]
        capped = False
        seen_cap = False
        for s in samples:
            for key, value in s.items():
                if not _is_cap_key(key) or not isinstance(value, (int, float)):
                    continue
                seen_cap = True
                top = self.max_mhz.get(key)
                if top is not None and value < top:
                    capped = True
                self.max_mhz[key] = value if top is None else max(top, value)
        status_max = max(statuses) if statuses else None
        throttled: bool | None = None
        if statuses or seen_cap:
            throttled = capped or (status_max is not None and status_max >= THROTTLED_STATUS)
        return {"throttled": throttled, "thermal_status_max": status_max}


def _is_cap_key(key: str) -> bool:
    return key.startswith("cpu_") and key.endswith("_max_mhz")
