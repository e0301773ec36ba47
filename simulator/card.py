"""A simulated line card: the real firmware in a thread, wired to simulated lines and a UART."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from drivers.dsp import ALAW, ULAW
from firmware.card import bootmeta, wire
from firmware.card import image_header as ih
from firmware.card.bootmeta import Layout, Meta

from . import images, mpy_shims, spi_nor
from .clock import CardReset, SimClock
from .flash import PowerCut
from .pstn import SimAdc, SimLine, SimPin
from .serial_port import SimUart

log = logging.getLogger("simulator.card")
BOOT_MS = 300  # from reset to the firmware's first HELLO
WATCHDOG_MS = 2000  # firmware/card/app.py: a card whose firmware cannot start is reset after this
POWER_POLL_S = 0.01
CUT_POINTS = ("flash_op", "image_byte", "reboot", "trial")


class PowerLost(CardReset):
    """The card's power went: a cut (at a flash operation, a byte of an image, ...) or ``power off``."""
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


class _Peek:
    """The chip read without counting (for ``status``): the card's flash interface over its bytes."""

    def __init__(self, nor) -> None:
        self.nor, self.size, self.block_size, self.write_size = nor, nor.size, nor.block_size, nor.write_size

    def read(self, addr, n_or_buf):
        data = bytes(self.nor.data[addr:addr + (n_or_buf if isinstance(n_or_buf, int) else len(n_or_buf))])
        if isinstance(n_or_buf, int):
            return data
        n_or_buf[:] = data
        return n_or_buf


class SimCard:
    """The board the firmware runs on. ``machine`` stand-ins resolve to this object.

    Its flash is a W25Q16JV SPI NOR chip (``simulator/spi_nor.py``) kept in ``flash`` (a file; by
    default a new one in a temporary folder, removed at :meth:`stop`); a chip found erased gets
    the factory image built from this simulator's ``firmware/card`` in slot 0. Each boot runs the
    boot stage (``firmware/card/main.py`` ``start``) and then the code of the image in the slot it
    chose, found in the registry (``firmware_dir``, ``simulator/images.py``).
    """

    def __init__(self, *, channels: int = 8, baud: int = 921600, speed: float = 1.0, law: str = "ulaw",
                 country: str = "cn", port: int = 0, seed: int = 1, flash: str | Path | None = None,
                 firmware_dir: str | Path | None = None) -> None:
        mpy_shims.install()
        self._tmpdir = None
        if flash is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="branchnode-card-"))
            flash = self._tmpdir / "card.flash"
        self.flash_path = Path(flash)
        fresh = not self.flash_path.exists()
        self.nor = spi_nor.w25q16jv(str(self.flash_path))
        self.registry = images.Registry(Path(firmware_dir) if firmware_dir else None)
        if fresh or self.nor.data.count(0xFF) == self.nor.size:
            images.program_factory(self.nor, images.image(images.OWN_TREE))
        self.spi = spi_nor.SimSpiNor(self.nor, before_program=self._before_program, on_cut=self._flash_cut)
        self.layout = Layout(self.nor)
        self.powered = True
        self.reset_cause = mpy_shims.PWRON_RESET  # what machine.reset_cause() says this boot
        self._next_cause = mpy_shims.SOFT_RESET
        self.cut: dict | None = None  # the armed power cut ({"at": ..., "n": ...}), None: none
        self.last_cut: dict | None = None  # where the last one struck
        self.stage = "off"  # "boot" (the boot stage), "app" (a slot's code runs), "no code", "off"
        self.running_slot = -1
        self.running_tree: Path | None = None
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
        if name == "FLASH_CS":
            return self.spi  # the flash chip's select line
        p = self._pins.get(name)
        if p is None:
            kind, line = "", None
            for prefix, k in (("RING", "ring"), ("POL", "pol"), ("HOOK", "hook")):
                if name.startswith(prefix) and name[len(prefix):].isdigit():
                    kind, line = k, self.lines[int(name[len(prefix):])]
            p = self._pins[name] = SimPin(name, line, kind)
        return p

    def spi_bus(self, unit: int):
        if unit != 1:
            raise ValueError(f"SPI {unit}: the card's flash is on SPI 1 (nothing else is on an SPI bus)")
        return self.spi

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
        if not self.powered:
            raise PowerLost("power off")
        if self._reset.is_set():
            self._next_cause = mpy_shims.HARD_RESET
            raise CardReset("reset requested")
        if self._wdt is not None and self._wdt.expired():
            self._next_cause = mpy_shims.WDT_RESET
            raise CardReset("watchdog expired")

    # -- power ---------------------------------------------------------------------------------
    def power(self, on: bool) -> None:
        """Switch the card's power: off stops the firmware where it is (the flash keeps what it has)."""
        self.powered = on

    def arm_cut(self, at: str, n: int | None = None) -> dict:
        """Cut the power at a point to come (``CUT_POINTS``); -> what was armed."""
        if at not in CUT_POINTS:
            raise ValueError(f"cut at {at!r}: one of {', '.join(CUT_POINTS)}")
        self.nor.cut_at = self.nor.ops + n if at == "flash_op" else None
        self.cut = {"at": at, "n": n, "armed_at_op": self.nor.ops}
        return dict(self.cut)

    def clear_cut(self) -> None:
        self.cut = None
        self.nor.cut_at = None

    def _before_program(self, addr: int, n: int) -> None:
        # a page program is about to start: the cut "at byte K of the image" strikes in the one
        # that writes image byte K into a slot
        c = self.cut
        if c is None or c["at"] != "image_byte":
            return
        lay = self.layout
        for base in lay.slot_addr:
            if base <= addr < base + lay.slot_size and addr - base <= c["n"] < addr - base + n:
                self.nor.cut_at = self.nor.ops + 1

    def _flash_cut(self, cut: PowerCut) -> None:
        self.last_cut = {"at": self.cut["at"] if self.cut else "flash_op", "op": cut.op, "kind": cut.kind,
                         "addr": cut.addr, "stage": self.stage}
        self.cut = None
        self.powered = False
        raise PowerLost(str(cut))

    def _cut_now(self, at: str) -> None:
        self.last_cut = {"at": at, "op": None, "kind": None, "addr": None, "stage": self.stage}
        self.clear_cut()
        self.powered = False
        raise PowerLost(f"power cut {at}")

    def slots(self) -> dict:
        """What the card's flash says about its slots (read as the updater would, without counting)."""
        peek = _Peek(self.nor)
        meta = Meta(peek, Layout(peek))
        meta.load()
        out = []
        for s in (0, 1):
            h = images.slot_header(self.nor, s)
            out.append({"slot": s, "state": wire.SLOT_NAMES[meta.states[s]] if meta.valid else None,
                        "version": f"{h[ih.H_MAJOR]}.{h[ih.H_MINOR]}.{h[ih.H_PATCH]}" if h else None,
                        "security": h[ih.H_SECURITY] if h else None,
                        "sha256": h[ih.H_SHA256].hex() if h else None})
        return {"metadata": meta.valid, "active": meta.active if meta.valid else None,
                "boots_left": meta.boots_left if meta.valid else None, "security": meta.security,
                "last_revert": {"reason": wire.REV_NAMES[meta.last_reason] if meta.last_reason < len(wire.REV_NAMES)
                                else meta.last_reason,
                                "slot": None if meta.reverted_slot == 0xFF else meta.reverted_slot}
                if meta.valid and meta.last_reason != bootmeta.REV_NONE else None,
                "slots": out}

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
        self.nor.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _run(self) -> None:
        mpy_shims.set_board(self)
        # the boot stage: this simulator's own card code, the part an update never replaces
        from firmware.card import board, main  # imported here: needs the stand-ins installed

        while not self._stop.is_set():
            if not self.powered:
                self.stage = "off"
                self.firmware = None
                while not self.powered and not self._stop.is_set():
                    time.sleep(POWER_POLL_S)
                self.reset_cause = mpy_shims.PWRON_RESET
                continue
            self._reset.clear()
            self._wdt = None
            for p in self._pins.values():
                if p._kind == "hook":
                    p.value(0)  # relays fall back on-hook when the MCU resets
            self.spi.reset()
            self.boots += 1
            self._next_cause = mpy_shims.SOFT_RESET  # machine.reset(), unless told otherwise
            self.clock.pause_tracking()  # the boot's pause is not a stall of the firmware
            try:
                self._boot(board, main)
            except CardReset as exc:
                log.info("card reset: %s", exc)
                if self._stop.is_set():
                    return
                self.reset_cause = mpy_shims.PWRON_RESET if isinstance(exc, PowerLost) else self._next_cause
                self.uart.drop_connection()
                if self.powered:
                    time.sleep(self.clock.real_seconds(BOOT_MS))
            except Exception:  # a firmware bug: the real watchdog would reboot the card
                log.exception("firmware crashed; rebooting as the watchdog would")
                self.reset_cause = mpy_shims.WDT_RESET
                self.uart.drop_connection()
                time.sleep(self.clock.real_seconds(BOOT_MS))
            finally:
                images.unload(self._tag())

    def _tag(self) -> str:
        return f"{id(self):x}_{self.boots}"

    def _boot(self, board, main) -> None:
        self.stage = "boot"
        self.firmware = None
        self.running_slot, self.running_tree = -1, None
        reboot_cut = self.cut is not None and self.cut["at"] == "reboot"
        if reboot_cut:
            self.nor.cut_at = self.nor.ops + 1  # the boot stage's first flash operation
        hw = board.Hardware()
        up = main.start(hw)
        if reboot_cut:
            self._cut_now("reboot")  # the boot stage wrote nothing: the cut comes before the application
        slot = up.running
        self.running_slot = slot
        if slot < 0:
            tree = images.OWN_TREE  # no valid image: the card runs the code it has
        else:
            h = up.header(slot)
            tree = self.registry.find(h[ih.H_SHA256])
            if tree is None:
                self.stage = "no code"
                log.error("slot %d holds an image (payload sha256 %s) built from no source tree in the firmware "
                          "registry: the simulated card cannot run it; it resets as its watchdog would", slot,
                          h[ih.H_SHA256].hex())
                end = self.clock.ms() + WATCHDOG_MS
                while self.clock.ms() < end:
                    self.check_reset()
                    time.sleep(POWER_POLL_S)
                self._next_cause = mpy_shims.WDT_RESET
                raise CardReset("watchdog expired: no code for the running image")
        self.running_tree = tree
        app_main = images.load_main(tree, self._tag())
        if self.cut is not None and self.cut["at"] == "trial" and up.state(slot) == bootmeta.TRIAL:
            self.nor.cut_at = self.nor.ops + 1  # the trial's first flash operation: its confirm
        self.firmware = app_main.app(hw, up, channels=self.channels, law_ulaw=self.law_ulaw, baud=self.baud)
        self.stage = "app"
        self.firmware.run()
