"""The node's uplink: one WebSocket to the hub with mutual TLS, kept up for as long as the node runs.

Per connection: ``hello`` -> ``welcome``; then heartbeats (a hub that answers none for
``DEAD_HEARTBEATS`` intervals is gone: reconnect), and the outbox sent in its order, a window of
items in flight at a time. An item leaves the outbox only when the hub acknowledges its key; after
a reconnect everything not acknowledged is sent again (the hub applies a key once and acknowledges
it again), so nothing is lost and nothing is applied twice. Between attempts the uplink waits an
exponential backoff with jitter, reset once a connection is welcomed.
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
    MAX_WS_MESSAGE,
    Ack,
    Error,
    Heartbeat,
    HeartbeatAck,
    Hello,
    LineState,
    OutboxItem,
    ProtocolError,
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
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.url, self.ssl, self.info, self.outbox = url, ssl_context, info, outbox
        self.backoff = backoff or Backoff()
        self.poll_s = poll_s
        self.sleep = sleep  # the wait between attempts (a fake clock in tests)
        self.state = LinkState()

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
            await link.run()

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
