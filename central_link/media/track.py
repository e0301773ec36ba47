"""The line's audio to aiortc, already G.711-encoded: the one encode of the caller's voice.

aiortc skips its encoder when a track's ``recv()`` returns an ``av.Packet`` (``RTCRtpSender.
_next_encoded_frame`` calls only the codec's ``pack()``, and for G.711 the whole packet becomes one
RTP payload). Otherwise every 20 ms frame of every call goes through FFmpeg in a thread pool, the
first cost that stops a Python process near 15 calls. So each packet here is exactly one 20 ms
frame (160 octets), ``pts`` on the 8 kHz clock. aiortc's send loop does not pace: the line does,
one :meth:`LineTrack.push` per 20 ms slot; a sender that falls behind loses the oldest frames, not
latency (``depth``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from drivers.dsp import G711, ULAW

FRAME = 160
TIME_BASE = Fraction(1, 8000)


class LineTrack(MediaStreamTrack):
    """A call's audio from the line. ``law`` may change once negotiation settles it."""

    kind = "audio"

    def __init__(self, law: int = ULAW, depth: int = 3) -> None:
        super().__init__()
        self._codec = G711(law)
        self._q: deque[tuple[int, bytes]] = deque()
        self._ready = asyncio.Event()
        self._pts = 0
        self.depth = depth
        self.dropped = 0
        self.sent = 0

    @property
    def law(self) -> int:
        return self._codec.law

    @law.setter
    def law(self, law: int) -> None:
        if law != self._codec.law:
            self._codec = G711(law)
            self._q.clear()  # frames queued in the other law would be noise

    def push(self, pcm: np.ndarray) -> None:
        """One 20 ms frame of linear audio from the line (160 samples)."""
        self._q.append((self._pts, self._codec.encode(pcm)))
        self._pts += FRAME
        while len(self._q) > self.depth:
            self._q.popleft()
            self.dropped += 1
        self._ready.set()

    async def recv(self) -> av.Packet:
        while not self._q:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        pts, payload = self._q.popleft()
        packet = av.Packet(payload)
        packet.pts = pts
        packet.time_base = TIME_BASE
        self.sent += 1
        return packet

    def stop(self) -> None:
        super().stop()
        self._ready.set()  # a recv() waiting wakes and ends
