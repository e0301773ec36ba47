"""The node's side of one forwarded call's media: an aiortc peer connection for one line.

Both directions run on the line's clock, one 20 ms slot at a time (:meth:`MediaSession.on_line_frame`,
which is what ``hal.Line.set_rx_tap`` calls with every slot after the echo canceller)::

    line slot (linear, after the echo canceller)
        -> G.711 encode (the call's law, once) -> av.Packet -> aiortc: RTP/SRTP -> agent
    agent -> aiortc: SRTP/RTP -> receiver hook -> our playout buffer (jitter.py)
        -> G.711 decode (once) or spandsp PLC -> sink.write() (the line's hal.AudioPort)

No resampling anywhere: 8 kHz in, 8 kHz out. Offer and answer are plain SDP strings (the HQ hub
relays them); the node can make the offer or answer one. Nothing here knows the hub.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from drivers.dsp import ULAW, Noise
from drivers.dsp.receive import RxFrame

from .codecs import CodecError, negotiated_law, preferences
from .ice import IceConfig
from .jitter import JitterBuffer, Playout
from .receiver import divert
from .track import LineTrack

COMFORT_NOISE_DBM0 = -65  # what the agent hears while the caller is muted: a line, not dead air


class AudioSink(Protocol):
    """Where the agent's audio goes: the line's ``hal.AudioPort`` (its ``write``)."""

    def write(self, frame: np.ndarray) -> None: ...


class MediaError(RuntimeError):
    """The far end's SDP could not be used: the message says why."""


class MediaSession:
    """One call's media. ``sink`` receives the agent's audio, one frame per line slot; ``law`` is
    the line's G.711 law (preferred in negotiation); ``ice`` where media may go."""

    def __init__(self, sink: AudioSink, *, law: int = ULAW, ice: IceConfig | None = None,
                 jitter: JitterBuffer | None = None, track: LineTrack | None = None) -> None:
        self.sink = sink
        self.ice = ice or IceConfig()
        self.law = law  # the law both sides send with, once negotiated
        self.pc = RTCPeerConnection(configuration=self.ice.rtc_configuration())
        self.track = track or LineTrack(law)
        self.track.law = law
        self.muted = False  # caller -> agent replaced by comfort noise (a secure capture)
        self._noise = Noise(COMFORT_NOISE_DBM0)
        self.playout = Playout(jitter or JitterBuffer())
        self.transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
        self.transceiver.setCodecPreferences(preferences(law))
        divert(self.transceiver.receiver, self.playout)
        self.ice.restrict(self.pc)
        self._connected = asyncio.Event()
        self._ended = asyncio.Event()
        self.pc.on("connectionstatechange", self._state_changed)

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed"):
            self._ended.set()

    # -- signalling: SDP in and out --------------------------------------------------------------
    async def offer(self) -> str:
        """The node's offer (gathering done: candidates are in it)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        await self._set_remote(sdp, "answer")
        self._settle(sdp)

    async def answer(self, offer: str) -> str:
        """Answer the far end's offer; the answer SDP."""
        await self._set_remote(offer, "offer")
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except ValueError as exc:
            raise MediaError(f"cannot answer the far end's offer: {exc}") from None
        self._settle(self.pc.localDescription.sdp)
        return self.pc.localDescription.sdp

    async def _set_remote(self, sdp: str, kind: str) -> None:
        if not isinstance(sdp, str) or "m=audio" not in sdp:
            raise MediaError(f"the far end's {kind} is not an SDP with audio: expected a string with an m=audio line")
        try:
            law = negotiated_law(sdp, self.law)
            await self.pc.setRemoteDescription(RTCSessionDescription(self.ice.filter_sdp(sdp), kind))
        except CodecError as exc:
            raise MediaError(str(exc)) from None
        except ValueError as exc:  # aiortc's parse and validation errors (InvalidStateError is one)
            raise MediaError(f"the far end's {kind} was refused: {exc}") from None
        self.law = law

    def _settle(self, sdp: str) -> None:
        self.law = negotiated_law(sdp, self.law)
        self.track.law = self.law

    async def wait_connected(self, timeout: float) -> None:
        """Until ICE and DTLS are up (media flows), or a clear error after ``timeout`` seconds."""
        done = asyncio.ensure_future(self._connected.wait())
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({done, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            ended.cancel()
        if not self._connected.is_set():
            raise MediaError(f"media did not connect within {timeout} s (state {self.pc.connectionState}, "
                             f"ICE {self.pc.iceConnectionState}): check the ICE networks and TURN servers")

    async def wait_ended(self) -> str:
        """Until the media connection fails or is closed (the far end gone): its last state."""
        await self._ended.wait()
        return self.pc.connectionState

    @property
    def connected(self) -> bool:
        return self.pc.connectionState == "connected"

    # -- media: one call per 20 ms line slot ---------------------------------------------------
    def mute(self, muted: bool = True) -> None:
        """Stop (or restart) passing the caller's audio to the agent: from the next slot on, the
        agent gets comfort noise instead (while the node collects a PIN, say). Frames already
        queued for aiortc were heard before this instant."""
        self.muted = muted

    def on_line_frame(self, frame: RxFrame) -> None:
        """The line's tap: send this slot to the agent, play the agent's next frame to the line."""
        self.track.push(self._noise.read(len(frame.pcm)) if self.muted else frame.pcm)
        self.sink.write(self.playout.tick())

    def stats(self) -> dict:
        s = self.playout.buffer.stats
        return {"law": "ulaw" if self.law == ULAW else "alaw", "sent": self.track.sent,
                "send_dropped": self.track.dropped, "received": s.received, "played": s.played,
                "lost": s.lost, "held": s.held, "late": s.late, "duplicate": s.duplicate,
                "caught_up": s.caught_up, "resyncs": s.resyncs, "depth": self.playout.buffer.depth}

    async def close(self) -> None:
        self.track.stop()
        await self.pc.close()
