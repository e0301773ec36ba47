"""A simulated line card: the real firmware in a thread, wired to simulated lines and a UART."""

from __future__ import annotations

import logging
import threading
import time

from drivers.dsp import ALAW, ULAW

from . import mpy_shims
from .clock import CardReset, SimClock
from .pstn import SimAdc, SimLine, SimPcm, SimPin
from .serial_port import SimUart

log = logging.getLogger("simulator.card")
BOOT_MS = 300  # from reset to the firmware's first HELLO


class SimWatchdog:
    def __init__(self, card: SimCard, timeout_ms: int) -> None:
        self.card = card
        self.timeout_ms = timeout_ms
        self.last = card.clock.ms()

    def feed(self) -> None:
        self.last = self.card.clock.ms()

    def expired(self) -> bool:
        return self.card.clock.ms() - self.last > self.timeout_ms


class SimCard:
    """The board the firmware runs on. ``machine`` stand-ins resolve to this object."""

    def __init__(self, *, channels: int = 8, baud: int = 921600, speed: float = 1.0, law: str = "ulaw",
                 country: str = "cn", port: int = 0, seed: int = 1) -> None:
        mpy_shims.install()
        self.channels = channels
        self.baud = baud
        self.law_ulaw = law == "ulaw"
        self.clock = SimClock(speed)
        self.uid = bytes([0xB1, 0x0C, 0x42, seed & 0xFF])
        self.uart = SimUart(self.clock, baud, port=port, seed=seed)
        self.lines = [SimLine(ch, self.clock, ULAW if self.law_ulaw else ALAW, country) for ch in range(channels)]
        self._pins: dict[str, SimPin] = {}
        self._reset = threading.Event()
        self._stop = threading.Event()
        self._wdt: SimWatchdog | None = None
        self.boots = 0
        self.firmware = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="card-firmware")

    # -- what machine.* returns --------------------------------------------------------------
    def pin(self, name: str) -> SimPin:
        p = self._pins.get(name)
        if p is None:
            kind, line = "", None
            for prefix, k in (("RING", "ring"), ("POL", "pol"), ("HOOK", "hook")):
                if name.startswith(prefix) and name[len(prefix):].isdigit():
                    kind, line = k, self.lines[int(name[len(prefix):])]
            p = self._pins[name] = SimPin(name, line, kind)
        return p

    def adc(self, name: str) -> SimAdc:
        return SimAdc(self.lines[int(name[len("LOOP"):])])

    def pcm(self, ch: int, receive: bool) -> SimPcm:
        return SimPcm(self.lines[ch], receive)

    def watchdog(self, timeout_ms: int) -> SimWatchdog:
        self._wdt = SimWatchdog(self, timeout_ms)
        return self._wdt

    def check_reset(self) -> None:
        if self._stop.is_set():
            raise CardReset("simulator stopping")
        if self._reset.is_set():
            raise CardReset("reset requested")
        if self._wdt is not None and self._wdt.expired():
            raise CardReset("watchdog expired")

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.uart.url

    def start(self) -> SimCard:
        self._thread.start()
        return self

    def reset(self) -> None:
        """Pull the reset line: the firmware restarts, the hook relays drop, USB re-enumerates."""
        self._reset.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.uart.close()

    def _run(self) -> None:
        mpy_shims.set_board(self)
        from firmware.card.app import Card  # imported here: needs the stand-ins installed

        while not self._stop.is_set():
            self._reset.clear()
            self._wdt = None
            for p in self._pins.values():
                if p._kind == "hook":
                    p.value(0)  # relays fall back on-hook when the MCU resets
            self.boots += 1
            try:
                self.firmware = Card(channels=self.channels, law_ulaw=self.law_ulaw, baud=self.baud)
                self.firmware.run()
            except CardReset as exc:
                log.info("card reset: %s", exc)
                if self._stop.is_set():
                    return
                self.uart.drop_connection()
                time.sleep(self.clock.real_seconds(BOOT_MS))
            except Exception:  # a firmware bug: the real watchdog would reboot the card
                log.exception("firmware crashed; rebooting as the watchdog would")
                self.uart.drop_connection()
                time.sleep(self.clock.real_seconds(BOOT_MS))
