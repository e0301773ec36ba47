"""The simulated card's clock: scaled real time that stands still while the firmware cannot run."""

from __future__ import annotations

import pytest

from simulator.clock import SimClock


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_card_time_is_real_time_times_the_speed():
    t = FakeTime()
    clock = SimClock(speed=2.0, monotonic=t)
    t.t += 0.5
    assert clock.ms() == pytest.approx(1000.0)
    assert clock.real_seconds(1000) == 0.5


def test_a_stall_of_the_firmware_thread_is_taken_out_beyond_one_frame():
    t = FakeTime()
    clock = SimClock(speed=2.0, monotonic=t)
    clock.running()
    t.t += 0.004  # 8 card ms between rounds: normal
    clock.running()
    assert clock.stalls == 0
    t.t += 0.060  # 120 card ms without running: 100 of them are taken out
    assert clock.ms() == pytest.approx(128.0)  # a reader during the stall sees time run on ...
    clock.running()
    assert clock.stalls == 1 and clock.longest_stall_ms == 120.0
    assert clock.absorbed_ms == 100.0
    assert clock.ms() == pytest.approx(128.0)  # ... and then time stands still until it has caught up: never back
    t.t += 0.010
    assert clock.ms() == pytest.approx(128.0)  # 148 - 100 = 48 < 128
    t.t += 0.045
    assert clock.ms() == pytest.approx(138.0)  # (0.119 s * 2000) - 100


def test_a_deliberate_pause_is_not_a_stall():
    t = FakeTime()
    clock = SimClock(speed=1.0, monotonic=t)
    clock.running()
    clock.pause_tracking()  # a reboot
    t.t += 1.0
    clock.running()
    assert clock.stalls == 0 and clock.ms() == pytest.approx(1000.0)
