"""The line card backend of the HAL: the serial link plus a DSP chain per line.

Per line, audio from the card is put back in order (and lost frames concealed), echo-cancelled
against what the card reports it played in the same 20 ms, and fed to the DTMF receiver and the
busy-tone detector while off-hook, or to the caller ID receivers while on-hook. One frame goes
back to the card for each frame that arrives, so the card's clock paces both directions.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

import numpy as np

from drivers.dsp import (
    ALAW,
    G711,
    ULAW,
    CallerIdReceiver,
    DtmfGenerator,
    DtmfReceiver,
    EchoCanceller,
    LossConcealer,
    ToneDetector,
    call_progress,
)
from drivers.linecard import CardEvent, Hello, LineCardLink, LinkListener, Status
from firmware.card import wire

from . import events as ev
from .audio import SILENCE, AudioPort
from .line import Board, Identity, Line

log = logging.getLogger("hal.linecard")

RESYNC_AFTER = 50  # a sequence jump this large is a restarted stream, not a loss
FRAME_WIRE_BYTES = 175  # one audio frame on the wire, COBS and delimiter included


@dataclass
class LineCounters:
    frames: int = 0
    lost: int = 0
    late: int = 0
    longest_gap: int = 0
    gaps: int = 0
    digits: int = 0


class LineCardLine(Line):
    def __init__(self, board: LineCardBoard, channel: int) -> None:
        self.board = board
        self.channel = channel
        self.number = channel + 1
        self.audio = AudioPort()
        self.counters = LineCounters()
        self._events: asyncio.Queue[ev.LineEvent] = asyncio.Queue()
        self._offhook = False
        self._claimed = False
        self._waiters: dict[int, asyncio.Future] = {}
        self._codec = G711(ULAW)
        self._tx_seq = 0
        self._tx_hist: dict[int, np.ndarray] = {}
        self._tx_recent: deque[tuple[int, bytes]] = deque(maxlen=2)
        self._next: int | None = None
        self._rx_high: int | None = None
        self._held: dict[int, tuple[int, bytes]] = {}
        self._gap_run = 0
        self._cid_seen = False
        self._busy_reported = False
        self.set_law(ULAW)
        self._reset_dsp()

    # -- the Line interface --------------------------------------------------------------------
    @property
    def offhook(self) -> bool:
        return self._offhook

    async def events(self) -> AsyncIterator[ev.LineEvent]:
        while True:
            yield await self._events.get()

    async def next_event(self, timeout: float | None = None) -> ev.LineEvent | None:
        try:
            return await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return None

    async def answer(self) -> None:
        self._reset_dsp()
        self._claimed = True  # counted as streaming from now on, so lines answered together share the budget
        try:
            await self.board.update_copies()
            # off-hook for our audio path before the card acknowledges: its first frames may
            # already carry a key the caller pressed the moment the line was answered
            self._offhook = True
            await self.board.link.command(self.channel, wire.OP_HOOK, 1)
        except BaseException:
            self._offhook = False
            raise
        finally:
            self._claimed = False

    async def hangup(self) -> None:
        self._offhook = False
        self.audio.reset()
        await self.board.link.command(self.channel, wire.OP_HOOK, 0)
        await self.board.update_copies()

    async def dial(self, digits: str, mode: str = "dtmf") -> None:
        if mode == "pulse":
            if not digits.isdigit() or len(digits) > wire.MAX_DIGITS:
                raise ValueError(f"pulse dialling takes up to {wire.MAX_DIGITS} digits 0-9, not {digits!r}")
            done = self._expect(wire.EV_DIAL_DONE)
            await self.board.link.command(self.channel, wire.OP_PULSE_DIAL, 0, 0, digits.encode())
            await asyncio.wait_for(done, 2.0 + 1.2 * len(digits))
        elif mode == "dtmf":
            gen = DtmfGenerator(level_dbm0=-8, on_ms=80, off_ms=80)
            gen.put(digits)
            self.audio.write(gen.read(len(digits) * 160 * 8))
            await self.audio.drained()
        else:
            raise ValueError(f"unknown dial mode {mode!r}: use 'dtmf' or 'pulse'")

    async def flash(self, ms: int = 100) -> None:
        done = self._expect(wire.EV_FLASH_DONE)
        await self.board.link.command(self.channel, wire.OP_FLASH, ms)
        await asyncio.wait_for(done, ms / 1000 + 2.0)

    async def set_gains(self, rx_db: float, tx_db: float) -> None:
        await self.board.link.command(self.channel, wire.OP_GAIN, int(round(rx_db * 10)), int(round(tx_db * 10)))

    async def _release(self) -> None:
        try:
            await self.board.link.command(self.channel, wire.OP_HOOK, 0)
        except ConnectionError as exc:
            log.warning("line %d: could not release: %s", self.number, exc)

    def _expect(self, code: int) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiters[code] = fut
        return fut

    # -- DSP state -----------------------------------------------------------------------------
    def set_law(self, law: int) -> None:
        self._codec = G711(law)
        self._silence_octets = self._codec.silence()

    def _reset_dsp(self) -> None:
        cfg = self.board.config
        self._dtmf = DtmfReceiver()
        self._busy = ToneDetector({name: call_progress(name, cfg.country) for name in ("busy", "congestion")})
        self._ec = EchoCanceller() if cfg.echo_cancel else None
        self._plc = LossConcealer()
        self._cid = [CallerIdReceiver(m) for m in cfg.cid_modes]
        self._cid_seen = False
        self._busy_reported = False
        self._tx_hist.clear()
        self._tx_recent.clear()

    def _resync(self) -> None:
        self._rx_high = None
        self._next = None
        self._held.clear()
        self._gap_run = 0

    def _emit(self, event: ev.LineEvent) -> None:
        self._events.put_nowait(event)

    # -- from the card -------------------------------------------------------------------------
    def on_audio(self, seq: int, echo_ref: int, payload: bytes) -> None:
        if self._next is None:
            self._next = seq
        d = wire.seq_diff(seq, self._next)
        if d < 0 or abs(d) > RESYNC_AFTER:
            if abs(d) > RESYNC_AFTER:
                self._resync()
                self._next = seq
            else:
                self.counters.late += 1  # a redundant copy of a frame already handled
                return
        if seq in self._held:
            return
        # pace what we send by the card's clock as soon as a new frame shows it ticked, before
        # any wait for a missing frame's copies (that wait would starve the card's playout)
        if self._rx_high is None:
            self._rx_high = (seq - 1) & 0xFFFF
        ticks = wire.seq_diff(seq, self._rx_high)
        if ticks > 0:
            self._rx_high = seq
            if self._offhook:
                for _ in range(min(ticks, 4)):
                    self._send_one()
        self._held[seq] = (echo_ref, payload)
        # the last copy of a frame comes one frame late (see the card's frame_tick)
        wait = 2 if self.board.copies > 1 else 1
        while self._held:
            item = self._held.pop(self._next, None)
            if item is None:
                ahead = max(wire.seq_diff(s, self._next) for s in self._held)
                if ahead < wait:
                    break  # the late copy of the missing frame may still come
            self._slot(item)
            self._next = (self._next + 1) & 0xFFFF

    def _slot(self, item: tuple[int, bytes] | None) -> None:
        c = self.counters
        if item is None:
            c.lost += 1
            self._gap_run += 1
            c.longest_gap = max(c.longest_gap, self._gap_run)
            if self._gap_run == 1:
                c.gaps += 1
            pcm = self._plc.lost()
            echo_ref = wire.NO_SEQ
        else:
            self._gap_run = 0
            c.frames += 1
            echo_ref, payload = item
            pcm = self._plc.good(self._codec.decode(payload))
        if not self._offhook:
            if item is not None:
                for rx in self._cid:
                    for cid in rx.feed(pcm):
                        if not self._cid_seen and cid.number:
                            self._cid_seen = True
                            self._emit(ev.CallerIdReceived(self.number, cid.number, cid.name, cid.datetime, cid.mode))
            return
        if self._ec is not None:
            ref = self._tx_hist.get(echo_ref, SILENCE)
            pcm = self._ec.process(ref, pcm)
        # the DTMF receiver is told of a loss rather than fed the concealed frame: measured over
        # every position of a lost frame in 60 ms digits, that loses the fewest digits (2.7 %
        # against 6.3 % with concealment); redundancy keeps losses rare in the first place
        if item is None:
            self._dtmf.fill_in(len(pcm))
            digits = []
        else:
            digits = self._dtmf.feed(pcm)
        for d in digits:
            c.digits += 1
            self._emit(ev.DigitReceived(self.number, d.digit, d.duration_ms, d.level_dbm0))
        for t in self._busy.feed(pcm):
            if t.name and not self._busy_reported:
                self._busy_reported = True
                self._emit(ev.HungUp(self.number, "busy_tone"))
        self.audio.deliver(pcm)

    def _send_one(self) -> None:
        frame = self.audio.next_out()
        seq = self._tx_seq
        self._tx_seq = (seq + 1) & 0xFFFF
        self._tx_hist[seq] = frame
        self._tx_hist.pop((seq - 16) & 0xFFFF, None)
        payload = self._codec.encode(frame)
        link = self.board.link
        copies = self.board.copies
        for _ in range(max(1, copies - 1)):
            link.send_audio(self.channel, seq, payload)
        if copies > 1 and self._tx_recent:
            link.send_audio(self.channel, *self._tx_recent[-1])
        self._tx_recent.append((seq, payload))

    def on_event(self, e: CardEvent) -> None:
        n = self.number
        code = e.code
        fut = self._waiters.pop(code, None)
        if fut is not None and not fut.done():
            fut.set_result(e.value)
        if code == wire.EV_RING_ON:
            if e.value == 1:
                self._reset_dsp()
                self._resync()
            self._emit(ev.Ring(n, e.value))
        elif code == wire.EV_RING_OFF:
            self._emit(ev.RingEnded(n, 0, e.value))
        elif code == wire.EV_CID_WINDOW:
            if e.value:
                self._cid = [CallerIdReceiver(m) for m in self.board.config.cid_modes]
                self._resync()
        elif code == wire.EV_RING_STOP:
            self._emit(ev.RingingStopped(n, 0))
        elif code == wire.EV_HOOK:
            if e.value:
                self._emit(ev.Answered(n))
            else:
                self._offhook = False
                self._emit(ev.OnHook(n))
        elif code == wire.EV_LOOP_DROP:
            if self._offhook:
                self._emit(ev.HungUp(n, "loop_drop"))
        elif code == wire.EV_POLARITY:
            self._emit(ev.PolarityReversed(n, e.value))
        elif code == wire.EV_DIAL_DONE:
            self._emit(ev.DialDone(n, e.value))
        elif code == wire.EV_FLASH_DONE:
            self._emit(ev.FlashDone(n, e.value))
        elif code == wire.EV_LINE_STATE:
            if self._offhook and not (e.value & 1):
                self._offhook = False
                self._emit(ev.LineDown(n, "the card no longer holds this call"))
            elif (e.value & 1) and not self._offhook:
                # held off-hook by a previous run of the node: nobody owns that call, release it
                log.warning("line %d was left off-hook; releasing it", n)
                asyncio.get_running_loop().create_task(self._release())

    def link_down(self, reason: str) -> None:
        self._offhook = False
        self.audio.reset()
        self._resync()
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"line {self.number} went down: {reason}"))
        self._waiters.clear()
        self._emit(ev.LineDown(self.number, reason))

    def link_up(self) -> None:
        self._reset_dsp()
        self._resync()
        self._emit(ev.LineUp(self.number))


@dataclass(frozen=True)
class BoardConfig:
    country: str = "cn"  # call-progress tones heard on the lines: "cn" or "na"
    cid_modes: tuple[str, ...] = ("bell202", "dtmf")
    echo_cancel: bool = True
    redundancy: str = "auto"  # "auto" (as many copies as the link has room for), or "1".."6"
    baud: int = 921600


class LineCardBoard(Board, LinkListener):
    def __init__(self, url: str, config: BoardConfig | None = None) -> None:
        self.url = url
        self.config = config or BoardConfig()
        self.link = LineCardLink(url, self, baud=self.config.baud)
        self.lines: list[LineCardLine] = []
        self.copies = 1  # what the card was last told (it boots with 1)
        self._copies_lock = asyncio.Lock()
        self.card_status: Status | None = None

    # -- Board -------------------------------------------------------------------------------------
    async def start(self, timeout: float = 5.0) -> LineCardBoard:
        await self.link.start(timeout)
        await self.update_copies()
        return self

    async def close(self) -> None:
        await self.link.close()

    @property
    def identity(self) -> Identity | None:
        h = self.link.hello
        return Identity(h.board_id, h.firmware, h.channels, h.law, h.boot_id) if h else None

    @property
    def connected(self) -> bool:
        return self.link.is_up

    async def set_led(self, line: int, on: bool) -> None:
        await self.link.command(line - 1, wire.OP_LED, 1 if on else 0)

    async def stats(self) -> dict:
        card = await self.link.card_stats() if self.link.is_up else {}
        c = self.link.counters
        return {
            "link": {"rx_frames": c.rx_frames, "tx_frames": c.tx_frames, "bad_frames": dict(c.bad_frames),
                     "retries": c.retries, "reconnects": c.reconnects, "card_resets": c.card_resets,
                     "duplicate_events": c.duplicate_events, "audio_copies": self.copies},
            "card": card,
            "lines": {ln.number: asdict(ln.counters) for ln in self.lines},
        }

    # -- LinkListener ----------------------------------------------------------------------------
    def link_up(self, hello: Hello, reset: bool) -> None:
        if not self.lines:
            self.lines = [LineCardLine(self, ch) for ch in range(hello.channels)]
        law = ULAW if hello.law == "ulaw" else ALAW
        for ln in self.lines:
            ln.set_law(law)
            ln.link_up()
        self.copies = 1  # a card that (re)booted starts with one copy
        if reset:
            asyncio.get_running_loop().create_task(self.update_copies())

    def link_down(self, reason: str) -> None:
        for ln in self.lines:
            ln.link_down(reason)

    def card_event(self, e: CardEvent) -> None:
        if 0 <= e.channel < len(self.lines):
            self.lines[e.channel].on_event(e)

    def audio(self, channel: int, seq: int, echo_ref: int, payload: bytes) -> None:
        if 0 <= channel < len(self.lines):
            self.lines[channel].on_audio(seq, echo_ref, payload)

    def status(self, st: Status) -> None:
        self.card_status = st

    # -- audio redundancy ------------------------------------------------------------------------------
    def copies_for(self, active: int) -> int:
        """How many copies of each audio frame the link can carry for ``active`` lines (1..6).

        A damaged frame is dropped whole: at a bit-error rate of 1e-4 about one 175-byte frame in
        eight. Losing one 20 ms frame inside a 60 ms DTMF tone can cost the digit (measured: 3-6 %
        of such losses), so frames are repeated while the link has room: with 6 copies a frame is
        lost about once in 200,000 at that error rate. The link is otherwise idle bandwidth; with
        all 8 lines busy there is room for one copy only.
        """
        if self.config.redundancy != "auto":
            return int(self.config.redundancy)
        per_copy = max(1, active) * 50 * FRAME_WIRE_BYTES
        return max(1, min(wire.MAX_COPIES, int(0.8 * self.config.baud / 10 / per_copy)))

    async def update_copies(self) -> None:
        """Match redundancy to the lines in use; lowered *before* a line starts streaming.

        Serialised, and counting lines being answered as streaming: eight lines answered at once
        must not each see room for copies that only one of them has.
        """
        async with self._copies_lock:
            want = self.copies_for(sum(1 for ln in self.lines if ln.offhook or ln._claimed))
            if want == self.copies or not self.link.is_up:
                return
            try:
                await self.link.command(wire.BROADCAST, wire.OP_REDUNDANCY, want)
            except (ConnectionError, RuntimeError) as exc:
                log.warning("could not set audio redundancy to %d: %s", want, exc)
                return
            log.info("audio redundancy %d -> %d copies per frame", self.copies, want)
            self.copies = want
