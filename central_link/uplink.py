"""The node's uplink: one WebSocket to the hub with mutual TLS, kept up for as long as the node runs.

Per connection: ``hello`` -> ``welcome``; then heartbeats (a hub that answers none for
``DEAD_HEARTBEATS`` intervals is gone: reconnect), and the outbox sent in its order, a window of
items in flight at a time. An item leaves the outbox only when the hub acknowledges its key; after
a reconnect everything not acknowledged is sent again (the hub applies a key once and acknowledges
it again), so nothing is lost and nothing is applied twice. Between attempts the uplink waits an
exponential backoff with jitter, reset once a connection is welcomed.

The live messages of a forwarded call (``protocol.LIVE``) do not go through the outbox: a caller
on hold cannot wait for a replay after a reconnect. :meth:`Uplink.send` sends one now or raises
:class:`LinkDown`; :meth:`Uplink.queue_call` sends ``queue_call`` and waits for HQ's answer, and
fails fast (LinkDown) while the link is down, so the IVR takes its fallback at once. What HQ sends
about calls goes to the node's :class:`LiveHandler`, which also hears when the link goes up and down.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from .protocol import (
    LIVE,
    MAX_WS_MESSAGE,
    Ack,
    Error,
    Heartbeat,
    HeartbeatAck,
    Hello,
    LineState,
    Message,
    OutboxItem,
    ProtocolError,
    QueueCall,
    Queued,
    QueueRefused,
    Welcome,
    parse,
)

log = logging.getLogger("central_link.uplink")
WINDOW = 32  # outbox items in flight before waiting for acks
DEAD_HEARTBEATS = 3
CONNECT_TIMEOUT_S = 10.0


class Outbox(Protocol):
    """What the uplink needs of the node's outbox. Both are called in a worker thread."""

    def pending(self, limit: int) -> list[OutboxItem]:
        """The oldest items not yet acknowledged, oldest first."""
        ...

    def acked(self, key: str) -> None:
        """The hub has this item: it need not be sent again."""
        ...


class LiveHandler(Protocol):
    """The node's side of forwarded calls, as the uplink drives it. Both are called on the event
    loop and must not block (queue the work, answer later with :meth:`Uplink.send`)."""

    def received(self, msg: Message) -> None:
        """A live message from HQ about a call (connect, hang_up, queue_position, verify ...)."""
        ...

    def link_changed(self, up: bool) -> None:
        """The link came up (welcomed) or went down: HQ's queue has forgotten this node's calls."""
        ...


class LinkDown(ConnectionError):
    """HQ is not reachable now: the live message was not sent (or its answer will not come)."""


@dataclass(frozen=True)
class NodeInfo:
    node: str
    software: str
    firmware: Callable[[], str]
    lines: Callable[[], list[LineState]]


@dataclass
class Backoff:
    """Delays between connection attempts: doubling from ``base`` up to ``cap``, each drawn at random
    from its upper half, so nodes cut off together do not all come back in the same instant."""
    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.attempts, 32))
        self.attempts += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempts = 0


@dataclass
class LinkState:
    connected: bool = False
    connects: int = 0
    sent: int = 0  # outbox items sent, again after a reconnect included
    acked: int = 0
    last_error: str = ""


class _Gone(Exception):
    """This connection is over (the reason is the message); the uplink reconnects."""


class Uplink:
    def __init__(self, url: str, ssl_context: ssl.SSLContext, info: NodeInfo, outbox: Outbox, *,
                 backoff: Backoff | None = None, poll_s: float = 0.5,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 handler: LiveHandler | None = None) -> None:
        self.url, self.ssl, self.info, self.outbox = url, ssl_context, info, outbox
        self.backoff = backoff or Backoff()
        self.poll_s = poll_s
        self.sleep = sleep  # the wait between attempts (a fake clock in tests)
        self.state = LinkState()
        self.handler = handler
        self._link: _Connection | None = None  # the welcomed connection, while there is one
        self._waiting: dict[str, asyncio.Future] = {}  # queue_call's call id -> HQ's answer

    # -- live messages ---------------------------------------------------------------------------
    @property
    def up(self) -> bool:
        return self._link is not None

    async def send(self, msg: Message) -> None:
        """Send one live message now; LinkDown when there is no welcomed connection (or it broke)."""
        link = self._link
        if link is None:
            raise LinkDown(f"HQ is not connected ({self.state.last_error or 'not yet'})")
        try:
            await link.ws.send_str(msg.to_json())
        except (ConnectionError, RuntimeError) as exc:  # aiohttp: a closing transport
            raise LinkDown(f"the link broke while sending {msg.TYPE}: {exc}") from None

    async def queue_call(self, msg: QueueCall, timeout: float) -> Queued | QueueRefused:
        """Queue a call at HQ: its answer, or LinkDown (no link, it broke, or no answer in time)."""
        if msg.call in self._waiting:
            raise ValueError(f"call {msg.call} is being queued already")
        fut = asyncio.get_running_loop().create_future()
        self._waiting[msg.call] = fut
        try:
            await self.send(msg)
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise LinkDown(f"HQ did not answer queue_call within {timeout:g} s") from None
        finally:
            self._waiting.pop(msg.call, None)

    def _went_down(self) -> None:
        self._link = None
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(LinkDown("the link to HQ went down before it answered"))
        if self.handler is not None:
            self.handler.link_changed(False)

    async def run(self) -> None:
        # a hub that does not answer (a black hole, not a refusal) costs one timeout, not aiohttp's 5 minutes
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    await self._connection(session)
                    reason = "the hub closed the connection"
                except _Gone as exc:
                    reason = str(exc)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    reason = _why(exc)
                except Exception as exc:  # noqa: BLE001 - a fault in the link must never stop the node's calls
                    log.exception("HQ link: unexpected error")
                    reason = f"unexpected error ({type(exc).__name__}: {str(exc)[:120]})"
                self.state.connected = False
                self.state.last_error = reason
                delay = self.backoff.next()
                log.warning("HQ link down: %s; trying again in %.2f s", reason, delay)
                await self.sleep(delay)

    async def _connection(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(self.url, ssl=self.ssl, heartbeat=None, max_msg_size=MAX_WS_MESSAGE,
                                      autoping=True, timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                                      receive_timeout=None) as ws:
            await ws.send_str(Hello(self.info.node, self.info.software, self.info.firmware(),
                                    self.info.lines()).to_json())
            welcome = await self._welcome(ws)
            self.backoff.reset()
            self.state.connected, self.state.connects = True, self.state.connects + 1
            log.info("HQ link up (%s), heartbeat every %.1f s", welcome.hub, welcome.heartbeat_s)
            link = _Connection(self, ws, min(max(welcome.heartbeat_s, 0.05), 300.0))  # as the hub's config allows
            self._link = link
            if self.handler is not None:
                self.handler.link_changed(True)
            try:
                await link.run()
            finally:
                self._went_down()

    async def _welcome(self, ws: aiohttp.ClientWebSocketResponse) -> Welcome:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            while True:
                frame = await ws.receive()
                if frame.type != aiohttp.WSMsgType.TEXT:
                    raise _Gone(f"the hub closed before welcoming us ({frame.type.name})")
                msg = _parse_or_answer(frame.data)
                if isinstance(msg, Welcome):
                    return msg
                if isinstance(msg, Error):
                    raise _Gone(f"the hub refused the hello: {msg.code}: {msg.detail}")
                if isinstance(msg, ProtocolError):
                    await ws.send_str(Error.of(msg).to_json())


class _Connection:
    """One welcomed connection: its sender, heartbeat and receiver, ended together."""

    def __init__(self, up: Uplink, ws: aiohttp.ClientWebSocketResponse, heartbeat_s: float) -> None:
        self.up, self.ws, self.heartbeat_s = up, ws, heartbeat_s
        self.inflight: dict[str, None] = {}  # keys sent and not acknowledged, in order
        self.room = asyncio.Event()  # set while the window has room
        self.room.set()
        self.outbox_turn = asyncio.Lock()
        self.seq = 0
        self.answered = 0

    async def run(self) -> None:
        tasks = [asyncio.create_task(c) for c in (self._receive(), self._send(), self._heartbeat())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()  # the first to end says why
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self) -> None:
        up = self.up
        while True:
            await self.room.wait()
            async with self.outbox_turn:  # an ack between reading and filtering would send its item again
                items = await asyncio.to_thread(up.outbox.pending, WINDOW + len(self.inflight))
                fresh = [i for i in items if i.key not in self.inflight][:WINDOW - len(self.inflight)]
                self.inflight.update(dict.fromkeys(i.key for i in fresh))
            for item in fresh:
                await self.ws.send_str(item.to_json())
                up.state.sent += 1
            if len(self.inflight) >= WINDOW:
                self.room.clear()
            elif not fresh:
                await asyncio.sleep(up.poll_s)  # the outbox is a table: look again for new items

    async def _heartbeat(self) -> None:
        while True:
            if self.seq - self.answered >= DEAD_HEARTBEATS:
                raise _Gone(f"the hub answered none of the last {DEAD_HEARTBEATS} heartbeats")
            self.seq += 1
            await self.ws.send_str(Heartbeat(self.seq, self.up.info.lines()).to_json())
            await asyncio.sleep(self.heartbeat_s)

    async def _receive(self) -> None:
        up = self.up
        while True:
            frame = await self.ws.receive()
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                raise _Gone("the hub closed the connection")
            if frame.type == aiohttp.WSMsgType.ERROR:
                raise _Gone(_why(self.ws.exception()))
            if frame.type != aiohttp.WSMsgType.TEXT:
                await self.ws.send_str(Error("malformed", "a message is one JSON text frame").to_json())
                continue
            msg = _parse_or_answer(frame.data)
            if isinstance(msg, ProtocolError):
                log.warning("HQ sent a bad message (%s): answered with an error", msg)
                await self.ws.send_str(Error.of(msg).to_json())
            elif isinstance(msg, Ack):
                async with self.outbox_turn:
                    if msg.key in self.inflight:
                        await asyncio.to_thread(up.outbox.acked, msg.key)
                        del self.inflight[msg.key]
                        up.state.acked += 1
                        self.room.set()
            elif isinstance(msg, HeartbeatAck):
                self.answered = max(self.answered, msg.seq)
            elif isinstance(msg, Error):
                log.warning("HQ reports an error in what the node sent: %s: %s (about %s)", msg.code, msg.detail,
                            msg.about or "a frame")
            elif isinstance(msg, Queued | QueueRefused):
                fut = up._waiting.get(msg.call)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                else:
                    log.info("HQ answered queue_call for call %s, which waits no more", msg.call)
            elif isinstance(msg, LIVE) and msg.SENDER == "hq":
                if up.handler is None:
                    await self.ws.send_str(Error("unexpected", "this node forwards no calls", msg.TYPE).to_json())
                else:
                    try:
                        up.handler.received(msg)
                    except Exception:  # noqa: BLE001 - one call's fault must not take the link down
                        log.exception("the node failed to take HQ's %s for call %s", msg.TYPE, msg.call)
            else:
                await self.ws.send_str(Error("unexpected", f"{msg.TYPE} is sent by the node, not to it",
                                             msg.TYPE).to_json())


def _parse_or_answer(data: str):
    try:
        return parse(data)
    except ProtocolError as exc:
        return exc


def _why(exc: BaseException | None) -> str:
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"the hub refused the connection (HTTP {exc.status}: {exc.message})"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"the hub's certificate is not the deployment's: {exc.certificate_error}"
    return f"{type(exc).__name__}: {exc}" if exc else "connection lost"
