"""An asyncio client for the simulator's control port (used by ``simctl call`` and the tests)."""

from __future__ import annotations

import asyncio
import itertools
import json


class SimError(RuntimeError):
    """The simulator refused a request (``field``: what was wrong, when it said) or is unreachable."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SimClient:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._ids = itertools.count(1)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def parse(cls, address: str) -> SimClient:
        host, _, port = address.rpartition(":")
        if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"simulator control address must be HOST:PORT (port 1-65535), not {address!r}")
        return cls(host or "127.0.0.1", int(port))

    async def connect(self) -> SimClient:
        try:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        except OSError as exc:
            raise SimError(f"cannot reach the simulator at {self.host}:{self.port} ({exc}): "
                           "is `simctl card` running?") from exc
        return self

    async def close(self) -> None:
        if self._writer:
            self._writer.close()

    async def __aenter__(self) -> SimClient:
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def call(self, op: str, **args) -> dict:
        async with self._lock:  # one request at a time on this connection
            assert self._writer and self._reader
            rid = next(self._ids)
            self._writer.write(json.dumps({"op": op, "id": rid, **args}).encode() + b"\n")
            await self._writer.drain()
            raw = await self._reader.readline()
        if not raw:
            raise SimError("the simulator closed the control connection")
        resp = json.loads(raw)
        if not resp.get("ok"):
            raise SimError(resp.get("error", "unknown error"), resp.get("field"))
        resp.pop("ok", None)
        resp.pop("id", None)
        return resp
