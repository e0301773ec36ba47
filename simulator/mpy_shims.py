"""Stand-ins for MicroPython's ``machine``, ``micropython`` and ``time.ticks_*`` on CPython.

The firmware imports these exactly as on the card. Each simulated card runs its firmware in
its own thread and the stand-ins find that thread's board through a thread-local, so several
cards can share one process. ``time`` gets the MicroPython functions added (``ticks_ms`` and
friends); nothing of CPython's ``time`` is replaced.
"""

from __future__ import annotations

import sys
import threading
import time
import types

from .clock import CardReset

_local = threading.local()
_TICKS_PERIOD = 1 << 30  # MicroPython's ticks wrap at 2**30


def set_board(board) -> None:
    _local.board = board


def board():
    b = getattr(_local, "board", None)
    if b is None:
        raise RuntimeError("machine used outside a simulated card's thread")
    return b


def _ticks_ms() -> int:
    b = getattr(_local, "board", None)
    ms = b.clock.ms() if b is not None else time.monotonic() * 1000.0
    return int(ms) % _TICKS_PERIOD


def _ticks_us() -> int:
    b = getattr(_local, "board", None)
    ms = b.clock.ms() if b is not None else time.monotonic() * 1000.0
    return int(ms * 1000) % _TICKS_PERIOD


def _ticks_add(t: int, delta: int) -> int:
    return (t + delta) % _TICKS_PERIOD


def _ticks_diff(a: int, b: int) -> int:
    half = _TICKS_PERIOD // 2
    return ((a - b + half) % _TICKS_PERIOD) - half


def _sleep_ms(ms: int) -> None:
    b = getattr(_local, "board", None)
    if b is None:
        time.sleep(ms / 1000.0)
        return
    b.check_reset()
    b.clock.running()  # the loop ran: a stall since the last sleep is not the card's (clock.py)
    time.sleep(b.clock.real_seconds(ms))
    b.clock.running()


class Pin:
    IN = 0
    OUT = 1

    def __new__(cls, name, mode=-1, value=None):
        pin = board().pin(name)
        if mode == Pin.OUT and value is not None:
            pin.value(value)
        return pin


class ADC:
    def __new__(cls, pin):
        return board().adc(pin.name)


class I2S:
    RX = 0
    TX = 1
    MONO = 0
    STEREO = 1

    def __new__(cls, unit, *, sck=None, ws=None, sd=None, mode=0, bits=16, format=0, rate=8000, ibuf=0):
        return board().highway(unit, receive=mode == I2S.RX, bits=bits, stereo=format == I2S.STEREO, rate=rate)


class UART:
    def __new__(cls, unit, baudrate=115200, *, rxbuf=256, txbuf=256, **_kw):
        return board().uart.configure(baudrate, rxbuf, txbuf)


class WDT:
    def __new__(cls, id=0, timeout=5000):
        return board().watchdog(timeout)


class SPI:
    def __new__(cls, unit, baudrate=1000000, *, polarity=0, phase=0, **_kw):
        return board().spi_bus(unit)


# machine.reset_cause() values, as MicroPython numbers them
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def reset_cause() -> int:
    return board().reset_cause


def reset():
    raise CardReset("machine.reset()")


def unique_id() -> bytes:
    return board().uid


def _const(x):
    return x


def _identity(f):
    return f


def install() -> None:
    """Make ``import machine`` / ``import micropython`` and ``time.ticks_ms`` work on CPython."""
    machine = types.ModuleType("machine")
    for name, obj in {"Pin": Pin, "ADC": ADC, "I2S": I2S, "UART": UART, "WDT": WDT, "SPI": SPI, "reset": reset,
                      "reset_cause": reset_cause, "unique_id": unique_id, "PWRON_RESET": PWRON_RESET,
                      "HARD_RESET": HARD_RESET, "WDT_RESET": WDT_RESET, "DEEPSLEEP_RESET": DEEPSLEEP_RESET,
                      "SOFT_RESET": SOFT_RESET}.items():
        setattr(machine, name, obj)
    micropython = types.ModuleType("micropython")
    micropython.const = _const
    micropython.native = _identity
    micropython.viper = _identity
    sys.modules.setdefault("machine", machine)
    sys.modules.setdefault("micropython", micropython)
    for name, fn in {"ticks_ms": _ticks_ms, "ticks_us": _ticks_us, "ticks_add": _ticks_add,
                     "ticks_diff": _ticks_diff, "sleep_ms": _sleep_ms}.items():
        if not hasattr(time, name):
            setattr(time, name, fn)
