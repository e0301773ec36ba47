"""A stand-in card at the transport boundary: what the link writes is parsed as the card would,
and the card's answers come back through the link's own receive path."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

from firmware.card import wire


@dataclass
class FakeCard:
    channels: int = 2
    boot_id: int = 1
    law: int = wire.LAW_ULAW
    lose_cmds: int = 0  # commands dropped before the next one is acknowledged (-1: all of them)
    answer_sync: bool = True
    status: int = wire.ST_OK
    received: list[tuple[int, int, int, bytes]] = field(default_factory=list)  # (type, channel, seq, body)
    opened: int = 0

    def transport(self, url, baud, loop, on_bytes, on_lost) -> _Port:
        """The link's transport factory: one port per (re)open."""
        self.opened += 1
        return _Port(self, loop, on_bytes)

    def hello(self) -> bytes:
        return bytes(wire.encode(wire.T_HELLO, wire.BROADCAST, 0, struct.pack(
            wire.HELLO, wire.PROTO_VERSION, 1, 0, 0, self.channels, self.law, 0, self.boot_id, b"FAKE")))

    def sent(self, ftype: int) -> list[tuple[int, int, bytes]]:
        """(channel, seq, body) of each frame of ``ftype`` the host sent, in order."""
        return [(ch, seq, body) for t, ch, seq, body in self.received if t == ftype]


class _Port:
    def __init__(self, card: FakeCard, loop: asyncio.AbstractEventLoop, on_bytes) -> None:
        self.card, self.loop, self.on_bytes = card, loop, on_bytes
        self.deframer = wire.Deframer()
        self.closed = False

    def _reply(self, frame: bytes) -> None:
        self.loop.call_soon(lambda: None if self.closed else self.on_bytes(frame))

    def write(self, data: bytes) -> None:
        card = self.card
        for code, ftype, ch, seq, body in self.deframer.feed(data):
            assert code == wire.OK, f"the host sent a bad frame ({wire.ERROR_NAMES[code]})"
            card.received.append((ftype, ch, seq, body))
            if ftype == wire.T_SYNC and card.answer_sync:
                self._reply(card.hello())
            elif ftype == wire.T_CMD:
                if card.lose_cmds:
                    card.lose_cmds -= 1 if card.lose_cmds > 0 else 0
                    continue
                self._reply(bytes(wire.encode(wire.T_ACK, wire.BROADCAST, seq, struct.pack(wire.ACK, card.status))))

    def close(self) -> None:
        self.closed = True
