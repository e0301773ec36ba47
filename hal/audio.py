"""Audio ports: 20 ms frames of 8 kHz linear int16 in and out of a line."""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np

FRAME = 160
SILENCE = np.zeros(FRAME, dtype=np.int16)


class AudioPort:
    """Frames from the line (after echo cancellation) and frames to it.

    The line's clock drives both directions: one frame is sent to the line for each frame that
    arrives from it, taken from what was written here or silence. ``read`` keeps at most
    ``rx_depth`` frames for a slow reader (older ones are dropped and counted).
    """

    def __init__(self, rx_depth: int = 50) -> None:
        self._rx: deque[np.ndarray] = deque(maxlen=rx_depth)
        self._rx_ready = asyncio.Event()
        self._tx: deque[np.ndarray] = deque()
        self._tx_done = asyncio.Event()
        self._tx_done.set()
        self.rx_dropped = 0
        self.frames_in = 0
        self.frames_out = 0

    # -- the node's side -----------------------------------------------------------------------
    async def read(self) -> np.ndarray:
        while not self._rx:
            self._rx_ready.clear()
            await self._rx_ready.wait()
        return self._rx.popleft()

    def write(self, frame: np.ndarray) -> None:
        """Queue one frame (or any length: it is cut into 20 ms frames, the last padded)."""
        pcm = np.asarray(frame, dtype=np.int16)
        for i in range(0, len(pcm), FRAME):
            chunk = pcm[i:i + FRAME]
            if len(chunk) < FRAME:
                chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), dtype=np.int16)])
            self._tx.append(chunk)
        if self._tx:
            self._tx_done.clear()

    play = write

    def clear(self) -> None:
        """Stop what is playing (barge-in)."""
        self._tx.clear()
        self._tx_done.set()

    @property
    def playing(self) -> bool:
        return bool(self._tx)

    async def drained(self) -> None:
        """Wait until everything written has been sent to the line."""
        await self._tx_done.wait()

    # -- the backend's side ----------------------------------------------------------------------
    def deliver(self, frame: np.ndarray) -> None:
        if len(self._rx) == self._rx.maxlen:
            self.rx_dropped += 1
        self._rx.append(frame)
        self.frames_in += 1
        self._rx_ready.set()

    def next_out(self) -> np.ndarray:
        self.frames_out += 1
        if self._tx:
            f = self._tx.popleft()
            if not self._tx:
                self._tx_done.set()
            return f
        return SILENCE

    def reset(self) -> None:
        self._rx.clear()
        self.clear()
