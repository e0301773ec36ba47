"""The minimal node: answer, greet, print caller ID and digits, hang up when the caller does."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import numpy as np

import hal
from drivers.audiofile import MediaError, speak
from drivers.dsp import ToneGenerator, ToneSpec
from hal import events as ev

log = logging.getLogger("node_agent")
ANSWER_ON_RING = 2  # caller ID arrives between the first and second ring


def greeting(text: str, voice: str) -> np.ndarray:
    """A short 1 kHz beep, then ``text`` spoken by espeak-ng."""
    beep = ToneGenerator(ToneSpec(1000, 0, -13, 0, 0)).read(8 * 300)
    gap = np.zeros(8 * 200, dtype=np.int16)
    try:
        words = speak(text, voice)
    except MediaError as exc:
        log.warning("greeting speech unavailable (%s); playing the beep only", exc)
        words = np.zeros(0, dtype=np.int16)
    return np.concatenate([beep, gap, words])


class MinimalNode:
    def __init__(self, board: hal.Board, *, greeting_pcm: np.ndarray,
                 out: Callable[[dict], None] = lambda rec: print(json.dumps(rec), flush=True)) -> None:
        self.board = board
        self.greeting = greeting_pcm
        self.out = out

    async def run(self) -> None:
        await asyncio.gather(*(self._line(line) for line in self.board.lines))

    async def _line(self, line: hal.Line) -> None:
        call: dict | None = None
        while True:
            e = await line.next_event()
            if isinstance(e, ev.Ring):
                if call is None:
                    call = {"line": line.number, "caller_id": None, "digits": "", "rang_at": time.time()}
                    self.out({"event": "ring", "line": line.number})
                if e.count >= ANSWER_ON_RING and not line.offhook:
                    await line.answer()
                    call["answered_at"] = time.time()
                    self.out({"event": "answered", "line": line.number, "caller_id": call["caller_id"]})
                    line.audio.write(self.greeting)
            elif isinstance(e, ev.CallerIdReceived) and call is not None:
                call["caller_id"] = {"number": e.number, "name": e.name}
                self.out({"event": "caller_id", "line": line.number, "number": e.number, "name": e.name})
            elif isinstance(e, ev.DigitReceived) and call is not None:
                call["digits"] += e.digit
                self.out({"event": "digit", "line": line.number, "digit": e.digit, "ms": e.duration_ms})
            elif isinstance(e, (ev.HungUp, ev.LineDown, ev.RingingStopped)):
                if call is not None:
                    if line.offhook:
                        try:
                            await line.hangup()
                        except ConnectionError as exc:
                            log.warning("line %d: hang-up not confirmed: %s", line.number, exc)
                    reason = getattr(e, "reason", "missed")
                    self.out({"event": "cleared", "line": line.number, "reason": reason,
                              "caller_id": call["caller_id"], "digits": call["digits"]})
                    call = None
