"""The simulated card's clock: real time scaled by a speed factor (1 = real time)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


class CardReset(BaseException):
    """Raised inside the firmware thread to reboot the simulated card (like a reset line)."""


@dataclass
class SimClock:
    speed: float = 1.0
    _t0: float = field(default_factory=time.monotonic)

    def ms(self) -> float:
        return (time.monotonic() - self._t0) * 1000.0 * self.speed

    def real_seconds(self, card_ms: float) -> float:
        return card_ms / 1000.0 / self.speed
