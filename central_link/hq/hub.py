"""The hub's node side: one WebSocket per node at ``/node``, over the mutual-TLS listener.

A connection whose certificate passed the handshake is still refused (HTTP 403 / 409, logged
with the reason) when its node id (the certificate's CN) is not in the node list or is connected
already. On a connection every frame is answered: a bad one with an ``error`` naming what was
wrong (the connection stays), ``hello`` with ``welcome``, ``heartbeat`` with ``heartbeat_ack``,
``outbox`` with ``ack`` once the item is durably applied (exactly once, by its key), and the live
messages of forwarded calls by ``forwarding.NodeCalls`` (the queue, connect, hang-up, verify).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from .. import __version__ as software
from ..protocol import (
    LIVE,
    MAX_WS_MESSAGE,
    Ack,
    Error,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Message,
    OutboxItem,
    ProtocolError,
    Welcome,
    parse,
)
from ..tls import ServerContexts
from .config import HOST, HubConfig
from .console_site import ConsoleListener
from .forwarding import NodeCalls
from .listener import TlsListener
from .queue import CallQueue, QueuedCall
from .registry import Refused, Registry
from .routing import Router
from .store import HubStore
from .web import AgentApi

log = logging.getLogger("central_link.hq")
SILENT_HEARTBEATS = 3  # a node silent for this many heartbeat intervals is gone


@dataclass
class Counters:
    received: int = 0  # outbox items received, repeats included
    applied: int = 0
    repeats: int = 0  # received again after a lost ack: acknowledged, not applied
    errors_sent: int = 0
    per_connection: list[tuple[str, int]] = field(default_factory=list)  # (node, items applied), as they end


class Hub:
    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.registry = Registry(frozenset(config.nodes))
        self.store = HubStore(config.data_dir / "hq.db")
        self.store.allow(config.nodes)
        self.contexts = ServerContexts(config.cert, config.key, config.ca, config.crl)
        self.contexts.get()  # a bad certificate or CRL is named at start, not at the first node
        self.counters = Counters()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hq-db")
        self._runner: web.AppRunner | None = None
        self._listener: TlsListener | None = None
        self.port = 0
        self.router = Router(CallQueue(config.priorities), time.monotonic, config.routing)
        self.calls = NodeCalls(self.router)  # the nodes' calls: the agent API's CallControl
        self.agent_api = AgentApi(self.store, self.router, self._in_db, calls=self)  # the hub reaches the nodes
        self.calls.attach(self.agent_api)  # positions pushed after its events; its AgentEvents
        self.console = ConsoleListener(self.agent_api, config.cert, config.key)
        self.console_port = 0

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/node", self._node)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        assert self._runner.server is not None
        self._listener = TlsListener(self.contexts.get, self._runner.server)
        self.port = await self._listener.start(HOST, self.config.port)
        log.info("hub listening on wss://%s:%d/node for %d node(s)", HOST, self.port, len(self.config.nodes))
        self.console_port = await self.console.start(HOST, self.config.console_port)
        log.info("agent console on https://%s:%d/agent/", HOST, self.console_port)
        return self.port

    async def close(self) -> None:
        self.calls.closing = True  # a call queued from now on is refused "closed"
        self.agent_api.close()  # closes the agents' event sockets
        await self.console.close()
        if self._listener is not None:
            await self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._db.shutdown(wait=True)
        self.store.close()

    # -- CallControl (call_control.py) for the agent API: the nodes' calls, by forwarding.NodeCalls --
    async def connect(self, call: QueuedCall, agent: str, offer_sdp: str) -> str:
        return await self.calls.connect(call, agent, offer_sdp)

    async def hang_up(self, call: QueuedCall, agent: str) -> None:
        await self.calls.hang_up(call, agent)

    async def verify(self, call: QueuedCall, agent: str, capture: str, fields: tuple[str, ...]) -> None:
        await self.calls.verify(call, agent, capture, fields)

    async def verify_cancel(self, call: QueuedCall, capture: str) -> None:
        await self.calls.verify_cancel(call, capture)

    async def verify_again(self, call: QueuedCall, capture: str, field: str) -> None:
        await self.calls.verify_again(call, capture, field)

    async def _in_db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def _node(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        address = f"{peer[0]}:{peer[1]}" if peer else "?"
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        node = _common_name(cert)
        try:
            if not node:
                raise Refused(403, "No node id", "the certificate names no node (no CN)")
            self.registry.claim(node, address)
        except Refused as exc:
            log.warning("refused node connection from %s: %s", address, exc)
            return web.Response(status=exc.status, reason=exc.short, text=f"refused: {exc}\n")
        ws = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE, heartbeat=None)
        applied = self.counters.applied
        try:
            await ws.prepare(request)
            log.info("node %s connected from %s", node, address)
            await self._serve(node, address, ws)
        except ConnectionResetError:
            pass  # the node went away while the hub answered: it sends again what was not acked
        finally:
            self.calls.node_down(node)
            try:
                await self._in_db(self.store.disconnected, node)
            finally:
                self.registry.release(node)  # only now may the node connect again
            applied = self.counters.applied - applied
            self.counters.per_connection.append((node, applied))
            log.info("node %s disconnected (%s): %d outbox item(s) applied on that connection", node, address,
                     applied)
        return ws

    async def _serve(self, node: str, address: str, ws: web.WebSocketResponse) -> None:
        hello = False
        silence = SILENT_HEARTBEATS * self.config.heartbeat_s
        while not ws.closed:
            try:
                frame = await ws.receive(timeout=silence)
            except TimeoutError:
                log.warning("node %s sent nothing for %.1f s: closing its connection", node, silence)
                await ws.close()
                return
            if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            try:
                if frame.type != WSMsgType.TEXT:
                    raise ProtocolError("malformed", "a message is one JSON text frame, not a binary one")
                msg = parse(frame.data)
                answer = await self._handle(node, address, msg, hello, ws)
                hello = hello or isinstance(msg, Hello)
            except ProtocolError as exc:
                self.counters.errors_sent += 1
                log.info("node %s: answered a bad message with an error: %s", node, exc)
                answer = Error.of(exc)
            if answer is not None:
                await ws.send_str(answer.to_json())

    async def _handle(self, node: str, address: str, msg: Message, hello: bool,
                      ws: web.WebSocketResponse) -> Message | None:
        if isinstance(msg, Hello):
            if msg.node != node:
                raise ProtocolError("bad_field", f"hello.node {msg.node!r} is not this certificate's node id "
                                                 f"{node!r}", "hello")
            await self._in_db(self.store.connected, node, address, msg.software, msg.firmware, msg.lines)
            self.calls.node_up(node, lambda m: ws.send_str(m.to_json()))
            return Welcome(f"branchnode-hq {software}", self.config.heartbeat_s)
        if isinstance(msg, Error):
            log.warning("node %s reports an error in what the hub sent: %s: %s", node, msg.code, msg.detail)
            return None
        if not hello:
            raise ProtocolError("unexpected", f"{msg.TYPE} before hello: send hello first", msg.TYPE)
        if isinstance(msg, Heartbeat):
            await self._in_db(self.store.seen, node, msg.lines)
            return HeartbeatAck(msg.seq)
        if isinstance(msg, OutboxItem):
            self.counters.received += 1
            fresh = await self._in_db(self.store.apply, node, msg.key, msg.kind, msg.payload)
            if fresh:
                self.counters.applied += 1
            else:
                self.counters.repeats += 1
            return Ack(msg.key)
        if isinstance(msg, LIVE) and msg.SENDER == "node":
            return await self.calls.on_message(node, msg)
        raise ProtocolError("unexpected", f"{msg.TYPE} is sent by the hub, not to it", msg.TYPE)


def _common_name(cert: dict | None) -> str:
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return ""
