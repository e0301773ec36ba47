"""Typed views of the card's frames (the byte layouts live in ``firmware.card.wire``)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from firmware.card import wire

EVENT_NAMES = {
    wire.EV_RING_ON: "ring_on", wire.EV_RING_OFF: "ring_off", wire.EV_POLARITY: "polarity",
    wire.EV_LOOP_DROP: "loop_drop", wire.EV_HOOK: "hook", wire.EV_DIAL_DONE: "dial_done",
    wire.EV_FLASH_DONE: "flash_done", wire.EV_CID_WINDOW: "cid_window", wire.EV_LINE_STATE: "line_state",
    wire.EV_RING_STOP: "ring_stop",
}
STATUS_NAMES = {wire.ST_OK: "ok", wire.ST_BAD_CHANNEL: "no such line", wire.ST_BAD_ARGS: "bad arguments",
                wire.ST_BUSY: "line busy (not off-hook, or dialling/flashing)", wire.ST_UNKNOWN_OP: "unknown command"}


@dataclass(frozen=True)
class Hello:
    proto: int
    firmware: str
    channels: int
    law: str
    caps: int
    boot_id: int
    board_id: str

    @classmethod
    def parse(cls, body: bytes) -> Hello:
        proto, ma, mi, pa, ch, law, caps, boot, board = struct.unpack(wire.HELLO, body)
        return cls(proto, f"{ma}.{mi}.{pa}", ch, "ulaw" if law == wire.LAW_ULAW else "alaw", caps, boot,
                   board.rstrip(b"\0").decode("ascii", "replace"))


@dataclass(frozen=True)
class CardEvent:
    channel: int
    code: int
    value: int
    ticks: int

    @property
    def name(self) -> str:
        return EVENT_NAMES.get(self.code, f"event {self.code}")

    @classmethod
    def parse(cls, channel: int, body: bytes) -> CardEvent:
        code, value, ticks = struct.unpack(wire.EVENT, body)
        return cls(channel, code, value, ticks)


@dataclass(frozen=True)
class Status:
    uptime_ms: int
    offhook_bits: int
    ringing_bits: int
    copies: int

    @classmethod
    def parse(cls, body: bytes) -> Status:
        return cls(*struct.unpack(wire.STATUS, body))


def parse_stats(body: bytes, names: tuple[str, ...]) -> dict[str, int]:
    return dict(zip(names, struct.unpack(wire.STATS, body)))
