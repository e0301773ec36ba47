"""The two ends of a loopback media test: a line ticking in real time around a node MediaSession,
and a plain aiortc peer standing in for the agent's browser (its own encoder, jitter buffer and
decoder: aiortc as shipped)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

import hal
from central_link.media.ice import IceConfig
from central_link.media.session import MediaSession
from drivers.dsp import ToneGenerator, ToneSpec
from drivers.dsp.receive import RxFrame

FRAME = 160


def tone(freq: int, level_dbm0: int = -10) -> ToneGenerator:
    return ToneGenerator(ToneSpec(freq, 0, level_dbm0, 0, 0))


class ToneTrack(MediaStreamTrack):
    """The agent's microphone: a steady tone as aiortc AudioFrames, paced in real time."""

    kind = "audio"

    def __init__(self, freq: int) -> None:
        super().__init__()
        self._gen = tone(freq)
        self._pts = 0
        self._t0: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        await asyncio.sleep(max(0.0, self._t0 + self._pts / 8000 - time.monotonic()))
        frame = av.AudioFrame.from_ndarray(self._gen.read(FRAME).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 8000, self._pts, Fraction(1, 8000)
        self._pts += FRAME
        return frame


class Agent:
    """A plain aiortc peer: sends a tone, keeps what it hears (decoded by aiortc)."""

    def __init__(self, ice: IceConfig, freq: int = 1000, track: MediaStreamTrack | None = None) -> None:
        self.ice = ice
        self.pc = RTCPeerConnection(configuration=ice.rtc_configuration())
        self.transceiver = self.pc.addTransceiver(track or ToneTrack(freq), direction="sendrecv")
        ice.restrict(self.pc)  # aioice would not gather on 127.0.0.1 otherwise
        self.heard: list[np.ndarray] = []
        self._pull: asyncio.Task | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track) -> None:
        async def pull() -> None:
            with contextlib.suppress(Exception):
                while True:
                    self.heard.append((await track.recv()).to_ndarray().ravel().copy())
        self._pull = asyncio.ensure_future(pull())

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def close(self) -> None:
        if self._pull:
            self._pull.cancel()
        await self.pc.close()


class Line:
    """The line around a node session, as ``hal.Line`` drives it: every 20 ms one slot to the
    session's tap, then one frame taken from the line's ``hal.AudioPort`` (what the card plays)."""

    def __init__(self, freq: int = 600) -> None:
        self.port = hal.AudioPort()
        self._gen = tone(freq)
        self.played: list[np.ndarray] = []
        self.session: MediaSession | None = None
        self._task: asyncio.Task | None = None

    def start(self, session: MediaSession) -> None:
        self.session = session
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        t, slot = time.monotonic(), 0
        while True:
            self.session.on_line_frame(RxFrame(slot * 20, self._gen.read(FRAME), False))
            self.played.append(self.port.next_out().copy())
            slot += 1
            t += 0.02
            await asyncio.sleep(max(0.0, t - time.monotonic()))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def dominant(frames: list[np.ndarray]) -> tuple[float, float]:
    """The strongest frequency of a stretch of audio and the share of its energy near it."""
    x = np.concatenate(frames).astype(float)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    k = int(np.argmax(spec))
    band = spec[max(0, k - 3):k + 4].sum()
    return k * 8000 / len(x), float(band / spec.sum())
