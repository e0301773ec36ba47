"""An in-process line card that runs the card's REAL updater (``firmware.card.updater`` and
``image_rx``, under CPython as the simulator runs them) on the simulator's NOR flash model, behind
a serial link paced at the baud rate (8N1: a frame arrives when its last byte would have).

It plugs into :class:`drivers.linecard.LineCardLink` as its transport factory (``transport=``),
so the host's code takes its real path down to the bytes. It models what the flash transfer
depends on: the card serves one ``IMAGE`` frame per pass of its main loop (1 ms), never in the
5 ms before an audio tick; it answers SYNC with HELLO, acknowledges commands, sends STATUS every
250 ms and, on an off-hook line, audio up 50 times a second (it records the audio it receives);
``RESET`` reboots it through ``Updater.boot()``, and a trial image confirms itself at the host's
first frame after boot (its self-test; ``self_test_frames`` later), or reverts when ``self_test_passes`` is False. Faults: power cuts at
a flash operation or a byte of the transfer, an unplugged cable, chunks damaged on the way.

Used by the flash tests (tests/drivers/test_flasher.py, tests/node/test_cli_flash.py) and by
``make bench``; it lives here because bench may not import tests.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.linecard import TransportError
from firmware.card import image_header as ih
from firmware.card import wire
from firmware.card.bootmeta import PENDING
from firmware.card.image_rx import ImageReceiver
from firmware.card.updater import Updater
from simulator.flash import NorFlash, PowerCut

BOARD = b"BNLC-8FX"
PASS_S = 0.001  # one pass of the card's main loop (it sleeps 1 ms)
TICK_S = wire.FRAME_MS / 1000
SLACK_S = 0.005  # app.IMAGE_SLACK_MS: no image frame this close to the next audio tick
STATUS_S = 0.25


def new_flash(blocks: int = 64, block_size: int = 4096, write_size: int = 8) -> NorFlash:
    """An erased chip: 64 blocks of 4 KiB (two 120 KiB slots), as a small SPI NOR."""
    return NorFlash(blocks * block_size, block_size, write_size)


def program(flash: NorFlash, image: bytes, slot: int = 0) -> None:
    """What the factory does: the image (header + payload) written raw into a slot, no metadata;
    the card's first boot confirms it."""
    lay = Updater(flash, BOARD).layout
    base = lay.slot_addr[slot]
    for b in range((len(image) + lay.block_size - 1) // lay.block_size):
        flash.erase(base // lay.block_size + b)
    flash.write(base, image + b"\xff" * (-len(image) % flash.write_size))


@dataclass
class CardCounters:
    boots: int = 0
    power_cuts: int = 0
    chunk_frames: int = 0  # CHUNK frames the card took in
    damaged: int = 0  # of those, damaged on the way by `corrupt`
    audio_down: list[tuple[float, int, int]] = field(default_factory=list)  # (time, line, seq) as received
    resets: list[int] = field(default_factory=list)  # at each RESET done: off-hook bits | ringing bits << 8
    busy_resets: int = 0  # RESET_IF_IDLE commands refused because a line was in use


class UpdaterCard:
    def __init__(self, flash: NorFlash | None = None, *, board: bytes = BOARD, channels: int = 2,
                 baud: int | None = 921600, self_test_passes: bool | None = True, self_test_frames: int = 1,
                 boot_s: float = 0.05) -> None:
        self.flash = flash or new_flash()
        self.board = board
        self.channels = channels
        self.rate = baud / 10 if baud else None  # bytes a second each way; None: unpaced
        self.self_test_passes = self_test_passes  # None: a trial's self-test never ends (no confirm, no revert)
        self.self_test_frames = self_test_frames  # a trial's self-test ends at the host's Nth frame after boot
        self.boot_s = boot_s
        self.counters = CardCounters()
        self.corrupt: dict[int, int] = {}  # chunk offset -> how many more copies of it arrive damaged
        self.unplugged = False  # the host cannot open the port
        self.offhook = 0  # line bits; HOOK commands set them too
        self.ringing = 0  # line bits
        self.copies = 1
        self.boot_id = 0x100
        self._cut_at_byte: int | None = None
        self._unplug_at: tuple[int, float] | None = None
        self.on_pending: Callable[[], None] | None = None  # called (in the loop) when a slot turns pending
        self._port: _Port | None = None
        self.updater: Updater | None = None
        self.image_rx: ImageReceiver | None = None
        self.powered = False
        self._power_on()

    # -- what a test looks at ---------------------------------------------------------------------
    @property
    def layout(self):
        return Updater(self.flash, self.board).layout if self.updater is None else self.updater.layout

    def slot_bytes(self, slot: int, n: int | None = None) -> bytes:
        lay = self.layout
        return self.flash.read(lay.slot_addr[slot], lay.slot_size if n is None else n)

    def contents(self) -> bytes:
        """The whole chip, metadata and journal included."""
        return bytes(self.flash.data)

    # -- faults ------------------------------------------------------------------------------------
    def cut_power_at_byte(self, offset: int) -> None:
        """Cut the power at the first flash operation after the card has image bytes up to ``offset``."""
        self._cut_at_byte = offset

    def unplug_at_byte(self, offset: int, for_s: float) -> None:
        """Pull the cable once the card has image bytes up to ``offset``, for ``for_s`` seconds."""
        self._unplug_at = (offset, for_s)

    def unplug(self) -> None:
        """Pull the cable: the host's port is lost and cannot be opened until :meth:`plug`."""
        self.unplugged = True
        if self._port is not None:
            self._port.lost("the card's port went away (unplugged)")

    def plug(self) -> None:
        self.unplugged = False

    # -- the transport factory -------------------------------------------------------------------
    def transport(self, url, baud, loop, on_bytes, on_lost) -> _Port:
        if self.unplugged:
            raise TransportError(f"cannot open card port {url}: no such device (unplugged)")
        if self._port is not None:
            self._port.close()
        self._port = _Port(self, loop, on_bytes, on_lost)
        return self._port

    # -- the card ----------------------------------------------------------------------------------
    def _power_on(self) -> None:
        self.counters.boots += 1
        self.boot_id = (self.boot_id * 75 + 74) & 0xFFFF or 1
        self.frames_since_boot = 0
        try:
            self.updater = Updater(self.flash, self.board)
            self.updater.boot(watchdog_reset=False)
        except PowerCut:
            self._power_cut()
            return
        self.image_rx = ImageReceiver(self.updater, self._send)
        self.powered = True
        if self._port is not None:
            self._port.started()
            self.hello()

    def _power_cut(self) -> None:
        self.counters.power_cuts += 1
        self.powered = False
        self.updater = self.image_rx = None
        if self._port is not None:
            self._port.stopped()
            self._port.loop.call_later(self.boot_s, self._power_on)
        else:
            self._power_on()

    def reboot(self) -> None:
        self.powered = False
        self.updater = self.image_rx = None
        if self._port is not None:
            self._port.stopped()
            self._port.loop.call_later(self.boot_s, self._power_on)
        else:
            self._power_on()

    def _send(self, ftype: int, ch: int, seq: int, body) -> None:
        if self._port is not None and self.powered:
            self._port.up(bytes(wire.encode(ftype, ch, seq, bytes(body))))

    def version(self) -> tuple[int, int, int]:
        up = self.updater
        h = up.header(up.running) if up is not None and up.running >= 0 else None
        return (h[ih.H_MAJOR], h[ih.H_MINOR], h[ih.H_PATCH]) if h else (0, 0, 0)

    def hello(self) -> None:
        self._send(wire.T_HELLO, wire.BROADCAST, 0, struct.pack(
            wire.HELLO, wire.PROTO_VERSION, *self.version(), self.channels, wire.LAW_ULAW, 0, self.boot_id, self.board))

    def status(self) -> None:
        self._send(wire.T_STATUS, wire.BROADCAST, 0, struct.pack(wire.STATUS, 0, self.offhook, self.ringing, self.copies))

    def frame(self, ftype: int, ch: int, seq: int, body: bytes) -> None:
        if not self.powered:
            return
        if self.frames_since_boot < self.self_test_frames:  # the link is up: the self-test runs
            self.frames_since_boot += 1
            if self.frames_since_boot == self.self_test_frames:
                self._self_test()
                if not self.powered:
                    return
        if ftype == wire.T_SYNC:
            self.hello()
        elif ftype == wire.T_CMD:
            op, a1, _a2 = struct.unpack(wire.CMD, body[:wire.CMD_LEN])
            if op == wire.OP_RESET and a1 == wire.RESET_IF_IDLE and self.offhook | self.ringing:
                self.counters.busy_resets += 1
                self._send(wire.T_ACK, wire.BROADCAST, seq, struct.pack(wire.ACK, wire.ST_BUSY))
                return
            self._send(wire.T_ACK, wire.BROADCAST, seq, struct.pack(wire.ACK, wire.ST_OK))
            if op == wire.OP_HOOK and ch < self.channels:
                self.offhook = self.offhook | (1 << ch) if a1 else self.offhook & ~(1 << ch)
            elif op == wire.OP_REDUNDANCY:
                self.copies = a1
            elif op == wire.OP_RESET:
                self.counters.resets.append(self.offhook | self.ringing << 8)
                self._port.after_sent(self.reboot)  # the ACK goes out first, as on the card
        elif ftype == wire.T_IMAGE:
            op, offset = struct.unpack_from("<BI", body)
            if op == wire.IMG_CHUNK:
                self.counters.chunk_frames += 1
                if self.corrupt.get(offset, 0) > 0:  # damaged in the card's buffer: its CRC no longer matches
                    self.corrupt[offset] -= 1
                    self.counters.damaged += 1
                    body = body[:wire.IMAGE_LEN] + bytes([body[wire.IMAGE_LEN] ^ 0x40]) + body[wire.IMAGE_LEN + 1:]
            self.image_rx.take(seq, body)
            self._port.kick()
        elif ftype == wire.T_AUDIO:
            self.counters.audio_down.append((time.monotonic(), ch, seq))

    def _self_test(self) -> None:
        # the new firmware's self-test: link up with the host; the codecs answer here
        up = self.updater
        if up.running < 0 or up.state(up.running) != wire.SLOT_TRIAL or self.self_test_passes is None:
            return
        try:
            if self.self_test_passes:
                up.confirm()
            else:
                up.reject()
                self._port.after_sent(self.reboot)
        except PowerCut:
            self._power_cut()

    def serve(self) -> None:
        """One pass of the card's main loop for the image receiver."""
        rx = self.image_rx
        if rx is None or not rx.waiting():
            return
        if self._cut_at_byte is not None and self.updater.next_offset >= self._cut_at_byte:
            self._cut_at_byte = None
            self.flash.cut_at = self.flash.ops + 1
        try:
            rx.service()
        except PowerCut:
            self._power_cut()
            return
        up = self.updater
        if self._unplug_at is not None and up.next_offset >= self._unplug_at[0]:
            for_s = self._unplug_at[1]
            self._unplug_at = None
            self.unplug()
            asyncio.get_running_loop().call_later(for_s, self.plug)
        if self.on_pending is not None and PENDING in (up.state(0), up.state(1)):
            self.on_pending()
            self.on_pending = None


class _Port:
    """The link's transport: bytes each way at the baud rate, the card's main loop on the host's loop."""

    def __init__(self, card: UpdaterCard, loop: asyncio.AbstractEventLoop, on_bytes, on_lost) -> None:
        self.card, self.loop, self.on_bytes, self.on_lost = card, loop, on_bytes, on_lost
        self.deframer = wire.Deframer()
        self.closed = False
        self.down_free = self.up_free = 0.0  # when each direction's wire is free again (loop time)
        self.t0 = loop.time()
        self.last_pass = 0.0
        self.pass_handle: asyncio.TimerHandle | None = None
        self.tasks: list[asyncio.Task] = []
        if card.powered:
            self.started()

    def _at(self, free: float, n: int) -> float:
        rate = self.card.rate
        return max(self.loop.time(), free) + (n / rate if rate else 0.0)

    def write(self, data: bytes) -> None:  # host -> card
        if self.closed:
            return
        self.down_free = self._at(self.down_free, len(data))
        self.loop.call_at(self.down_free, self._arrive, data)

    def _arrive(self, data: bytes) -> None:
        if self.closed:
            return
        for code, ftype, ch, seq, body in self.deframer.feed(data):
            if code == wire.OK:
                self.card.frame(ftype, ch, seq, body)

    def up(self, frame: bytes) -> None:  # card -> host
        if self.closed:
            return
        self.up_free = self._at(self.up_free, len(frame))
        self.loop.call_at(self.up_free, lambda: None if self.closed else self.on_bytes(frame))

    def after_sent(self, fn) -> None:
        self.loop.call_at(self.up_free + 0.001, fn)

    def kick(self) -> None:
        """Schedule the next main-loop pass that may serve an image frame."""
        if self.pass_handle is not None or self.closed:
            return
        t = max(self.loop.time(), self.last_pass + PASS_S)
        phase = (t - self.t0) % TICK_S
        if phase > TICK_S - SLACK_S:  # too close to the audio tick: after it
            t += TICK_S - phase
        self.pass_handle = self.loop.call_at(t, self._pass)

    def _pass(self) -> None:
        self.pass_handle = None
        now = self.loop.time()
        # passes the card made while this loop was busy elsewhere (it is another processor)
        n = max(1, min(4, int((now - self.last_pass) / PASS_S)))
        self.last_pass = now
        for _ in range(n):
            self.card.serve()
        rx = self.card.image_rx
        if rx is not None and rx.waiting():
            self.kick()

    def started(self) -> None:
        self.tasks = [self.loop.create_task(self._status()), self.loop.create_task(self._audio())]

    def stopped(self) -> None:
        for t in self.tasks:
            t.cancel()
        self.tasks = []
        self.deframer = wire.Deframer()

    async def _status(self) -> None:
        while True:
            self.card.status()
            await asyncio.sleep(STATUS_S)  # the card's own period

    async def _audio(self) -> None:
        seq = 0
        payload = b"\xff\xff" + bytes(160)
        while True:
            await asyncio.sleep(TICK_S)  # one 20 ms frame per off-hook line
            for ch in range(self.card.channels):
                if self.card.offhook >> ch & 1:
                    for _ in range(self.card.copies):
                        self.card._send(wire.T_AUDIO, ch, seq, payload)
            seq = (seq + 1) & 0xFFFF

    def lost(self, why: str) -> None:
        if not self.closed:
            self.close()
            self.loop.call_soon(self.on_lost, why)

    def close(self) -> None:
        self.closed = True
        self.stopped()
        if self.pass_handle is not None:
            self.pass_handle.cancel()
            self.pass_handle = None
        if self.card._port is self:
            self.card._port = None
