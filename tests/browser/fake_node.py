"""A scripted node for the console tests: a CallControl whose ``connect`` answers the browser's
offer with the node's real media session (central_link.media.session.MediaSession) on a line that
sends a known tone and records what the agent's browser sends back; every other command is
recorded for the test to check, and to answer with events as a node would."""

from __future__ import annotations

from dataclasses import dataclass, field

from central_link.hq.call_control import CallGone
from central_link.hq.queue import QueuedCall
from central_link.media.ice import IceConfig
from central_link.media.session import MediaSession
from tests.central_link.peers import Line


class CallerLine(Line):
    """The test line, whose caller's side can switch from its tone to another source (DTMF keys)."""

    def source(self, gen) -> None:
        """From the next slot on the caller sends ``gen.read(160)`` (a ToneGenerator, a DtmfGenerator)."""
        self._gen = gen


@dataclass
class Leg:
    session: MediaSession
    line: CallerLine


@dataclass
class FakeNode:
    tone_hz: int = 600  # what the caller "says": the page must hear it
    asked: list[tuple] = field(default_factory=list)
    legs: dict[str, Leg] = field(default_factory=dict)

    async def connect(self, call: QueuedCall, agent: str, offer_sdp: str) -> str:
        self.asked.append(("connect", call.id, agent))
        line = CallerLine(self.tone_hz)
        session = MediaSession(line.port, ice=IceConfig.loopback())
        line.start(session)  # the line ticks from the start, as a real one does
        self.legs[call.id] = Leg(session, line)
        return await session.answer(offer_sdp)

    async def hang_up(self, call: QueuedCall, agent: str) -> None:
        self.asked.append(("hang_up", call.id, agent))
        await self.end(call.id)

    async def verify(self, call: QueuedCall, agent: str, capture: str, fields: tuple[str, ...]) -> None:
        if call.id not in self.legs:
            raise CallGone(f"call {call.id} is not connected")
        self.asked.append(("verify", call.id, agent, capture, fields))

    async def verify_cancel(self, call: QueuedCall, capture: str) -> None:
        self.asked.append(("verify_cancel", call.id, capture))

    async def verify_again(self, call: QueuedCall, capture: str, field: str) -> None:
        self.asked.append(("verify_again", call.id, capture, field))

    async def end(self, call_id: str) -> None:
        leg = self.legs.pop(call_id, None)
        if leg is not None:
            await leg.line.stop()
            await leg.session.close()

    async def close(self) -> None:
        for call_id in list(self.legs):
            await self.end(call_id)
