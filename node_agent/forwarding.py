"""A call transferred to an HQ agent: it waits at the branch, then talks over WebRTC.

When the IVR reaches ``transfer`` and the node has an uplink, :meth:`Forwarder.forward`:

1. queues the call at HQ (``queue_call``). No link, no answer within ``queue_timeout_s``, or a
   refusal: the transfer's ``fallback``, as before there was an HQ;
2. keeps the caller in the IVR: the hold prompt every ``hold_every_s``, the position ("you are
   number 2 in line", from HQ's ``queue_position``) every ``announce_every_s``; the
   ``callback_key`` leaves the queue (``queue_leave``) for a callback number (collected by DTMF,
   confirmed, sent to HQ through the outbox as a ``callback`` item). ``max_wait_s`` without an
   agent, or the link lost, and the caller goes to the fallback. Nothing crosses the WAN but
   signalling until an agent takes the call;
3. on ``connect`` (an agent took it): a :class:`~central_link.media.session.MediaSession` answers
   the agent's offer, the prompts stop, and the line's audio is bridged both ways — the caller's
   slots through the call's :class:`~node_agent.audio_filter.FrameFilter`, encoded once; the
   agent's decoded once (or concealed) to the line;
4. either side hanging up ends both legs: the agent's ``hang_up`` ends the IVR (the runner then
   releases the line), the caller hanging up sends ``call_ended``; a media connection that fails
   ends the call too. The call record gets the agent, the time in queue and the talk time.

A ``verify`` from HQ while talking is handed to the node's secure capture (``captures``); a node
with none answers ``unavailable``. Digits never leave the node: captures report counts only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from central_link.media.ice import IceConfig
from central_link.media.session import MediaError, MediaSession
from central_link.protocol import (
    CallEnded,
    Connect,
    ConnectFailed,
    HangUp,
    MediaAnswer,
    Message,
    ProtocolError,
    QueueCall,
    QueueLeave,
    QueuePosition,
    QueueRefused,
    Verify,
    VerifyAgain,
    VerifyCancel,
    VerifyProgress,
    VerifyResult,
)
from central_link.uplink import LinkDown, Uplink
from drivers.dsp import ALAW, ULAW
from hal import RxFrame

from .audio_filter import FrameFilter, PassThrough
from .config import FlowNode, Forwarding
from .ivr import Call, Ivr

log = logging.getLogger("node_agent.forwarding")
LINK_LOST = object()  # put in a call's events when the uplink goes down
END_CALL = object()  # put by a capture whose rule ends the call
HANGUP_GRACE_S = 1.0  # media ended: HQ's hang_up may be on its way (the agent's browser closed first)


@dataclass
class Capture:
    """One secure capture HQ asked for, as the node's capture code sees it: the call, the node's
    IVR (prompts, Authenticator), the call's caller -> agent ``filter`` (the DTMF mask, whose
    capture mode keeps the capture's audio from the agent) and its media ``session``. ``commands``
    gets the agent's ``VerifyAgain`` / ``VerifyCancel``; ``progress`` and ``result`` report back
    (counts and outcomes only: the messages refuse anything else); ``end_call()`` ends the call
    after the result (three failures, where the configured rule says so). While it runs the
    agent's audio is not played to the line (the capture's prompts are)."""

    call: Call
    ivr: Ivr
    filter: FrameFilter
    session: MediaSession
    capture: str
    fields: list[str]
    progress: Callable[[str, int, str], None]  # (field, keys pressed so far, state)
    result: Callable[[str, str], None]  # (outcome, account when verified or locked)
    end_call: Callable[[], None]
    commands: asyncio.Queue = field(default_factory=asyncio.Queue)


CaptureRunner = Callable[[Capture], Awaitable[None]]


class _ToLine:
    """Where the agent's audio goes: the line's audio port, except while a secure capture plays its
    prompts there (the capture waits for each to drain): then the agent's frames are dropped."""

    def __init__(self, port) -> None:
        self.port = port
        self.paused = 0  # captures running

    def write(self, frame: np.ndarray) -> None:
        if not self.paused:
            self.port.write(frame)


@dataclass
class _Forwarded:
    call: Call
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    position: int = 0
    state: str = "queuing"  # queuing -> queued -> talking, or left
    captures: dict[str, tuple[Capture, asyncio.Task]] = field(default_factory=dict)
    filter: FrameFilter | None = None
    to_line: _ToLine | None = None


def _auth(call: Call) -> tuple[str, str, str]:
    """The IVR's authentication as HQ's screen pop and queue take it: (state, and only when verified
    the account and its class)."""
    if call.auth_outcome == "verified":
        return "verified", call.account, call.account_class
    return ("failed", "", "") if call.auth_outcome else ("none", "", "")


class Forwarder:
    """The node's forwarded calls; the uplink's :class:`~central_link.uplink.LiveHandler`.
    ``law()`` is the card's G.711 law; ``filters(call)`` the call's caller -> agent filter."""

    def __init__(self, settings: Forwarding, law: Callable[[], int], *,
                 filters: Callable[[Call], FrameFilter] = lambda call: PassThrough(),
                 captures: CaptureRunner | None = None) -> None:
        self.settings = settings
        self.law = law
        self.filters = filters
        self.captures = captures
        self.ice: IceConfig = settings.ice or IceConfig()
        self.link: Uplink | None = None  # set once the uplink is made (it takes this as its handler)
        self.calls: dict[str, _Forwarded] = {}
        self._tasks: set[asyncio.Task] = set()

    # -- the uplink's LiveHandler --------------------------------------------------------------------
    def received(self, msg: Message) -> None:
        fc = self.calls.get(msg.call)  # type: ignore[attr-defined]
        if fc is not None:
            fc.events.put_nowait(msg)
        elif isinstance(msg, Connect):
            self._send_soon(ConnectFailed(msg.call, "the call is not waiting for an agent any more"))
        elif isinstance(msg, HangUp):
            self._send_soon(CallEnded(msg.call, "node", "no such call at the branch"))
        elif isinstance(msg, Verify | VerifyCancel | VerifyAgain):
            self._send_soon(VerifyResult(msg.call, msg.capture, "unavailable"))

    def link_changed(self, up: bool) -> None:
        if not up:
            for fc in self.calls.values():
                fc.events.put_nowait(LINK_LOST)

    def _send_soon(self, msg: Message) -> None:
        """Send without waiting (from a finally, or the uplink's receive loop)."""
        async def go() -> None:
            try:
                if self.link is None:
                    raise LinkDown("no uplink")
                await self.link.send(msg)
            except (LinkDown, ProtocolError) as exc:
                log.info("%s for call %s not sent: %s", msg.TYPE, getattr(msg, "call", "?"), exc)

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the transfer ----------------------------------------------------------------------------------
    async def forward(self, call: Call, ivr: Ivr, node: FlowNode) -> str | None:
        """The IVR's ``transfer`` with an uplink: the next flow node (the fallback), or None when the
        call is over (talked to an agent, or left a callback number)."""
        if self.link is None or not self.link.up:
            return self._fallback(call, node, "HQ is not connected")
        if call.call_id in self.calls:
            return self._fallback(call, node, "the call was transferred already")
        fc = _Forwarded(call)
        self.calls[call.call_id] = fc  # before asking: HQ's first position or connect may follow its answer at once
        try:
            return await self._forward(fc, ivr, node)
        finally:
            del self.calls[call.call_id]
            call.transfer = ""

    async def _forward(self, fc: _Forwarded, ivr: Ivr, node: FlowNode) -> str | None:
        call, s = fc.call, self.settings
        auth, account, account_class = _auth(call)
        ask = QueueCall(call.call_id, call.line.number, call.caller_number, list(call.path), call.language, auth,
                        account, account_class)
        try:
            answer = await self.link.queue_call(ask, s.queue_timeout_s)
        except LinkDown as exc:
            return self._fallback(call, node, str(exc))
        except asyncio.CancelledError:  # hung up while HQ was queuing it: HQ may have it already
            self._leave(fc, "caller_hangup")
            raise
        if isinstance(answer, QueueRefused):
            return self._fallback(call, node, f"HQ did not queue it ({answer.reason})")
        fc.position, fc.state, call.transfer = answer.position, "queued", "queued"
        log.info("line %d: call %s queued at HQ, number %d in line", call.line.number, call.call_id, answer.position)
        t0 = time.monotonic()
        try:
            outcome = await self._wait(fc, ivr)
        except BaseException:  # the caller hung up (the IVR is being cancelled), or the node stops
            self._leave(fc, "caller_hangup")
            raise
        finally:
            call.queue_ms = round((time.monotonic() - t0) * 1000)
        if isinstance(outcome, Connect):
            fc.state = "connecting"
            return await self._talk(fc, ivr, outcome, node)
        if outcome == "callback":
            self._leave(fc, "callback")
            ask_number = FlowNode("hq_callback", "callback", {"prompt": s.callback_prompt,
                                                              "confirm_prompt": s.callback_confirm_prompt,
                                                              "next": None})
            await ivr._callback(call, ask_number)
            if "callback" in call.values:
                call.disposition = "callback_left"
                return None
            return self._fallback(call, node, "the caller left the queue for a callback and keyed no number")
        if outcome == "timeout":
            self._leave(fc, "timeout")
            return self._fallback(call, node, f"no agent took it within {s.max_wait_s:g} s")
        return self._fallback(call, node, "the link to HQ was lost while the call waited")

    def _leave(self, fc: _Forwarded, reason: str) -> None:
        fc.state = "left"
        self._send_soon(QueueLeave(fc.call.call_id, reason))

    def _fallback(self, call: Call, node: FlowNode, why: str) -> str:
        log.info("line %d: call %s takes the transfer's fallback: %s", call.line.number, call.call_id, why)
        call.disposition = "transfer_fallback"
        return node["fallback"]

    async def _wait(self, fc: _Forwarded, ivr: Ivr):
        """Hold the caller until HQ connects the call (the Connect), or "callback", "timeout", "lost"."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_wait_s
        hold = asyncio.create_task(self._hold(fc, ivr), name=f"hold {fc.call.call_id}")
        get: asyncio.Future | None = None
        try:
            while True:
                if get is None:
                    get = asyncio.ensure_future(fc.events.get())
                done, _ = await asyncio.wait({hold, get}, timeout=max(0.0, deadline - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    msg, get = get.result(), None
                    if isinstance(msg, QueuePosition):
                        fc.position = msg.position
                    elif isinstance(msg, Connect):
                        return msg
                    elif msg is LINK_LOST or isinstance(msg, HangUp):
                        return "lost"
                    else:
                        self._not_talking(msg)
                elif hold in done:
                    return hold.result()
                elif not done:
                    return "timeout"
        finally:
            if get is not None:
                get.cancel()
            hold.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({hold})
            fc.call.line.audio.clear()  # whatever hold prompt was playing stops here

    def _not_talking(self, msg: Message) -> None:
        if isinstance(msg, Verify | VerifyCancel | VerifyAgain):
            self._send_soon(VerifyResult(msg.call, msg.capture, "unavailable"))

    async def _hold(self, fc: _Forwarded, ivr: Ivr) -> str:
        """The hold prompts and position announcements, and the caller's keys: returns "callback"
        when the caller presses the callback key (other keys are not for the queue: dropped)."""
        s, call = self.settings, fc.call
        loop = asyncio.get_running_loop()
        next_hold = next_announce = loop.time()
        while True:
            now = loop.time()
            if s.position_prompt and fc.position > 0 and now >= next_announce:
                n = fc.position
                pcm = await asyncio.to_thread(ivr.prompts.spoken, s.position_prompt, call.language, n)
                await ivr.play_clips(call, [(f"{s.position_prompt}:{n}", pcm)])
                next_announce = loop.time() + s.announce_every_s
            elif s.hold_prompt and now >= next_hold:
                await ivr.play(call, [s.hold_prompt])
                next_hold = loop.time() + s.hold_every_s
            due = [t for t, on in ((next_hold, s.hold_prompt), (next_announce, s.position_prompt)) if on]
            wait_ms = max(100, int(((min(due) if due else now + 5) - loop.time()) * 1000))
            key = await ivr._key(call, wait_ms)
            if key is not None and key == s.callback_key:
                return "callback"

    # -- talking ------------------------------------------------------------------------------------------
    async def _talk(self, fc: _Forwarded, ivr: Ivr, connect: Connect, node: FlowNode) -> str | None:
        call, line = fc.call, fc.call.line
        fc.to_line = _ToLine(line.audio)
        session = MediaSession(fc.to_line, law=self.law(), ice=self.ice)
        try:
            sdp = await session.answer(connect.sdp)
            await self.link.send(MediaAnswer(call.call_id, sdp))
        except (MediaError, LinkDown) as exc:
            await session.close()
            self._send_soon(ConnectFailed(call.call_id, _words(exc)))
            return self._fallback(call, node, f"the agent's call could not be connected: {exc}")
        except asyncio.CancelledError:  # the caller hung up while the answer was being made
            self._send_soon(ConnectFailed(call.call_id, "the caller hung up"))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.close(), 5)
            raise
        fc.state, call.transfer, call.agent = "talking", "talking", connect.agent
        fc.filter = filt = self.filters(call)
        line.audio.clear()

        def tap(frame: RxFrame) -> None:  # every caller -> agent slot goes through the call's one filter
            session.on_line_frame(RxFrame(frame.t_ms, filt.process(frame.pcm), frame.lost, frame.digits, frame.busy))

        line.set_rx_tap(tap)
        log.info("line %d: call %s talking to agent %s", line.number, call.call_id, connect.agent)
        t0 = time.monotonic()
        by, reason = "node", ""
        waits: dict[str, asyncio.Future] = {
            "connected": asyncio.ensure_future(session.wait_connected(self.settings.connect_timeout_s)),
            "ended": asyncio.ensure_future(session.wait_ended())}
        try:
            while True:
                if "event" not in waits:
                    waits["event"] = asyncio.ensure_future(fc.events.get())
                done, _ = await asyncio.wait(set(waits.values()), return_when=asyncio.FIRST_COMPLETED)
                if waits.get("connected") in done:
                    if waits.pop("connected").exception() is not None:
                        reason, call.disposition = "the media connection to the agent did not come up", "media_failed"
                        return None
                if waits["ended"] in done:
                    if await self._agent_hung_up(fc, waits):  # its browser may close the media before HQ says so
                        by, reason, call.disposition = "agent", "the agent hung up", "agent_hangup"
                    else:
                        reason, call.disposition = "the media connection to the agent was lost", "media_lost"
                    return None
                if waits["event"] in done:
                    msg = waits.pop("event").result()
                    if isinstance(msg, HangUp):
                        by, reason, call.disposition = "agent", "the agent hung up", "agent_hangup"
                        return None
                    if msg is LINK_LOST:  # HQ ended the agent's side when it lost this node
                        reason, call.disposition = "the link to HQ was lost", "hq_link_lost"
                        return None
                    if msg is END_CALL:
                        reason, call.disposition = "the caller could not be verified", "verify_failed"
                        return None
                    if isinstance(msg, Verify | VerifyCancel | VerifyAgain):
                        self._capture(fc, ivr, session, msg)
                    elif isinstance(msg, Connect):
                        self._send_soon(ConnectFailed(msg.call, "the call is talking to an agent already"))
        except asyncio.CancelledError:
            if call.ended.is_set():
                by, reason = "caller", "the caller hung up"
            else:
                reason = "the node stopped"
            raise
        finally:
            for w in waits.values():
                w.cancel()
            line.set_rx_tap(None)
            call.talk_ms = round((time.monotonic() - t0) * 1000)
            for _cap, task in fc.captures.values():
                task.cancel()
            self._send_soon(CallEnded(call.call_id, by, reason))
            log.info("line %d: call %s with agent %s ended by the %s after %.1f s (%s)", line.number, call.call_id,
                     connect.agent, by, call.talk_ms / 1000, reason)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.close(), 5)

    async def _agent_hung_up(self, fc: _Forwarded, waits: dict[str, asyncio.Future]) -> bool:
        """Whether HQ's hang_up comes within HANGUP_GRACE_S of the media ending (what else comes is dropped)."""
        event = waits.pop("event", None) or asyncio.ensure_future(fc.events.get())
        try:
            async with asyncio.timeout(HANGUP_GRACE_S):
                while True:
                    msg = await event
                    if isinstance(msg, HangUp):
                        return True
                    event = asyncio.ensure_future(fc.events.get())
        except TimeoutError:
            return False
        finally:
            event.cancel()

    def _capture(self, fc: _Forwarded, ivr: Ivr, session: MediaSession,
                 msg: Verify | VerifyCancel | VerifyAgain) -> None:
        cid = fc.call.call_id
        running = fc.captures.get(msg.capture)
        if isinstance(msg, Verify):
            if running is not None or fc.captures or self.captures is None:  # one capture at a time
                self._send_soon(VerifyResult(cid, msg.capture, "unavailable"))
                return
            cap = Capture(fc.call, ivr, fc.filter, session, msg.capture, list(msg.fields),
                          progress=lambda f, n, st, c=msg.capture: self._send_soon(VerifyProgress(cid, c, f, n, st)),
                          result=lambda out, acc="", c=msg.capture: self._send_soon(VerifyResult(cid, c, out, acc)),
                          end_call=lambda: fc.events.put_nowait(END_CALL))
            fc.to_line.paused += 1

            async def run() -> None:
                try:
                    await self.captures(cap)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("call %s: capture %s failed", cid, msg.capture)
                    cap.result("unavailable", "")
                finally:
                    session.mute(False)  # whatever happened, the caller is heard again
                    fc.to_line.paused -= 1
                    fc.captures.pop(msg.capture, None)

            fc.captures[msg.capture] = (cap, asyncio.create_task(run(), name=f"capture {msg.capture}"))
        elif running is None:
            self._send_soon(VerifyResult(cid, msg.capture, "cancelled" if isinstance(msg, VerifyCancel)
                                         else "unavailable"))
        else:
            running[0].commands.put_nowait(msg)


def _words(exc: BaseException) -> str:
    """An exception as a connect_failed reason: short, and no run of digits (the protocol's rule)."""
    return re.sub(r"\d{4,}", "…", str(exc))[:200] or type(exc).__name__


def line_law(law_name: str | None) -> int:
    """The card's law as the HAL names it ("ulaw" / "alaw")."""
    return ALAW if law_name == "alaw" else ULAW
