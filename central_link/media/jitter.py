"""Our receive path for G.711 over RTP: a playout buffer clocked by the line, with spandsp's PLC.

Why not aiortc's ``JitterBuffer(capacity=16, prefetch=4)``: it waits for four frames (80 ms)
before the first one plays, has no clock of its own, and stops at the first missing sequence
number until its window fills, so one lost packet silences ~280 ms and leaves it 14 frames deep
for the rest of the call (aiortc issue #543). Here:

- nothing is prefetched: a frame plays on the first line tick after it arrived;
- the line's clock pulls one frame per 20 ms tick (:meth:`JitterBuffer.pop`); frames are placed by
  RTP timestamp, so reordering inside the buffer is undone and sequence numbers are not needed;
- a missing frame is concealed (spandsp's PLC, in :class:`Playout`), never waited for:

  * **lost**: a later frame is already here: conceal this slot and move on;
  * **held**: nothing at all is here (the packet may be late, or the far clock slow): conceal,
    but do not move on. When the next frame turns up the slots already concealed count for the
    missing ones, so a lost packet costs one concealed frame and no delay;
- a frame that turns up after its slot was concealed is **late** and dropped; one already here is a
  **duplicate** and dropped;
- delay that a late burst or a slow far clock left behind is taken back: once the buffer has held
  more than ``cushion`` frames after every tick for ``window`` ticks in a row, the surplus (the
  fewest it held beyond the cushion) is dropped, oldest first (**catch-up**), so the delay returns
  to what it was one window after it grew;
- a timestamp more than ``capacity`` frames away from the playout point starts a new timeline
  (**resync**): the far end restarted or jumped.

Payloads must be whole 20 ms frames (160 samples; several per packet are split). Anything else is
counted as ``odd_size`` and dropped: aiortc and browsers send 20 ms G.711.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from drivers.dsp import ALAW, G711, ULAW, LossConcealer

FRAME = 160  # samples (= octets of G.711, = RTP timestamp units at 8 kHz) in 20 ms
PAYLOAD_TYPE_LAW = {0: ULAW, 8: ALAW}  # RFC 3551 static payload types: PCMU, PCMA


@dataclass
class JitterStats:
    received: int = 0  # frames accepted into the buffer
    played: int = 0
    lost: int = 0  # slots concealed with later audio already here, or skipped after a hold
    held: int = 0  # slots concealed with nothing here (waiting for a late frame or a slow clock)
    late: int = 0  # frames that came after their slot was concealed or played
    duplicate: int = 0
    caught_up: int = 0  # frames dropped to take back delay
    resyncs: int = 0
    odd_size: int = 0  # packets that were not whole 20 ms frames


class JitterBuffer:
    """Frames of one RTP stream by timestamp, handed out one per line tick (see the module doc).

    ``capacity`` frames bound the buffer (and how far a timestamp may jump before it starts a new
    timeline); ``window`` ticks is how long a surplus must last before it is dropped (25: 0.5 s); ``cushion``
    frames are kept on purpose (0: the least delay; more rides out network jitter).
    """

    def __init__(self, *, capacity: int = 50, window: int = 25, cushion: int = 0) -> None:
        if capacity < 2 or window < 1 or not 0 <= cushion < capacity:
            raise ValueError(f"jitter buffer: need capacity >= 2, window >= 1, 0 <= cushion < capacity "
                             f"(got capacity={capacity}, window={window}, cushion={cushion})")
        self.capacity, self.window, self.cushion = capacity, window, cushion
        self.stats = JitterStats()
        self._frames: dict[int, tuple[bytes, float]] = {}  # unwrapped timestamp -> (payload, arrival)
        self._next: int | None = None  # unwrapped timestamp of the slot the next tick plays
        self._held = 0  # slots concealed while waiting at self._next
        self._raw: int = 0  # last 32-bit timestamp seen, and its unwrapped value
        self._ext: int = 0
        self._low = capacity  # the fewest frames left after a tick in this window
        self._ticks = 0
        self.last_wait: float | None = None  # arrival -> playout of the frame the last tick played

    @property
    def started(self) -> bool:
        return self._next is not None

    @property
    def depth(self) -> int:
        """Frames waiting to be played."""
        return len(self._frames)

    def _unwrap(self, ts: int) -> int:
        if self._next is None:
            self._raw, self._ext = ts, ts
            return ts
        ext = self._ext + ((ts - self._raw + (1 << 31)) % (1 << 32) - (1 << 31))
        if ext > self._ext:
            self._raw, self._ext = ts, ext
        return ext

    def put(self, timestamp: int, payload: bytes, arrived: float = 0.0) -> str:
        """One RTP packet's timestamp and G.711 payload. Returns what became of it: ``queued``,
        ``late``, ``duplicate``, ``resync`` (queued on a new timeline) or ``odd_size``."""
        if not payload or len(payload) % FRAME:
            self.stats.odd_size += 1
            return "odd_size"
        ts = self._unwrap(timestamp & 0xFFFFFFFF)
        if self._next is None:
            self._next = ts
        outcome = "queued"
        for i in range(0, len(payload), FRAME):
            fts = ts + i
            ahead = (fts - self._next) // FRAME
            if ahead >= self.capacity or ahead < -self.capacity:
                self._resync(fts)
                outcome = "resync"
            elif ahead < 0:
                self.stats.late += 1
                outcome = "late"
                continue
            elif fts in self._frames:
                self.stats.duplicate += 1
                outcome = "duplicate"
                continue
            self._frames[fts] = (payload[i:i + FRAME], arrived)
            self.stats.received += 1
        return outcome

    def _resync(self, ts: int) -> None:
        self._frames.clear()
        self._next, self._held = ts, 0
        self._raw, self._ext = ts & 0xFFFFFFFF, ts
        self.stats.resyncs += 1

    def pop(self, now: float = 0.0) -> bytes | None:
        """The frame for this tick, or None: conceal (or, before the first packet, silence)."""
        if self._next is None:
            return None
        got = self._frames.pop(self._next, None)
        if got is None and self._frames:
            if self._held:
                # the slots concealed while holding stand for the missing frames: play the next one now
                first = min(self._frames)
                self.stats.lost += (first - self._next) // FRAME
                self._next = first
                got = self._frames.pop(first)
            else:
                self.stats.lost += 1
                self._next += FRAME
        elif got is None:
            self.stats.held += 1
            self._held += 1
        if got is None:
            self.last_wait = None
            self._observe()
            return None
        self._next += FRAME
        self._held = 0
        self.stats.played += 1
        self.last_wait = now - got[1]
        self._observe()
        return got[0]

    def _observe(self) -> None:
        depth = len(self._frames)
        if depth <= self.cushion:
            self._low, self._ticks = self.capacity, 0  # no surplus: nothing to take back
            return
        self._low = min(self._low, depth)
        self._ticks += 1
        if self._ticks < self.window:
            return
        surplus = self._low - self.cushion  # frames that waited here through the whole window
        for _ in range(surplus):  # the oldest first (they would play next)
            first = min(self._frames)
            del self._frames[first]
            self._next = first + FRAME
        self.stats.caught_up += surplus
        self._low, self._ticks = self.capacity, 0


@dataclass
class Playout:
    """The receive side of one call: RTP payloads in, one 20 ms linear frame per line tick out.

    Decodes once with the law of each packet's payload type (PCMU 0, PCMA 8) and conceals a missing
    frame with spandsp's PLC (``drivers.dsp.LossConcealer``), which also smooths the join after it.
    ``waits_ms`` keeps how long the last frames played waited here (arrival -> line).
    """

    buffer: JitterBuffer = field(default_factory=JitterBuffer)
    clock: Callable[[], float] = time.monotonic
    unknown_payload_type: int = 0
    waits_ms: deque = field(default_factory=lambda: deque(maxlen=1000))

    def __post_init__(self) -> None:
        self._plc = LossConcealer()
        self._codecs = {law: G711(law) for law in (ULAW, ALAW)}
        self._law = ULAW

    def put(self, payload_type: int, timestamp: int, payload: bytes) -> str:
        law = PAYLOAD_TYPE_LAW.get(payload_type)
        if law is None:
            self.unknown_payload_type += 1
            return "unknown_payload_type"
        self._law = law
        return self.buffer.put(timestamp, payload, self.clock())

    def tick(self) -> np.ndarray:
        """The 160 samples to play to the line now."""
        payload = self.buffer.pop(self.clock())
        if payload is not None:
            self.waits_ms.append(1000 * self.buffer.last_wait)
            return self._plc.good(self._codecs[self._law].decode(payload))
        if self.buffer.started:
            return self._plc.lost(FRAME)
        return np.zeros(FRAME, dtype=np.int16)
