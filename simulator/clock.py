"""The simulated card's clock: real time scaled by a speed factor (1 = real time).

A card's MCU runs its main loop without pause; the simulator's firmware thread is a CPython
thread on a shared machine and can go tens of milliseconds without running (another process on
the core, the GIL, a garbage collection). Left alone, the card's clock would run on meanwhile and
the firmware would wake up late for several 20 ms turns at once: silence the node never caused.
So the firmware thread reports each time it runs (``running()``), and a gap longer than
``stall_ms`` of card time is taken out of the clock: the card's time stands still while its
thread cannot run, exactly as if the MCU had been frozen. Every stall taken out is counted
(``stalls``, ``absorbed_ms``, ``longest_stall_ms``: the simulator's status reports them), so a test
can tell the simulator's pauses from the node's. The node's own stalls are not hidden: the card's
clock runs on while the node does not answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class CardReset(BaseException):
    """Raised inside the firmware thread to reboot the simulated card (like a reset line)."""


@dataclass
class SimClock:
    speed: float = 1.0
    stall_ms: float = 20.0  # card ms: one 20 ms frame late is the card's own business, more a stall
    monotonic: Callable[[], float] = time.monotonic
    _t0: float = field(init=False)
    _absorbed_s: float = field(init=False, default=0.0)  # real seconds taken out
    _last_run: float | None = field(init=False, default=None)
    _last_ms: float = field(init=False, default=0.0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    stalls: int = field(init=False, default=0)
    longest_stall_ms: float = field(init=False, default=0.0)  # card ms the longest one lasted

    def __post_init__(self) -> None:
        self._t0 = self.monotonic()

    def ms(self) -> float:
        """Card time in ms. Never goes back, also for a reader that looked during a stall."""
        with self._lock:
            now = (self.monotonic() - self._t0 - self._absorbed_s) * 1000.0 * self.speed
            if now < self._last_ms:
                return self._last_ms
            self._last_ms = now
            return now

    def real_seconds(self, card_ms: float) -> float:
        return card_ms / 1000.0 / self.speed

    def running(self) -> None:
        """Called by the firmware thread each time round its loop: take out a stall since the last."""
        now = self.monotonic()
        with self._lock:
            last, self._last_run = self._last_run, now
            if last is None:
                return
            gap_ms = (now - last) * 1000.0 * self.speed
            if gap_ms <= self.stall_ms:
                return
            self._absorbed_s += (gap_ms - self.stall_ms) / 1000.0 / self.speed
            self.stalls += 1
            self.longest_stall_ms = max(self.longest_stall_ms, round(gap_ms, 1))

    def pause_tracking(self) -> None:
        """The firmware stopped on purpose (a reset, a boot): the next run is not after a stall."""
        with self._lock:
            self._last_run = None

    @property
    def absorbed_ms(self) -> float:
        return round(self._absorbed_s * 1000.0 * self.speed, 1)
