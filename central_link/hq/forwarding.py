"""The hub's side of forwarded calls: the nodes' live call messages, and :class:`CallControl` for the
agent API.

A node's ``queue_call`` becomes a :class:`QueuedCall` in the router (answered ``queued`` with its
position, or ``queue_refused``); after every router event each waiting call whose position changed
is told so (``queue_position``). When an agent takes a call, :meth:`NodeCalls.connect` relays the
agent's WebRTC offer to the call's node and returns its answer; hang-up and the secure capture
(verify) go the same way, each waiting for the node's answer with a timeout. What a node reports
(the call ended, a capture's progress and outcome) reaches the agent API through ``AgentEvents``.
A node whose link goes down loses its waiting calls (abandoned) and its talking ones (ended).

Hub call ids are ``NODE:CALL`` (the node's own call id after the colon): unique across nodes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..protocol import (
    CallEnded,
    Connect,
    ConnectFailed,
    HangUp,
    MediaAnswer,
    Message,
    ProtocolError,
    QueueCall,
    Queued,
    QueueLeave,
    QueuePosition,
    QueueRefused,
    Verify,
    VerifyAgain,
    VerifyCancel,
    VerifyProgress,
    VerifyResult,
)
from .agents import State, Status
from .call_control import AgentEvents, CallGone
from .queue import Auth, CallState, QueuedCall
from .routing import Offer, Router

log = logging.getLogger("central_link.hq.calls")
MAX_WAITING = 500  # calls waiting at once; past this a node is told "full" (its caller gets the fallback)
CONNECT_TIMEOUT_S = 10.0  # for the node's SDP answer (ICE gathering on a loaded node included)
ANSWER_TIMEOUT_S = 5.0  # for the node's answer to a hang-up or a capture command
Send = Callable[[Message], Awaitable[None]]


class LoggedEvents:
    """AgentEvents for a hub whose agent API does not take them (yet): logged only."""

    def node_ended(self, call_id: str, by: str, reason: str) -> None:
        log.info("call %s ended by the %s (%s)", call_id, by, reason or "no reason given")

    def notify_call(self, call_id: str, event: dict[str, Any]) -> None:
        log.info("call %s: %s", call_id, event.get("type"))


@dataclass
class Talk:
    call: QueuedCall
    agent: str


def hub_id(node: str, call: str) -> str:
    return f"{node}:{call}"


def node_call(call: QueuedCall) -> str:
    """The node's own id of a hub call."""
    return call.id[len(call.node) + 1:]


class NodeCalls:
    """``changed(offers)`` is run after every router event made here (the agent API's, which arms
    the router's timers and hands the offers on); :meth:`attach` wires both ways."""

    def __init__(self, router: Router, *, max_waiting: int = MAX_WAITING) -> None:
        self.router = router
        self.max_waiting = max_waiting
        self.events: AgentEvents = LoggedEvents()
        self.changed: Callable[[list[Offer]], None] = lambda offers: self.push_positions()
        self.links: dict[str, Send] = {}  # node -> send on its WebSocket
        self.talking: dict[str, Talk] = {}
        self.connecting: dict[str, QueuedCall] = {}
        self.closing = False
        self._positions: dict[str, int] = {}  # the position each queued call's node was last told
        self._answers: dict[tuple[str, str], list[asyncio.Future]] = {}  # (call id, what) -> waiters
        self._tasks: set[asyncio.Task] = set()

    def attach(self, api: Any) -> None:
        """Run after every event of ``api`` (the agent API: its ``changed``), push the positions;
        take its AgentEvents if it has them."""
        inner = api.changed

        def changed(offers: list[Offer]) -> None:
            inner(offers)
            self.push_positions()

        api.changed = changed  # the agent API calls self.changed after each of its router events
        self.changed = changed
        if all(callable(getattr(api, n, None)) for n in ("node_ended", "notify_call")):
            self.events = api

    # -- the nodes' links ------------------------------------------------------------------------
    def node_up(self, node: str, send: Send) -> None:
        self.links[node] = send

    def node_down(self, node: str) -> None:
        """The node's link is gone: its waiting calls are abandoned, its talking ones ended."""
        self.links.pop(node, None)
        offers: list[Offer] = []
        # the waiting ones first: abandoning a call being offered offers the next one, which must not be one of these
        gone = sorted((c for c in self._calls_in_queue() if c.node == node), key=lambda c: c.state == CallState.OFFERED)
        for call in gone:
            offers += self._abandon(call.id, "the branch's link to HQ went down")
        for cid in [k for k, t in self.talking.items() if t.call.node == node]:
            del self.talking[cid]
            self.events.node_ended(cid, "node", "the branch's link to HQ went down")
        for (cid, _what), waiters in list(self._answers.items()):
            if cid.startswith(node + ":"):
                for fut in waiters:
                    if not fut.done():
                        fut.set_exception(CallGone(f"call {cid}: the branch's link to HQ went down"))
        for cid in [k for k, c in self.connecting.items() if c.node == node]:
            del self.connecting[cid]
        self.changed(offers)

    # -- what a node sends ---------------------------------------------------------------------------
    async def on_message(self, node: str, msg: Message) -> Message | None:
        """One live message from ``node``; returns the answer to send back, if any."""
        if isinstance(msg, QueueCall):
            return self._queue(node, msg)
        cid = hub_id(node, msg.call)  # type: ignore[attr-defined]
        if isinstance(msg, QueueLeave):
            if cid in self.router.queue:
                self.changed(self._abandon(cid, f"the caller left the queue ({msg.reason})"))
            else:
                log.info("call %s left the queue (%s), which no longer has it", cid, msg.reason)
            return None
        if isinstance(msg, MediaAnswer | ConnectFailed):
            self._answer(cid, "connect", msg)
            return None
        if isinstance(msg, CallEnded):
            self._answer(cid, "ended", msg)
            if cid in self.router.queue:  # ended while waiting: the same as leaving the queue
                self.changed(self._abandon(cid, f"the call ended ({msg.reason or msg.by})"))
            elif cid in self.connecting:
                self._answer(cid, "connect", ConnectFailed(msg.call, msg.reason or f"ended by the {msg.by}"))
            elif self.talking.pop(cid, None) is not None:
                log.info("call %s ended by the %s at the branch (%s)", cid, msg.by, msg.reason)
                self.events.node_ended(cid, msg.by, msg.reason)
            return None
        if isinstance(msg, VerifyProgress):
            self._answer(cid, f"verify:{msg.capture}", msg)
            self.events.notify_call(cid, {"type": "verify_progress", "capture": msg.capture, "field": msg.field,
                                          "keyed": msg.keyed, "state": msg.state})
            return None
        if isinstance(msg, VerifyResult):
            self._answer(cid, f"verify:{msg.capture}", msg)
            self._answer(cid, f"result:{msg.capture}", msg)
            self.events.notify_call(cid, {"type": "verify_result", "capture": msg.capture, "outcome": msg.outcome,
                                          "account": msg.account or None})
            return None
        raise ProtocolError("unexpected", f"{msg.TYPE} is sent by the hub, not to it", msg.TYPE)

    def _queue(self, node: str, msg: QueueCall) -> Message:
        cid = hub_id(node, msg.call)
        if cid in self.router.queue or cid in self.talking or cid in self.connecting:
            raise ProtocolError("bad_field", f"queue_call: call {msg.call} is queued or talking already", "queue_call")
        reason = ("closed" if self.closing else
                  "no_agents" if not any(a.status != Status.LOGGED_OUT for a in self.router.agents.values()) else
                  "full" if len(self.router.queue) >= self.max_waiting else "")
        if reason:
            log.info("call %s from %s line %d not queued: %s", cid, node, msg.line, reason)
            return QueueRefused(msg.call, reason)
        verified = msg.auth == Auth.VERIFIED
        call = QueuedCall(cid, node, msg.line, msg.caller, tuple(msg.ivr_path), msg.language, Auth(msg.auth),
                          (msg.account or None) if verified else None, (msg.account_class or None) if verified else None)
        self.changed(self.router.enqueue(call))  # positions are pushed only to calls already answered
        position = self.router.queue.position(cid) if cid in self.router.queue else 0
        self._positions[cid] = position
        log.info("call %s from %s line %d queued at position %d (priority %d)", cid, node, msg.line, position,
                 call.priority)
        return Queued(msg.call, position)

    def _abandon(self, cid: str, why: str) -> list[Offer]:
        # an agent it was ringing is idle again: the agent API tells it from the router's state (changed)
        self._positions.pop(cid, None)
        log.info("call %s abandoned: %s", cid, why)
        return self.router.abandon(cid)

    def _calls_in_queue(self) -> list[QueuedCall]:
        return [self.router.queue.get(cid) for cid in list(self._positions) if cid in self.router.queue]

    def push_positions(self) -> None:
        """Tell each node whose waiting calls moved in line their new positions."""
        for cid in list(self._positions):
            if cid not in self.router.queue:  # answered (or abandoned elsewhere): no more positions
                del self._positions[cid]
                continue
            call = self.router.queue.get(cid)
            now = self.router.queue.position(cid)
            if now != self._positions[cid]:
                self._positions[cid] = now
                self._send_soon(call.node, QueuePosition(node_call(call), now))

    def _send_soon(self, node: str, msg: Message) -> None:
        send = self.links.get(node)
        if send is None:
            return

        async def go() -> None:
            try:
                await send(msg)
            except (ConnectionError, RuntimeError) as exc:
                log.info("node %s: %s not sent: %s", node, msg.TYPE, exc)

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- answers awaited -------------------------------------------------------------------------
    def _expect(self, cid: str, what: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._answers.setdefault((cid, what), []).append(fut)
        return fut

    def _answer(self, cid: str, what: str, msg: Message) -> None:
        for fut in self._answers.pop((cid, what), []):
            if not fut.done():
                fut.set_result(msg)

    async def _ask(self, call: QueuedCall, msg: Message, what: str, timeout: float) -> Message:
        send = self.links.get(call.node)
        if send is None:
            raise CallGone(f"call {call.id}: its branch ({call.node}) is not connected")
        fut = self._expect(call.id, what)
        try:
            await send(msg)
            async with asyncio.timeout(timeout):
                return await fut
        except (ConnectionError, RuntimeError) as exc:
            raise CallGone(f"call {call.id}: the branch's link broke ({exc})") from None
        finally:
            waiters = self._answers.get((call.id, what), [])
            if fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._answers[(call.id, what)]

    # -- CallControl -------------------------------------------------------------------------------
    async def connect(self, call: QueuedCall, agent: str, offer_sdp: str) -> str:
        self._positions.pop(call.id, None)
        self.connecting[call.id] = call
        try:
            answer = await self._ask(call, Connect(node_call(call), agent, offer_sdp), "connect", CONNECT_TIMEOUT_S)
        except TimeoutError:
            log.warning("call %s: the branch did not answer the offer within %g s: ending it", call.id,
                        CONNECT_TIMEOUT_S)
            self._send_soon(call.node, HangUp(node_call(call)))
            raise
        finally:
            self.connecting.pop(call.id, None)
        if isinstance(answer, ConnectFailed):
            raise CallGone(f"call {call.id}: the branch could not connect it: {answer.reason}")
        assert isinstance(answer, MediaAnswer)
        self.talking[call.id] = Talk(call, agent)
        log.info("call %s: agent %s connected", call.id, agent)
        return answer.sdp

    async def hang_up(self, call: QueuedCall, agent: str) -> None:
        self.talking.pop(call.id, None)  # the node's call_ended that follows is no news for the agent
        try:
            await self._ask(call, HangUp(node_call(call)), "ended", ANSWER_TIMEOUT_S)
        except CallGone:
            pass  # the branch is gone: so is the call
        except TimeoutError:
            log.warning("call %s: the branch did not confirm the agent's hang-up within %g s", call.id,
                        ANSWER_TIMEOUT_S)

    def _talking(self, call: QueuedCall) -> None:
        if call.id not in self.talking:
            raise CallGone(f"call {call.id} is not talking to an agent (ended, or never connected)")

    async def verify(self, call: QueuedCall, agent: str, capture: str, fields: tuple[str, ...]) -> None:
        self._talking(call)
        await self._ask(call, Verify(node_call(call), capture, list(fields)), f"verify:{capture}", ANSWER_TIMEOUT_S)

    async def verify_cancel(self, call: QueuedCall, capture: str) -> None:
        self._talking(call)
        await self._ask(call, VerifyCancel(node_call(call), capture), f"result:{capture}", ANSWER_TIMEOUT_S)

    async def verify_again(self, call: QueuedCall, capture: str, field: str) -> None:
        self._talking(call)
        await self._ask(call, VerifyAgain(node_call(call), capture, field), f"verify:{capture}", ANSWER_TIMEOUT_S)

    def agent_of(self, cid: str) -> str | None:
        talk = self.talking.get(cid)
        if talk is not None:
            return talk.agent
        for a in self.router.agents.values():
            if a.call == cid and a.state in (State.OFFERED, State.TALKING):
                return a.name
        return None
