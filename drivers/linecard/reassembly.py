"""Card -> host audio frames back in order: the host's side of audio redundancy.

Pure (no I/O, no clock, no DSP): frames go in with their 16-bit sequence number as they arrive,
20 ms slots come out in order, each the frame's payload or ``None`` for a frame that is missing
for good. Modelled on aiortc's ``jitterbuffer.py``, without its flaw: a missing frame is given up
as soon as its last copy is overdue (``wait`` frames), never held until a window fills.

* a redundant copy of a frame already delivered, or already held, is dropped (``duplicates``);
* a frame that comes after its slot was given up is dropped (``late``);
* a gap is given up when a frame ``wait`` or more ahead of it has arrived: ``wait`` is 1 with one
  copy per frame, 2 with more (the card sends the last copy one tick late, so it may still come);
* sequence numbers wrap at 0xFFFF;
* a jump of more than ``resync_after`` frames either way is a restarted stream (a card that
  rebooted, a caller ID window reopened): the buffer starts afresh at that frame (``resyncs``).

``ticks`` in each :class:`Arrival` says by how many frames the card's clock moved (the highest
sequence number seen went up): the host sends that many frames back, so the card paces both ways
even while a missing frame is still awaited.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from firmware.card.wire import seq_diff

T = TypeVar("T")
RESYNC_AFTER = 50  # frames (1 s): a sequence jump this large is a restarted stream, not a loss


def wait_for_copies(copies: int) -> int:
    """Frames to wait for a missing frame's last copy: the card sends k-1 copies at once and the
    last one a tick later (docs/linecard-protocol.md, "Audio redundancy")."""
    return 2 if copies > 1 else 1


@dataclass
class ReassemblyCounters:
    frames: int = 0  # slots filled with a frame
    lost: int = 0  # slots given up (no copy of the frame arrived in time)
    late: int = 0  # frames that arrived after their slot was given up
    duplicates: int = 0  # redundant copies dropped
    gaps: int = 0  # runs of lost slots
    longest_gap: int = 0  # the longest such run
    resyncs: int = 0  # restarted streams


class Arrival(NamedTuple, Generic[T]):
    ticks: int  # how far the card's clock moved with this frame (0 for a copy or a late frame)
    slots: list[T | None]  # 20 ms slots now due, in order; None = lost


_NOTHING: list = []


class Reassembler(Generic[T]):
    def __init__(self, wait: int = 1, resync_after: int = RESYNC_AFTER) -> None:
        self.wait = wait
        self.resync_after = resync_after
        self.counters = ReassemblyCounters()
        self._next: int | None = None  # the seq of the next slot to hand out
        self._high: int | None = None  # the highest seq seen (the card's clock)
        self._held: dict[int, T] = {}
        self._given_up: deque[int] = deque(maxlen=resync_after)
        self._gap_run = 0

    def reset(self) -> None:
        """A new stream: the next frame starts it (counters are kept)."""
        self._next = self._high = None
        self._held.clear()
        self._given_up.clear()
        self._gap_run = 0

    def push(self, seq: int, item: T) -> Arrival[T]:
        c = self.counters
        if self._next is None:
            self._next = seq
        d = seq_diff(seq, self._next)
        if abs(d) > self.resync_after:
            self.reset()
            c.resyncs += 1
            self._next = seq
            d = 0
        if d < 0:
            if seq in self._given_up:
                c.late += 1
            else:
                c.duplicates += 1
            return Arrival(0, _NOTHING)
        if seq in self._held:
            c.duplicates += 1
            return Arrival(0, _NOTHING)
        if self._high is None:
            self._high = (seq - 1) & 0xFFFF
        ticks = seq_diff(seq, self._high)
        if ticks > 0:
            self._high = seq
        else:
            ticks = 0
        self._held[seq] = item
        slots: list[T | None] = []
        while self._held:
            got = self._held.pop(self._next, None)
            if got is None:
                ahead = max(seq_diff(s, self._next) for s in self._held)
                if ahead < self.wait:
                    break  # the last copy of the missing frame may still come
                self._give_up(self._next)
            else:
                self._gap_run = 0
                c.frames += 1
            slots.append(got)
            self._next = (self._next + 1) & 0xFFFF
        return Arrival(ticks, slots)

    def _give_up(self, seq: int) -> None:
        c = self.counters
        c.lost += 1
        self._given_up.append(seq)
        self._gap_run += 1
        if self._gap_run == 1:
            c.gaps += 1
        c.longest_gap = max(c.longest_gap, self._gap_run)
