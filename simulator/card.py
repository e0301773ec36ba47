"""A simulated line card: the real firmware in a thread, wired to simulated lines and a UART."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from drivers.dsp import ALAW, ULAW

from . import mpy_shims
from .clock import CardReset, SimClock
from .pstn import SimAdc, SimLine, SimPin
from .serial_port import SimUart

log = logging.getLogger("simulator.card")
BOOT_MS = 300  # from reset to the firmware's first HELLO
# Time slot s of the PCM highway is byte SLOT_BYTE[s] of each 8-byte frame: I2S sends a 32-bit word
# most significant byte first, and MicroPython's buffers hold the words little-endian.
SLOT_BYTE = (3, 2, 1, 0, 7, 6, 5, 4)


class SimHighway:
    """One direction of the card's PCM highway (docs/card-hardware.md): 8 kHz frames of one G.711
    octet per line, line n in time slot n."""

    def __init__(self, lines: list[SimLine], receive: bool) -> None:
        self._lines = lines
        self._receive = receive
        self._idle = [int(ln.codec.encode(np.zeros(1, dtype=np.int16))[0]) for ln in lines]

    def readinto(self, buf) -> int:
        frames = np.frombuffer(buf, dtype=np.uint8).reshape(-1, 8)  # a view: writes land in buf
        for ch, line in enumerate(self._lines):
            col = frames[:, SLOT_BYTE[ch]]
            if line.offhook or line.cid_audio is not None:
                col[:] = np.frombuffer(line.capture(), dtype=np.uint8)
            else:
                col[:] = self._idle[ch]  # on-hook with no caller ID coming: only the idle code
        return len(buf)

    def write(self, buf) -> int:
        frames = np.frombuffer(bytes(buf), dtype=np.uint8).reshape(-1, 8)
        for ch, line in enumerate(self._lines):
            if line.offhook:  # on-hook, the line-interface chip is not connected to the line
                line.playback(frames[:, SLOT_BYTE[ch]].tobytes())
        return len(buf)


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

    def highway(self, unit: int, *, receive: bool, bits: int, stereo: bool, rate: int) -> SimHighway:
        if (bits, stereo, rate) != (32, True, 8000):
            raise ValueError(f"I2S unit {unit}: the PCM highway runs 8 kHz stereo 32-bit frames "
                             f"(8 slots of 8 bits), not {rate} Hz {'stereo' if stereo else 'mono'} {bits}-bit")
        return SimHighway(self.lines, receive)

    def led(self, ch: int) -> bool:
        """Whether line ``ch``'s LED is lit (as the firmware last drove its pin)."""
        p = self._pins.get(f"LED{ch}")
        return bool(p is not None and p.value())

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
            self.clock.pause_tracking()  # the boot's pause is not a stall of the firmware
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
