"""The heat model's time scale: a phone that heats and cools N times faster than real time."""

from __future__ import annotations

import pytest
from virtual_android.model import heat
from virtual_android.model.heat import POLICIES, PhoneModel


class Clock:
    """time.monotonic for the model, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(heat.time, "monotonic", c)
    return c


def test_work_heats_a_scaled_phone_as_that_much_longer_work_would(clock: Clock) -> None:
    real, fast = PhoneModel(), PhoneModel()
    fast.heat_time_scale = 30.0
    real.add_work(60.0, 1.0)
    fast.add_work(2.0, 1.0)
    assert fast.temperatures() == pytest.approx(real.temperatures())
    # Both are hot enough that the prime core's cap comes down, as a throttled phone's does.
    prime = POLICIES[-1]
    assert fast.max_freq(prime) == real.max_freq(prime) < prime.max_khz


def test_a_scaled_phone_cools_that_many_times_faster(clock: Clock) -> None:
    real, fast = PhoneModel(), PhoneModel()
    fast.heat_time_scale = 10.0
    for m in (real, fast):
        m.add_work(120.0 / m.heat_time_scale, 1.0)
    clock.now += 3.0
    fast_temps = fast.temperatures()
    clock.now += 27.0
    assert fast_temps == pytest.approx(real.temperatures())


def test_the_scale_leaves_load_and_battery_on_real_time(clock: Clock) -> None:
    real, fast = PhoneModel(), PhoneModel()
    fast.heat_time_scale = 50.0
    for m in (real, fast):
        m.add_work(1.0, 1.0)
    clock.now += 1.0
    assert fast.load() == pytest.approx(real.load())
    assert fast.battery().charge_counter_uah == real.battery().charge_counter_uah
