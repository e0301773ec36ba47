"""A deployment on 127.0.0.1 for the link's tests: certificates made in a tmp dir, a hub, nodes
with an outbox in memory or the node's real Store, and a loopback proxy that can cut the link."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from central_link import certs, tls
from central_link.hq.config import load
from central_link.hq.hub import Hub
from central_link.protocol import LineState, OutboxItem
from central_link.uplink import Backoff, NodeInfo, Uplink


def make_pki(folder: Path, nodes: tuple[str, ...] = ("node-a", "node-b")) -> certs.Paths:
    folder.mkdir(parents=True, exist_ok=True)
    paths = certs.Paths(folder)
    certs.make_ca(paths)
    certs.make_hub(paths)
    for n in nodes:
        certs.make_node(paths, n)
    return paths


def hub_config(folder: Path, pki: certs.Paths, nodes: tuple[str, ...], heartbeat_s: float = 0.5) -> Path:
    path = folder / "hq.toml"
    path.write_text(f'[hub]\nport = 0\nconsole_port = 0\ncerts = "{pki.folder}"\ndata_dir = "{folder / "hqdata"}"\n'
                    f"heartbeat_s = {heartbeat_s}\nnodes = {list(nodes)!r}\n".replace("'", '"'))
    return path


async def start_hub(folder: Path, pki: certs.Paths, nodes: tuple[str, ...] = ("node-a", "node-b"),
                    heartbeat_s: float = 0.5) -> Hub:
    hub = Hub(load(hub_config(folder, pki, nodes, heartbeat_s)))
    await hub.start()
    return hub


def node_context(pki: certs.Paths, node: str):
    crt, key = pki.node(node)
    return tls.client_context(crt, key, pki.ca[0])


@dataclass
class MemoryOutbox:
    """An outbox in a list, for tests that are about the link rather than the node's store."""
    items: list[OutboxItem] = field(default_factory=list)

    def pending(self, limit: int) -> list[OutboxItem]:
        return self.items[:limit]

    def acked(self, key: str) -> None:
        self.items = [i for i in self.items if i.key != key]


def uplink(url: str, ctx, node: str, outbox, **kw) -> Uplink:
    info = NodeInfo(node, "test-1.0", lambda: "fw-1.2", lambda: [LineState(1, "0755-1", "idle")])
    kw.setdefault("backoff", Backoff(base=0.05, cap=0.2))
    return Uplink(url, ctx, info, outbox, poll_s=0.05, **kw)


async def wait_for(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.01) -> None:
    """Poll ``cond`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


class CuttingProxy:
    """A TCP proxy on 127.0.0.1. Connection i (from 0) is killed, both ways at once, after
    ``budgets[i]`` bytes from the node (mid-frame, mid-TLS-record: wherever it falls); later
    connections pass untouched. ``cut()`` kills the connections open now."""

    def __init__(self, target_port: int, budgets: list[int] | None = None) -> None:
        self.target_port = target_port
        self.budgets = list(budgets or [])
        self.connections = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()  # (to node, to hub)

    def cut(self) -> int:
        """Kill every connection now (no FIN, no close handshake); returns how many there were."""
        open_now = list(self._open)
        for pair in open_now:
            for w in pair:
                w.transport.abort()
        self.cuts += len(open_now)
        return len(open_now)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, r_node: asyncio.StreamReader, w_node: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        budget = self.budgets[index] if index < len(self.budgets) else None
        try:
            r_hub, w_hub = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w_node.close()
            return

        async def pump(r, w, limit):
            sent = 0
            while True:
                data = await r.read(4096)
                if not data:
                    w.close()
                    return
                if limit is not None and sent + len(data) >= limit:
                    w.write(data[:limit - sent])
                    raise ConnectionAbortedError  # cut here
                sent += len(data)
                w.write(data)
                await w.drain()

        self._open.add((w_node, w_hub))
        up = asyncio.create_task(pump(r_node, w_hub, budget))
        down = asyncio.create_task(pump(r_hub, w_node, None))
        self._tasks |= {up, down}
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            self._open.discard((w_node, w_hub))
            if up.done() and not up.cancelled() and isinstance(up.exception(), ConnectionAbortedError):
                self.cuts += 1
            for w in (w_node, w_hub):
                with contextlib.suppress(Exception):
                    w.transport.abort()  # an RST-like end, not a polite close
            for t in (up, down):
                t.cancel()
            self._tasks -= {up, down}


class Records(logging.Handler):
    """The hub's log lines, to check a refusal is logged with its reason."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
