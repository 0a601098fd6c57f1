"""Thermal, CPU frequency, battery and memory model of the virtual Galaxy S24.

Each thermal zone is a first-order system: work pushes its excess temperature
toward a steady state proportional to the work's intensity; in real time the excess
relaxes toward ambient with the zone's time constant (BAT and SKIN are slow).

``PhoneModel.heat_time_scale`` runs the zones' clock that many times faster than real time
(default 1): work heats and idle cools them as that much longer would, so a test of a few
seconds sees what a phone does over minutes (throttling). Only the thermal zones: the load,
the battery and the uptime keep real time.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

AMBIENT_C = 25.0
BATTERY_CAPACITY_MAH = 4000.0


@dataclass(frozen=True)
class ZoneSpec:
    name: str
    idle_offset: float  # degrees above ambient when idle
    full_load: float  # steady-state excess at intensity 1.0
    tau: float  # seconds


ZONES: tuple[ZoneSpec, ...] = (
    ZoneSpec("BIG", 8.0, 58.0, 12.0),
    ZoneSpec("MID", 7.0, 50.0, 12.0),
    ZoneSpec("LITTLE", 6.0, 36.0, 12.0),
    ZoneSpec("G3D", 5.0, 34.0, 16.0),
    ZoneSpec("ISP", 4.0, 12.0, 25.0),
    ZoneSpec("NPU", 4.0, 18.0, 20.0),
    ZoneSpec("AP", 7.0, 48.0, 14.0),
    ZoneSpec("BAT", 4.0, 16.0, 150.0),
    ZoneSpec("SKIN", 5.0, 21.0, 110.0),
)


@dataclass(frozen=True)
class PolicySpec:
    name: str  # policy0, policy4, ...
    cpus: tuple[int, ...]
    core: str
    min_khz: int
    max_khz: int
    zone: str  # the zone whose temperature throttles it


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec("policy0", (0, 1, 2, 3), "Cortex-A520", 400000, 1950000, "LITTLE"),
    PolicySpec("policy4", (4, 5, 6), "Cortex-A720", 672000, 2600000, "MID"),
    PolicySpec("policy7", (7, 8), "Cortex-A720", 672000, 2900000, "MID"),
    PolicySpec("policy9", (9,), "Cortex-X4", 787000, 3207000, "BIG"),
)

# Reads advance the model at most once per quantum (work is applied at once, whatever the
# quantum): a burst of sysfs reads shares one state instead of recomputing it per file.
QUANTUM_S = 0.001

THROTTLE_START_C = 70.0
THROTTLE_FULL_C = 95.0
LOAD_TAU = 1.5


def _quantize(khz: float, lo: int, hi: int) -> int:
    value = round(khz / 1000.0) * 1000
    return max(lo, min(hi, value))


@dataclass(frozen=True)
class BatterySnapshot:
    level: int
    status: int  # 2 charging, 3 discharging, 5 full
    voltage_mv: int
    temperature_tenths: int
    current_ma: int  # negative while discharging
    usb_powered: bool
    ac_powered: bool
    charge_counter_uah: int


class PhoneModel:
    """The time-dependent physical state; thread-safe, advanced lazily on every read."""

    def __init__(self, clock: float | None = None) -> None:
        self._lock = threading.RLock()
        self._last = time.monotonic() if clock is None else clock
        self._excess = {zone.name: 0.0 for zone in ZONES}
        self._load = 0.0
        self._charge_mah = BATTERY_CAPACITY_MAH * 0.85
        self.usb_powered = False
        self.ac_powered = False
        self.level_override: int | None = None
        self.boot_time = time.time() - 2 * 86400 - 3 * 3600
        self.boot_monotonic = time.monotonic() - (2 * 86400 + 3 * 3600)
        self.work_seconds = 0.0
        self.heat_time_scale = 1.0
        # Derived readings, valid while _state is unchanged (every advance and every
        # add_work starts a new state).
        self._state = 0
        self._temps: dict[str, float] | None = None
        self._temps_state = -1
        self._battery: BatterySnapshot | None = None
        self._battery_key: tuple[int, bool, bool, int | None] | None = None

    # -- time ------------------------------------------------------------------
    def _advance(self, force: bool = False) -> None:
        """Bring the state to now; reads skip it when the state is younger than QUANTUM_S.

        Decay over a skipped interval is applied with the next advance: the exponentials
        compose, so the state follows real elapsed time either way.
        """
        now = time.monotonic()
        dt = now - self._last
        if dt <= 0 or (dt < QUANTUM_S and not force):
            return
        self._last = now
        self._state += 1
        heat_dt = dt * self.heat_time_scale
        for zone in ZONES:
            self._excess[zone.name] *= math.exp(-heat_dt / zone.tau)
        self._load *= math.exp(-dt / LOAD_TAU)
        if self.usb_powered or self.ac_powered:
            rate = 1500.0 if self._charge_mah < BATTERY_CAPACITY_MAH * 0.99 else 0.0
            self._charge_mah = min(BATTERY_CAPACITY_MAH, self._charge_mah + rate * dt / 3600.0)
        else:
            self._charge_mah = max(0.0, self._charge_mah - self._idle_current() * dt / 3600.0)

    @staticmethod
    def _idle_current() -> float:
        return 180.0

    # -- inputs ----------------------------------------------------------------
    def add_work(self, seconds: float, intensity: float) -> None:
        """Work done just now: heats zones toward steady state and drains the battery."""
        if seconds <= 0 or intensity <= 0:
            return
        intensity = min(float(intensity), 2.0)
        with self._lock:
            self._advance(force=True)
            self._state += 1
            heat_s = seconds * self.heat_time_scale
            for zone in ZONES:
                target = zone.full_load * intensity
                current = self._excess[zone.name]
                if target > current:
                    self._excess[zone.name] = target - (target - current) * math.exp(
                        -heat_s / zone.tau
                    )
            load_target = min(1.0, intensity)
            self._load = load_target - (load_target - self._load) * math.exp(-seconds / LOAD_TAU)
            if not (self.usb_powered or self.ac_powered):
                self._charge_mah = max(
                    0.0, self._charge_mah - 2400.0 * intensity * seconds / 3600.0
                )
            self.work_seconds += seconds

    # -- outputs ---------------------------------------------------------------
    def _temperatures(self) -> dict[str, float]:
        """The current readings, shared: callers must not change the dict."""
        with self._lock:
            self._advance()
            temps = self._temps
            if temps is None or self._temps_state != self._state:
                excess = self._excess
                temps = {z.name: AMBIENT_C + z.idle_offset + excess[z.name] for z in ZONES}
                self._temps, self._temps_state = temps, self._state
            return temps

    def temperatures(self) -> dict[str, float]:
        """Zone name -> degrees C."""
        return dict(self._temperatures())

    def temperature(self, name: str) -> float:
        return self._temperatures()[name]

    def load(self) -> float:
        with self._lock:
            self._advance()
            return self._load

    def max_freq(self, policy: PolicySpec) -> int:
        temp = self.temperature(policy.zone)
        if temp <= THROTTLE_START_C:
            return policy.max_khz
        fraction = min(1.0, (temp - THROTTLE_START_C) / (THROTTLE_FULL_C - THROTTLE_START_C))
        cap = policy.max_khz - fraction * 0.5 * (policy.max_khz - policy.min_khz)
        return _quantize(cap, policy.min_khz, policy.max_khz)

    def cur_freq(self, policy: PolicySpec) -> int:
        cap = self.max_freq(policy)
        load = self.load()
        khz = policy.min_khz + load * (cap - policy.min_khz)
        return _quantize(khz, policy.min_khz, cap)

    def battery(self) -> BatterySnapshot:
        with self._lock:
            self._advance()
            key = (self._state, self.usb_powered, self.ac_powered, self.level_override)
            if self._battery is None or self._battery_key != key:
                self._battery, self._battery_key = self._compute_battery(), key
            return self._battery

    def _compute_battery(self) -> BatterySnapshot:
        with self._lock:
            soc = self._charge_mah / BATTERY_CAPACITY_MAH
            level = self.level_override if self.level_override is not None else round(soc * 100)
            level = max(0, min(100, level))
            plugged = self.usb_powered or self.ac_powered
            if plugged:
                status = 5 if level >= 100 else 2
                current = 0 if level >= 100 else 1500
            else:
                status = 3
                current = -round(self._idle_current() + 2400.0 * self._load)
            ocv = 3500.0 + 650.0 * soc
            voltage = ocv - (0.12 * self._load * 1000.0 if not plugged else -60.0)
            bat_temp = AMBIENT_C + ZONES[7].idle_offset + self._excess["BAT"]
            return BatterySnapshot(
                level=level,
                status=status,
                voltage_mv=round(voltage),
                temperature_tenths=round(bat_temp * 10),
                current_ma=current,
                usb_powered=self.usb_powered,
                ac_powered=self.ac_powered,
                charge_counter_uah=int(self._charge_mah * 1000),
            )

    def uptime(self) -> float:
        return time.monotonic() - self.boot_monotonic


# Thermal status (android.os.Temperature.THROTTLING_*) from a temperature and the
# sensor type's thresholds (LIGHT, MODERATE, SEVERE, CRITICAL, EMERGENCY, SHUTDOWN).
THRESHOLDS: dict[int, tuple[float, ...]] = {
    0: (70.0, 80.0, 88.0, 95.0, 100.0, 105.0),  # CPU / AP
    1: (70.0, 80.0, 88.0, 95.0, 100.0, 105.0),  # GPU
    2: (42.0, 45.0, 48.0, 52.0, 55.0, 60.0),  # BATTERY
    3: (39.0, 42.0, 45.0, 48.0, 52.0, 55.0),  # SKIN
    4: (45.0, 50.0, 55.0, 60.0, 65.0, 70.0),  # USB_PORT
    5: (60.0, 70.0, 80.0, 90.0, 95.0, 100.0),  # POWER_AMPLIFIER
}


def thermal_status(temp_c: float, sensor_type: int) -> int:
    thresholds = THRESHOLDS.get(sensor_type, THRESHOLDS[0])
    status = 0
    for index, limit in enumerate(thresholds, start=1):
        if temp_c >= limit:
            status = index
    return status
