"""The line card backend of the HAL: a ``Line`` per card channel on the typed card link.

Per line: frames from the card are put back in order (``drivers.linecard.Reassembler``) and run
through the line's receive DSP chain (``drivers.dsp.receive.ReceiveChain``); its events become
``hal.events``. One frame goes back to the card for each tick of the card's clock, so the card
paces both directions. The wire format is ``drivers.linecard``'s business, never this module's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass

from drivers.dsp import ALAW, ULAW, DtmfGenerator
from drivers.dsp.receive import ReceiveChain, RxFrame
from drivers.linecard import (
    CardEvent,
    EventKind,
    Hello,
    Led,
    LineCardLink,
    LinkListener,
    Reassembler,
    Status,
    copies_for,
    wait_for_copies,
)
from drivers.linecard.flasher import Flasher

from . import events as ev
from .audio import AudioPort
from .line import Board, Identity, Line, LinkStatus

log = logging.getLogger("hal.linecard")

# frames sent at once when the card's clock jumped (a burst of lost frames): one per tick, up to
# the card's playout depth (more would only push frames out of its buffer)
MAX_CATCH_UP = 8


class LineCardLine(Line):
    def __init__(self, board: LineCardBoard, channel: int) -> None:
        cfg = board.config
        self.board = board
        self.link = board.link
        self.channel = channel
        self.number = channel + 1
        self.audio = AudioPort()
        self.receive = ReceiveChain(ULAW, country=cfg.country, cid_modes=cfg.cid_modes, echo_cancel=cfg.echo_cancel)
        self._rx: Reassembler[tuple[int | None, bytes]] = Reassembler()
        self.digits = 0
        self._events: asyncio.Queue[ev.LineEvent] = asyncio.Queue()
        self._offhook = False
        self.claimed = False  # being answered: counted as streaming in the link budget
        # on-hook audio: the card streams a caller ID window after the first ring (or a polarity
        # reversal) without being asked. Counted in the budget from the first ring, so the copies
        # are lowered before the window opens, and while a window is open
        self._ring_pending = False
        self._cid_window = False
        self._waiters: dict[EventKind, asyncio.Future] = {}
        self._tx_seq = 0

    @property
    def counters(self):
        """Frames, losses, late frames, copies and gaps of the audio from the card (reassembly)."""
        return self._rx.counters

    # -- the Line interface --------------------------------------------------------------------
    @property
    def offhook(self) -> bool:
        return self._offhook

    @property
    def streaming(self) -> bool:
        """The card sends (or is about to send) this line's audio: counted in the link budget."""
        return self._offhook or self.claimed or self._ring_pending or self._cid_window

    def _on_hook_streaming(self, ring_pending: bool, cid_window: bool) -> None:
        if (ring_pending, cid_window) != (self._ring_pending, self._cid_window):
            self._ring_pending, self._cid_window = ring_pending, cid_window
            self.board.copies_may_change()

    def set_rx_tap(self, tap: Callable[[RxFrame], None] | None) -> None:
        self.receive.tap = tap

    async def events(self) -> AsyncIterator[ev.LineEvent]:
        while True:
            yield await self._events.get()

    async def next_event(self, timeout: float | None = None) -> ev.LineEvent | None:
        try:
            return await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return None

    async def answer(self) -> None:
        self.receive.new_call()
        self.claimed = True  # counted as streaming from now on, so lines answered together share the budget
        try:
            await self.board.update_copies()
            # off-hook for our audio path before the card acknowledges: its first frames may
            # already carry a key the caller pressed the moment the line was answered
            self._offhook = True
            await self.link.hook(self.channel, True)
        except BaseException:
            self._offhook = False
            raise
        finally:
            self.claimed = False

    async def hangup(self) -> None:
        self._offhook = False
        self.audio.reset()
        await self.link.hook(self.channel, False)
        await self.board.update_copies()

    async def dial(self, digits: str, mode: str = "dtmf") -> None:
        if mode == "pulse":
            done = self._expect(EventKind.DIAL_DONE)
            try:
                await self.link.pulse_dial(self.channel, digits)  # checks the digits
            except BaseException:
                self._waiters.pop(EventKind.DIAL_DONE, None)
                raise
            await asyncio.wait_for(done, 2.0 + 1.2 * len(digits))
        elif mode == "dtmf":
            gen = DtmfGenerator(level_dbm0=-8, on_ms=80, off_ms=80)
            gen.put(digits)
            self.audio.write(gen.read(len(digits) * 160 * 8))
            await self.audio.drained()
        else:
            raise ValueError(f"unknown dial mode {mode!r}: use 'dtmf' or 'pulse'")

    async def flash(self, ms: int = 100) -> None:
        done = self._expect(EventKind.FLASH_DONE)
        await self.link.flash(self.channel, ms)
        await asyncio.wait_for(done, ms / 1000 + 2.0)

    async def set_gains(self, rx_db: float, tx_db: float) -> None:
        await self.link.set_gains(self.channel, rx_db, tx_db)

    async def _release(self) -> None:
        try:
            await self.link.hook(self.channel, False)
        except ConnectionError as exc:
            log.warning("line %d: could not release: %s", self.number, exc)

    def _expect(self, kind: EventKind) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiters[kind] = fut
        return fut

    def _emit(self, event: ev.LineEvent) -> None:
        self._events.put_nowait(event)

    # -- audio ---------------------------------------------------------------------------------
    def on_audio(self, seq: int, echo_ref: int | None, payload: bytes) -> None:
        rx = self._rx
        rx.wait = wait_for_copies(self.link.redundancy)
        arrival = rx.push(seq, (echo_ref, payload))
        # pace what we send by the card's clock as soon as a new frame shows it ticked, before
        # any wait for a missing frame's copies (that wait would starve the card's playout)
        if arrival.ticks and self._offhook:
            for _ in range(min(arrival.ticks, MAX_CATCH_UP)):
                self._send_one()
        for slot in arrival.slots:
            self._slot(slot)

    def _slot(self, slot: tuple[int | None, bytes] | None) -> None:
        chain = self.receive
        if not self._offhook:
            cid = chain.listen_callerid(None if slot is None else slot[1])
            if cid is not None:
                self._emit(ev.CallerIdReceived(self.number, cid.number, cid.name, cid.datetime, cid.mode))
            return
        frame = chain.receive(None, None) if slot is None else chain.receive(slot[1], slot[0])
        for d in frame.digits:
            self.digits += 1
            self._emit(ev.DigitReceived(self.number, d.digit, d.duration_ms, d.level_dbm0))
        if frame.busy:
            self._emit(ev.HungUp(self.number, "busy_tone"))
        self.audio.deliver(frame.pcm)

    def _send_one(self) -> None:
        pcm = self.audio.next_out()
        seq = self._tx_seq
        self._tx_seq = (seq + 1) & 0xFFFF
        self.receive.played(seq, pcm)
        # the one G.711 encode of what the node plays (prompts are kept linear): the card's law
        self.link.send_audio(self.channel, seq, self.receive.codec.encode(pcm))

    # -- card events -----------------------------------------------------------------------------
    def on_event(self, e: CardEvent) -> None:
        n = self.number
        kind = e.kind
        fut = self._waiters.pop(kind, None)
        if fut is not None and not fut.done():
            fut.set_result(e.value)
        if kind is EventKind.RING_ON:
            if e.value == 1:
                self.receive.new_call()
                self._rx.reset()
                # the card opens a caller ID window when this ring ends
                self._on_hook_streaming(not self._offhook, self._cid_window)
            self._emit(ev.Ring(n, e.value))
        elif kind is EventKind.RING_OFF:
            self._emit(ev.RingEnded(n, 0, e.value))
        elif kind is EventKind.CID_WINDOW:
            if e.value:
                self.receive.new_callerid_window()
                self._rx.reset()
            self._on_hook_streaming(False, bool(e.value))
        elif kind is EventKind.RING_STOP:
            self._on_hook_streaming(False, self._cid_window)
            self._emit(ev.RingingStopped(n, 0))
        elif kind is EventKind.HOOK:
            self._on_hook_streaming(False, False)  # off-hook the card closes the window silently
            if e.value:
                self._emit(ev.Answered(n))
            else:
                self._offhook = False
                self._emit(ev.OnHook(n))
        elif kind is EventKind.LOOP_DROP:
            if self._offhook:
                self._emit(ev.HungUp(n, "loop_drop"))
        elif kind is EventKind.POLARITY:
            self._emit(ev.PolarityReversed(n, e.value))
        elif kind is EventKind.DIAL_DONE:
            self._emit(ev.DialDone(n, e.value))
        elif kind is EventKind.FLASH_DONE:
            self._emit(ev.FlashDone(n, e.value))
        elif kind is EventKind.LINE_STATE:
            if self._offhook and not (e.value & 1):
                self._offhook = False
                self._emit(ev.LineDown(n, "the card no longer holds this call"))
            elif (e.value & 1) and not self._offhook:
                # held off-hook by a previous run of the node: nobody owns that call, release it
                log.warning("line %d was left off-hook; releasing it", n)
                asyncio.get_running_loop().create_task(self._release())
        else:
            log.warning("line %d: ignoring %s from the card (newer firmware?)", n, e.name)

    def link_down(self, reason: str) -> None:
        self._offhook = False
        self._ring_pending = self._cid_window = False
        self.audio.reset()
        self._rx.reset()
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"line {self.number} went down: {reason}"))
        self._waiters.clear()
        self._emit(ev.LineDown(self.number, reason))

    def link_up(self, law: int) -> None:
        self.receive.set_law(law)
        self.receive.new_call()
        self._rx.reset()
        self._emit(ev.LineUp(self.number))


@dataclass(frozen=True)
class BoardConfig:
    country: str = "cn"  # call-progress tones heard on the lines: "cn" or "na"
    cid_modes: tuple[str, ...] = ("bell202", "dtmf")
    echo_cancel: bool = True
    redundancy: str = "auto"  # "auto" (as many copies as the link has room for), or "1".."6"
    baud: int = 921600

    def __post_init__(self) -> None:
        if self.redundancy != "auto":
            try:
                copies_for(1, self.baud, int(self.redundancy))
            except ValueError as exc:
                raise ValueError(f"BoardConfig.redundancy {self.redundancy!r}: use 'auto' or a number of copies "
                                 f"({exc})") from None

    @property
    def fixed_copies(self) -> int | None:
        return None if self.redundancy == "auto" else int(self.redundancy)


class LineCardBoard(Board, LinkListener):
    def __init__(self, url: str, config: BoardConfig | None = None, *,
                 link: Callable[..., LineCardLink] = LineCardLink) -> None:
        self.url = url
        self.config = config or BoardConfig()
        self.link = link(url, self, baud=self.config.baud)
        self.lines: list[LineCardLine] = []
        self._copies_lock = asyncio.Lock()
        self._copies_tasks: set[asyncio.Task] = set()
        self.card_status: Status | None = None

    # -- Board -------------------------------------------------------------------------------------
    async def start(self, timeout: float = 5.0) -> LineCardBoard:
        await self.link.start(timeout)
        await self.update_copies()
        return self

    async def close(self) -> None:
        for task in list(self._copies_tasks):
            task.cancel()
        await self.link.close()

    @property
    def identity(self) -> Identity | None:
        h = self.link.hello
        return Identity(h.board_id, h.firmware, h.channels, h.law, h.boot_id) if h else None

    @property
    def connected(self) -> bool:
        return self.link.is_up

    @property
    def copies(self) -> int:
        """Copies of each audio frame the link carries now (audio redundancy)."""
        return self.link.redundancy

    async def set_led(self, line: int, on: bool) -> None:
        await self.link.led(line - 1, Led.ON if on else Led.OFF)

    def firmware_updater(self) -> Flasher:
        """A flasher on this board's link (the card serves image frames between its audio ticks, and
        the flasher keeps at most a window of them unanswered: the calls' audio goes first)."""
        return Flasher(self.link)

    def link_status(self) -> LinkStatus:
        c = self.link.counters
        return LinkStatus(self.link.is_up, c.bad_total, c.reconnects, c.card_resets, c.retries, c.commands_failed,
                          self.copies)

    async def stats(self) -> dict:
        card: dict = {}
        if self.link.is_up:
            cs = await self.link.card_stats()
            card = {"link": asdict(cs.link)} | {f"line{ch + 1}": asdict(lc) for ch, lc in enumerate(cs.lines)}
        c = self.link.counters
        return {
            "link": {"rx_frames": c.rx_frames, "tx_frames": c.tx_frames, "bad_frames": dict(c.bad_frames),
                     "retries": c.retries, "reconnects": c.reconnects, "card_resets": c.card_resets,
                     "duplicate_events": c.duplicate_events, "commands_failed": c.commands_failed,
                     "audio_copies": self.copies},
            "card": card,
            "lines": {ln.number: asdict(ln.counters) | {"digits": ln.digits} for ln in self.lines},
        }

    # -- LinkListener ----------------------------------------------------------------------------
    def link_up(self, hello: Hello, reset: bool) -> None:
        if not self.lines:
            self.lines = [LineCardLine(self, ch) for ch in range(hello.channels)]
        law = ULAW if hello.law == "ulaw" else ALAW
        for ln in self.lines:
            ln.link_up(law)
        if reset:
            asyncio.get_running_loop().create_task(self.update_copies())

    def link_down(self, reason: str) -> None:
        for ln in self.lines:
            ln.link_down(reason)

    def card_event(self, e: CardEvent) -> None:
        if 0 <= e.channel < len(self.lines):
            self.lines[e.channel].on_event(e)

    def audio(self, channel: int, seq: int, echo_ref: int | None, payload: bytes) -> None:
        if 0 <= channel < len(self.lines):
            self.lines[channel].on_audio(seq, echo_ref, payload)

    def status(self, st: Status) -> None:
        self.card_status = st

    # -- audio redundancy ------------------------------------------------------------------------------
    def copies_may_change(self) -> None:
        """A line started or stopped streaming on its own (card events): match the copies soon."""
        task = asyncio.get_running_loop().create_task(self.update_copies())
        self._copies_tasks.add(task)
        task.add_done_callback(self._copies_tasks.discard)

    async def update_copies(self) -> None:
        """Match redundancy to the lines in use (``drivers.linecard.copies_for``); lowered *before*
        a line starts streaming.

        Serialised, and counting lines being answered as streaming: eight lines answered at once
        must not each see room for copies that only one of them has. On-hook lines count too: a
        caller ID window streams as much audio up as a call.
        """
        async with self._copies_lock:
            active = sum(1 for ln in self.lines if ln.streaming)
            want = copies_for(active, self.config.baud, self.config.fixed_copies)
            if want == self.link.redundancy or not self.link.is_up:
                return
            before = self.link.redundancy
            try:
                await self.link.set_redundancy(want)
            except (ConnectionError, RuntimeError) as exc:
                log.warning("could not set audio redundancy to %d: %s", want, exc)
                return
            log.info("audio redundancy %d -> %d copies per frame", before, want)
