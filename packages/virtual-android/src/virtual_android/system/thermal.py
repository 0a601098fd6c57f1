"""The thermal service over the heat model (model/heat.py): the Samsung thermal HAL's sensors and
their throttling status, as `dumpsys thermalservice` prints them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..model.heat import THRESHOLDS, thermal_status
from .service import SystemService

if TYPE_CHECKING:
    from ..model.heat import PhoneModel
    from ..shell.interpreter import CommandContext
    from .logd import LogBuffer
    from .processes import ProcessTable

__all__ = ["HAL_SENSORS", "ThermalService"]

_HAL = "android.hardware.thermal-service.samsung"  # the HAL daemon, as ps names it

# Samsung thermal HAL sensors shown by thermalservice: (name, type).
HAL_SENSORS = (("AP", 0), ("BAT", 2), ("SKIN", 3), ("USB", 4), ("PA", 5))


@dataclass
class ThermalService(SystemService):
    _model: PhoneModel
    _logs: LogBuffer
    _processes: ProcessTable
    name = "thermalservice"

    def log_hottest(self) -> None:
        """The HAL's periodic line in the main log: the hottest zone now."""
        temps = self._model.temperatures()
        hottest = max(temps, key=lambda zone: temps[zone]) if temps else "cpu"
        self._logs.write(
            _HAL,
            f"Sensor {hottest}: {temps.get(hottest, 35.0):.1f} C",
            priority="D",
            pid=self._processes.system_pid(_HAL),
            buffer="main",
        )

    def hal_temperatures(self) -> list[tuple[str, int, float]]:
        """The HAL's sensors: (name, type, degrees C), as `dumpsys thermalservice` shows them."""
        temps = self._model.temperatures()
        derived = {
            "AP": temps["AP"],
            "BAT": temps["BAT"],
            "SKIN": temps["SKIN"],
            "USB": 25.0 + 0.6 * (temps["SKIN"] - 25.0) + 1.0,
            "PA": 25.0 + 0.4 * (temps["AP"] - 25.0) + 2.0,
        }
        return [(name, kind, round(derived[name], 1)) for name, kind in HAL_SENSORS]

    def dump(self, ctx: CommandContext, args: list[str]) -> int:
        sensors = self.hal_temperatures()
        statuses = [thermal_status(value, kind) for _name, kind, value in sensors]
        overall = max(statuses) if statuses else 0

        def temperature_line(name: str, kind: int, value: float, status: int) -> str:
            return f"\tTemperature{{mValue={value}, mType={kind}, mName={name}, mStatus={status}}}"

        # The service's cache and the HAL agree: the model is the only source.
        temperatures = [
            temperature_line(n, k, v, s) for (n, k, v), s in zip(sensors, statuses, strict=True)
        ]
        lines = [
            "IsStatusOverride: false",
            "ThermalEventListeners:",
            "\tcallbacks: 3",
            "\tkilled: false",
            "\tbroadcasts count: -1",
            "ThermalStatusListeners:",
            "\tcallbacks: 5",
            "\tkilled: false",
            "\tbroadcasts count: -1",
            f"Thermal Status: {overall}",
            "Cached temperatures:",
            *temperatures,
            "HAL Ready: true",
            "HAL connection:",
            "\tThermalHAL AIDL 1  connected: yes",
            "Current temperatures from HAL:",
            *temperatures,
        ]
        lines += [
            "Current cooling devices from HAL:",
            "\tCoolingDevice{mValue=0, mType=2, mName=cpufreq-BIG}",
            "\tCoolingDevice{mValue=0, mType=2, mName=cpufreq-MID}",
            "\tCoolingDevice{mValue=0, mType=2, mName=cpufreq-LITTLE}",
            "\tCoolingDevice{mValue=0, mType=3, mName=gpufreq}",
            "Temperature static thresholds from HAL:",
        ]
        for name, kind in HAL_SENSORS:
            hot = ", ".join(["NaN"] + [f"{t}" for t in THRESHOLDS.get(kind, THRESHOLDS[0])])
            lines.append(
                f"\tTemperatureThreshold{{mType={kind}, mName={name}, "
                f"mHotThrottlingThresholds=[{hot}], "
                "mColdThrottlingThresholds=[NaN, NaN, NaN, NaN, NaN, NaN, NaN]}"
            )
        ctx.write("\n".join(lines) + "\n")
        return 0
