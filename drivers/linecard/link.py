"""The host side of the card's serial protocol, on asyncio, behind a typed API.

Commands (:meth:`LineCardLink.hook`, :meth:`~LineCardLink.set_redundancy`, ...) are acknowledged
and retried by sequence number: every ``wire.RETRY_MS``, ``wire.MAX_TRIES`` tries in all. A
command still unacknowledged after its last try means the card stopped listening: the link is
treated as down (the listener is told ``link_down``, the port is reopened and the link resyncs
with SYNC -> HELLO, as after a lost port) and the command raises :class:`LinkDown` saying so.
Events from the card are acknowledged and delivered once (the last ``wire.DEDUPE_WINDOW``
sequence numbers are remembered); audio is not acknowledged but repeated (``set_redundancy``).
The link notices a dead card (no frame for ``dead_after`` seconds, or the port closing) and a
reset card (a HELLO with a new boot id), tells its listener, and reconnects on its own.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware.card import wire

from .messages import (
    OP_NAMES,
    STATUS_NAMES,
    CardEvent,
    CardSlots,
    CardStats,
    ChannelCounters,
    Hello,
    ImageAck,
    Led,
    LinkCounters,
    Status,
)
from .transport import SerialTransport, TransportError

log = logging.getLogger("drivers.linecard")

RETRY_S = wire.RETRY_MS / 1000
SYNC_EVERY_S = 0.25
ERROR_LOG_BURST = 10  # bad frames logged one by one before the log is summarised
ERROR_LOG_PERIOD_S = 10.0
MAX_PULSE_DIGITS = wire.MAX_DIGITS


class CommandError(RuntimeError):
    """The card refused a command; ``status`` is the card's code."""

    def __init__(self, op: int, channel: int, status: int) -> None:
        self.status = status
        where = "the card" if channel == wire.BROADCAST else f"line {channel + 1}"
        super().__init__(f"card refused command {OP_NAMES.get(op, op)} on {where}: {STATUS_NAMES.get(status, status)}")


class LinkDown(ConnectionError):
    """The card is not connected, or stopped answering (the message says which)."""


class LinkListener:
    """What the link tells whoever owns it. Override what you need."""

    def link_up(self, hello: Hello, reset: bool) -> None: ...
    def link_down(self, reason: str) -> None: ...
    def card_event(self, ev: CardEvent) -> None: ...
    def audio(self, channel: int, seq: int, echo_ref: int | None, payload: bytes) -> None:
        """One card -> host frame (every copy of it): ``echo_ref`` is the seq of the host frame the
        card played in the same 20 ms, or None."""
    def status(self, st: Status) -> None: ...


@dataclass
class HostCounters:
    """The host's own count of what crossed the link."""

    rx_frames: int = 0
    tx_frames: int = 0
    bad_frames: dict[str, int] = field(default_factory=lambda: {n: 0 for n in wire.ERROR_NAMES[1:]})
    duplicate_events: int = 0
    retries: int = 0
    reconnects: int = 0
    card_resets: int = 0
    commands_failed: int = 0

    @property
    def bad_total(self) -> int:
        return sum(self.bad_frames.values())


TransportFactory = Callable[..., SerialTransport]


class LineCardLink:
    """The card behind ``url`` (a serial port, ``socket://`` to the simulator, ``loop://``).

    ``transport`` makes the byte transport (``SerialTransport`` unless a test gives another with
    the same signature and ``write``/``close``).
    """

    def __init__(self, url: str, listener: LinkListener, *, baud: int = 921600, dead_after: float = 1.0,
                 transport: TransportFactory = SerialTransport) -> None:
        self.url = url
        self._make_transport = transport
        self.baud = baud
        self.dead_after = dead_after
        self.listener = listener
        self.hello: Hello | None = None
        self.counters = HostCounters()
        self.redundancy = 1  # copies of each audio frame, both ways, as the card last said or was told
        self._last_audio: dict[int, tuple[int, bytes]] = {}  # channel -> the frame whose last copy is due
        self._transport: SerialTransport | None = None
        self._deframer = wire.Deframer()
        self._seq = 0
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._slots = asyncio.Semaphore(wire.MAX_PENDING)  # commands in flight, within the card's dedupe window
        self._seen: deque[int] = deque(maxlen=wire.DEDUPE_WINDOW)
        self._stats_waiters: list[tuple[asyncio.Future, dict]] = []
        self._image_seq = 0
        self._image_pending: dict[int, asyncio.Future] = {}  # IMAGE seq -> its answer (ImageAck / CardSlots)
        self.last_status: Status | None = None  # the card's latest STATUS (which lines are in use)
        self._last_rx = 0.0
        self._up = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._logged = 0
        self._log_window = 0.0
        self._suppressed = 0
        self.last_error = ""

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self, timeout: float = 5.0) -> Hello:
        """Connect and wait for the card's HELLO (raises LinkDown with the reason on timeout)."""
        self._task = asyncio.create_task(self._supervise(), name=f"linecard {self.url}")
        try:
            await self.wait_up(timeout)
        except TimeoutError:
            raise LinkDown(f"no line card answered on {self.url} within {timeout:.0f} s"
                           + (f" (last error: {self.last_error})" if self.last_error else "")
                           + ": check the cable/port, or start the simulator (`simctl card`)") from None
        assert self.hello is not None
        return self.hello

    async def close(self) -> None:
        self._closing = True
        if self._task:
            self._task.cancel()
            # asyncio.wait: waits for the task to end without swallowing a cancel of our caller
            # (an `except CancelledError` around `await self._task` would take a Ctrl-C for the task's)
            await asyncio.wait([self._task])
        self._drop("closed")

    async def wait_up(self, timeout: float) -> None:
        """Until the link is up; TimeoutError after ``timeout``. (asyncio.wait: a cancel that comes
        in the turn the link comes up is not lost, as it would be in 3.11's wait_for.)"""
        if self.is_up:
            return
        waiter = asyncio.ensure_future(self._up.wait())
        try:
            await asyncio.wait([waiter], timeout=timeout)
        finally:
            waiter.cancel()
        if not self.is_up:
            raise TimeoutError

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.1
        while not self._closing:
            if self._transport is None:
                try:
                    self._transport = self._make_transport(self.url, self.baud, loop, self._on_bytes, self._on_lost)
                    backoff = 0.1
                    self._last_rx = time.monotonic()
                except TransportError as exc:
                    self.last_error = str(exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
            if not self.is_up:
                self._send(wire.encode(wire.T_SYNC, wire.BROADCAST, 0))
                await asyncio.sleep(SYNC_EVERY_S if self.hello is None else 0.05)
            else:
                await asyncio.sleep(0.1)
            if self.is_up and time.monotonic() - self._last_rx > self.dead_after:
                self._drop(f"no frame from the card for {self.dead_after:.1f} s")
            elif not self.is_up and self._transport is not None and time.monotonic() - self._last_rx > 3.0:
                self._drop("the card does not answer SYNC")  # reopen the port from scratch

    def _on_lost(self, why: str) -> None:
        self._drop(f"port lost: {why}")

    def _drop(self, reason: str) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            self._deframer = wire.Deframer()
        for fut in [*self._pending.values(), *self._image_pending.values()]:
            if not fut.done():
                fut.set_exception(LinkDown(f"line card link down ({reason})"))
        self._pending.clear()
        self._image_pending.clear()
        self.last_error = reason
        if self.is_up:
            self._up.clear()
            if self._closing:
                log.info("line card link closed")
                return
            self.counters.reconnects += 1
            log.warning("line card link down: %s; reconnecting", reason)
            self.listener.link_down(reason)

    # -- sending -------------------------------------------------------------------------------
    def _send(self, frame: bytes | bytearray) -> None:
        if self._transport is not None:
            self._transport.write(bytes(frame))
            self.counters.tx_frames += 1

    def send_audio(self, channel: int, seq: int, payload: bytes) -> None:
        """One host -> card frame, sent ``redundancy`` times: k-1 copies now and the last one with
        the next frame (so a short burst of errors cannot take them all)."""
        if not self.is_up:
            return
        frame = wire.encode(wire.T_AUDIO, channel, seq, payload)
        copies = self.redundancy
        for _ in range(max(1, copies - 1)):
            self._send(frame)
        prev = self._last_audio.get(channel)
        if copies > 1 and prev is not None:
            self._send(wire.encode(wire.T_AUDIO, channel, *prev))
        self._last_audio[channel] = (seq, payload)

    async def command(self, channel: int, op: int, arg1: int = 0, arg2: int = 0, extra: bytes = b"") -> None:
        """Send a command and wait for its ACK, trying ``wire.MAX_TRIES`` times ``wire.RETRY_MS``
        apart. After the last try the link is treated as down (listener told, port reopened,
        SYNC -> HELLO) and :class:`LinkDown` is raised; a refusal raises :class:`CommandError`."""
        if not self.is_up:
            raise LinkDown(f"line card on {self.url} is not connected ({self.last_error or 'starting'})")
        async with self._slots:
            status = await self._command(channel, op, arg1, arg2, extra)
        if status != wire.ST_OK:
            raise CommandError(op, channel, status)

    async def _command(self, channel: int, op: int, arg1: int, arg2: int, extra: bytes) -> int:
        if not self.is_up:
            raise LinkDown(f"line card on {self.url} is not connected ({self.last_error or 'starting'})")
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        frame = wire.encode(wire.T_CMD, channel, seq, struct.pack(wire.CMD, op, arg1, arg2) + extra)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        try:
            for attempt in range(wire.MAX_TRIES):
                if attempt:
                    self.counters.retries += 1
                self._send(frame)
                # asyncio.wait keeps `fut` across tries, and never loses a cancel of the caller (3.11's
                # wait_for returns a result that came in the same turn as the cancel: gh-86296)
                await asyncio.wait([fut], timeout=RETRY_S)
                if fut.done():
                    return fut.result()
        finally:
            self._pending.pop(seq, None)
        self.counters.commands_failed += 1
        where = "the card" if channel == wire.BROADCAST else f"line {channel + 1}"
        reason = (f"the card did not acknowledge command {OP_NAMES.get(op, op)} on {where} after "
                  f"{wire.MAX_TRIES} tries ({wire.MAX_TRIES * wire.RETRY_MS} ms)")
        self._drop(reason)
        raise LinkDown(f"{reason}: the link is down and reconnecting")

    def send_image(self, op: int, offset: int = 0, data: bytes = b"") -> asyncio.Future:
        """One ``IMAGE`` frame (``wire.IMG_*`` op; chunks carry their offset, CRC-32 and data). The
        future gets the card's answer: an :class:`ImageAck`, or :class:`CardSlots` for ``IMG_STATUS``.
        Sent once: the caller resends by offset (``drivers.linecard.flasher``); the future fails with
        :class:`LinkDown` if the link drops first. Cancel it when the answer no longer matters."""
        if len(data) > wire.IMAGE_DATA_MAX:
            raise ValueError(f"an IMAGE frame carries at most {wire.IMAGE_DATA_MAX} bytes, not {len(data)}")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        if not self.is_up:
            fut.set_exception(LinkDown(f"line card on {self.url} is not connected ({self.last_error or 'starting'})"))
            return fut
        seq = self._image_seq
        self._image_seq = (seq + 1) & 0xFFFF
        old = self._image_pending.pop(seq, None)  # 65536 frames ago: no answer is coming any more
        if old is not None and not old.done():
            old.cancel()
        self._image_pending[seq] = fut
        fut.add_done_callback(lambda f, s=seq: self._image_pending.pop(s, None) if self._image_pending.get(s) is f
                              else None)
        body = struct.pack(wire.IMAGE, op, offset, binascii.crc32(data) & 0xFFFFFFFF) + data
        self._send(wire.encode(wire.T_IMAGE, wire.BROADCAST, seq, body))
        return fut

    # -- commands, typed ---------------------------------------------------------------------------
    async def hook(self, channel: int, off: bool) -> None:
        """Off-hook (answer / seize) or on-hook (hang up); the card confirms with a HOOK event."""
        await self.command(channel, wire.OP_HOOK, 1 if off else 0)

    async def flash(self, channel: int, ms: int) -> None:
        await self.command(channel, wire.OP_FLASH, ms)

    async def pulse_dial(self, channel: int, digits: str, make_ms: int = 0, break_ms: int = 0) -> None:
        if not digits.isdigit() or not digits.isascii() or len(digits) > MAX_PULSE_DIGITS:
            raise ValueError(f"pulse dialling takes up to {MAX_PULSE_DIGITS} digits 0-9, not {digits!r}")
        await self.command(channel, wire.OP_PULSE_DIAL, make_ms, break_ms, digits.encode())

    async def set_gains(self, channel: int, rx_db: float, tx_db: float) -> None:
        await self.command(channel, wire.OP_GAIN, int(round(rx_db * 10)), int(round(tx_db * 10)))

    async def led(self, channel: int, state: Led | bool) -> None:
        await self.command(channel, wire.OP_LED, int(Led(int(state))))

    async def open_cid_window(self, channel: int, ms: int) -> None:
        await self.command(channel, wire.OP_CID_WINDOW, ms)

    async def set_redundancy(self, copies: int) -> None:
        """Copies of each audio frame, both ways (1..``wire.MAX_COPIES``)."""
        if not 1 <= copies <= wire.MAX_COPIES:
            raise ValueError(f"audio redundancy must be 1..{wire.MAX_COPIES} copies, not {copies}")
        await self.command(wire.BROADCAST, wire.OP_REDUNDANCY, copies)
        self.redundancy = copies

    async def reset_card(self, if_idle: bool = False) -> None:
        """Reboot the card; ``if_idle``: only if no line is off-hook or ringing (the card decides;
        else :class:`CommandError` with ``wire.ST_BUSY`` and no reboot)."""
        await self.command(wire.BROADCAST, wire.OP_RESET, wire.RESET_IF_IDLE if if_idle else 0)

    async def card_stats(self, timeout: float = 1.0) -> CardStats:
        """The card's own counters: its link's and each line's."""
        assert self.hello is not None
        fut: asyncio.Future[CardStats] = asyncio.get_running_loop().create_future()
        got: dict[int, bytes] = {}
        self._stats_waiters.append((fut, got))
        try:
            await self.command(wire.BROADCAST, wire.OP_GET_STATS)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._stats_waiters = [w for w in self._stats_waiters if w[0] is not fut]

    # -- receiving -----------------------------------------------------------------------------
    def _bad(self, code: int, detail: str) -> None:
        name = wire.ERROR_NAMES[code]
        self.counters.bad_frames[name] += 1
        now = time.monotonic()
        if now - self._log_window > ERROR_LOG_PERIOD_S:
            if self._suppressed:
                log.warning("line card link: %d more bad frames dropped in the last %.0f s (counts: %s)",
                            self._suppressed, ERROR_LOG_PERIOD_S, self.counters.bad_frames)
            self._log_window, self._logged, self._suppressed = now, 0, 0
        if self._logged < ERROR_LOG_BURST:
            self._logged += 1
            log.warning("line card link: dropped a frame: %s%s", name, detail)
        else:
            self._suppressed += 1

    def _on_bytes(self, data: bytes) -> None:
        try:
            results = self._deframer.feed(data)
        except Exception as exc:  # never let a damaged stream reach the caller's code
            self._bad(wire.E_COBS, f" ({exc})")
            self._deframer = wire.Deframer()
            return
        for code, ftype, ch, seq, body in results:
            if code != wire.OK:
                detail = f" (type 0x{ftype:02x}, {len(body)} byte body)" if code in (wire.E_UNKNOWN, wire.E_TRUNCATED) else ""
                self._bad(code, detail)
                continue
            self.counters.rx_frames += 1
            self._last_rx = time.monotonic()
            try:
                self._dispatch(ftype, ch, seq, body)
            except Exception:  # a listener bug must not kill the link
                log.exception("line card link: handling a frame of type 0x%02x failed", ftype)

    def _dispatch(self, ftype: int, ch: int, seq: int, body: bytes) -> None:
        if ftype == wire.T_AUDIO:
            if self.is_up and len(body) == wire.AUDIO_UP_LEN:
                (echo_ref,) = struct.unpack(wire.AUDIO_UP, body[:2])
                self.listener.audio(ch, seq, None if echo_ref == wire.NO_SEQ else echo_ref, body[2:])
        elif ftype == wire.T_EVENT:
            self._send(wire.encode(wire.T_ACK, ch, seq, struct.pack(wire.ACK, wire.ST_OK)))
            if seq in self._seen:
                self.counters.duplicate_events += 1
                return
            self._seen.append(seq)
            if self.is_up:
                self.listener.card_event(CardEvent.parse(ch, body))
        elif ftype == wire.T_ACK:
            fut = self._pending.get(seq)
            if fut is not None and not fut.done():
                fut.set_result(struct.unpack(wire.ACK, body)[0])
        elif ftype == wire.T_HELLO:
            self._on_hello(Hello.parse(body))
        elif ftype in (wire.T_IMAGE_ACK, wire.T_SLOTS):
            fut = self._image_pending.get(seq)
            if fut is not None and not fut.done():  # else: an answer to a frame sent again since
                fut.set_result(ImageAck.parse(body) if ftype == wire.T_IMAGE_ACK else CardSlots.parse(body))
        elif ftype == wire.T_STATUS:
            st = Status.parse(body)
            self.last_status = st
            self.redundancy = st.copies  # what the card actually does, e.g. after it rebooted
            self.listener.status(st)
        elif ftype == wire.T_STATS:
            self._on_stats(ch, body)
        else:
            self._bad(wire.E_UNKNOWN, f" (type 0x{ftype:02x} is not one the card sends)")

    def _on_hello(self, hello: Hello) -> None:
        if hello.proto != wire.PROTO_VERSION:
            self.last_error = (f"card speaks protocol {hello.proto}, this host speaks {wire.PROTO_VERSION}: "
                               "flash matching firmware")
            log.error("line card link: %s", self.last_error)
            return
        reset = self.hello is not None and hello.boot_id != self.hello.boot_id
        if reset:
            self.counters.card_resets += 1
            log.warning("line card reset (boot id %04x -> %04x)", self.hello.boot_id, hello.boot_id)
            if self.is_up:
                self._up.clear()
                self.listener.link_down("card reset")
        if reset or self.hello is None:
            self.redundancy = 1  # a card boots with one copy per frame
        first = not self.is_up
        self.hello = hello
        self._seen.clear()
        self._last_audio.clear()
        if first:
            self._up.set()
            log.info("line card up: %s firmware %s, %d lines, %s", hello.board_id, hello.firmware,
                     hello.channels, hello.law)
            self.listener.link_up(hello, reset)

    def _on_stats(self, ch: int, body: bytes) -> None:
        for fut, got in self._stats_waiters:
            got[ch] = body
            n = self.hello.channels if self.hello else 0
            if len(got) == n + 1 and all(c in got for c in (wire.BROADCAST, *range(n))) and not fut.done():
                fut.set_result(CardStats(LinkCounters.parse(got[wire.BROADCAST]),
                                         tuple(ChannelCounters.parse(got[c]) for c in range(n))))
