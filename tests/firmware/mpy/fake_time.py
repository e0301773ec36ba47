# A settable clock for the card code on the MicroPython VM: installed as the `time` module, so the
# card's time.ticks_ms() is what a check says it is (MicroPython's ticks wrap at 2**30).
import sys

_PERIOD = 1 << 30
_HALF = 1 << 29


class Clock:
    def __init__(self):
        self.ms = 0

    def ticks_ms(self):
        return self.ms

    def ticks_us(self):
        return (self.ms * 1000) % _PERIOD

    def ticks_add(self, t, delta):
        return (t + delta) % _PERIOD

    def ticks_diff(self, a, b):
        return ((a - b + _HALF) % _PERIOD) - _HALF

    def sleep_ms(self, ms):
        self.advance(ms)

    def advance(self, ms):
        self.ms = (self.ms + ms) % _PERIOD

    def set(self, ms):
        self.ms = ms % _PERIOD


clock = Clock()


def install():
    sys.modules["time"] = clock
