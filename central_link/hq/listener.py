"""The hub's TLS listener: a plain TCP server whose connections are upgraded with
``loop.start_tls`` and then handed to aiohttp.

Why not ``TCPSite(ssl_context=...)``: there a failed handshake (no certificate, another CA, a
revoked one) is dropped inside asyncio, logged at debug level at most, and the hub must log each
refusal with its reason. Here the handshake is awaited, so its failure is ours to name. The context
is asked for per handshake (``contexts()``), so a changed revocation list counts at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from ..tls import refusal_reason

log = logging.getLogger("central_link.hq")
HANDSHAKE_TIMEOUT_S = 10.0


class _Accept(asyncio.Protocol):
    def __init__(self, listener: TlsListener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the ClientHello stays in the socket until start_tls reads it
        task = asyncio.get_running_loop().create_task(self.listener._handshake(transport))
        self.listener._tasks.add(task)
        task.add_done_callback(self.listener._tasks.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class TlsListener:
    def __init__(self, contexts: Callable[[], ssl.SSLContext], protocol: Callable[[], asyncio.Protocol]) -> None:
        self.contexts = contexts
        self.protocol = protocol  # aiohttp's request handler factory (AppRunner.server)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (useful when ``port`` is 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Accept(self), host, port)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()

    async def _handshake(self, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if peer else "?"
        loop = asyncio.get_running_loop()
        held = _Held()
        try:
            tls = await loop.start_tls(transport, held, self.contexts(), server_side=True,
                                       ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
        except (OSError, TimeoutError, ConnectionError) as exc:
            log.warning("refused a connection from %s: %s", where, refusal_reason(exc))
            transport.abort()
            return
        if tls is None or held.lost:
            return
        handler = self.protocol()
        tls.set_protocol(handler)
        handler.connection_made(tls)  # start_tls assumes its protocol was connected already
        for data in held.data:
            handler.data_received(data)
        if held.eof:
            handler.eof_received()


class _Held(asyncio.Protocol):
    """Holds what arrives between the handshake's end and aiohttp's handler taking over (the
    request can come in the same read as the handshake's last message)."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = self.lost = False

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
