"""Typed views of the card's frames (the byte layouts live in ``firmware.card.wire``).

Nothing above ``drivers.linecard`` sees a wire code: events are :class:`EventKind` members,
counters are :class:`LinkCounters` / :class:`ChannelCounters` fields.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from firmware.card import wire


class EventKind(enum.IntEnum):
    """What an ``EVENT`` from the card says happened on a line (its ``value`` in each comment)."""

    RING_ON = wire.EV_RING_ON  # ring count in this call
    RING_OFF = wire.EV_RING_OFF  # burst length, ms
    POLARITY = wire.EV_POLARITY  # +1 / -1
    LOOP_DROP = wire.EV_LOOP_DROP  # ms without loop current (the far end hung up)
    HOOK = wire.EV_HOOK  # 1 off-hook, 0 on-hook (the relay moved)
    DIAL_DONE = wire.EV_DIAL_DONE  # digits pulsed
    FLASH_DONE = wire.EV_FLASH_DONE  # break ms
    CID_WINDOW = wire.EV_CID_WINDOW  # 1 opened, 0 closed
    LINE_STATE = wire.EV_LINE_STATE  # bit 0 off-hook, bit 1 ringing, bit 2 reversed (after SYNC)
    RING_STOP = wire.EV_RING_STOP  # ms since the last ring: the caller gave up


class Led(enum.IntEnum):
    """A line LED's state (``CMD LED`` arg1)."""

    OFF = 0
    ON = 1
    BLINK = 2


STATUS_NAMES = {wire.ST_OK: "ok", wire.ST_BAD_CHANNEL: "no such line", wire.ST_BAD_ARGS: "bad arguments",
                wire.ST_BUSY: "line busy (not off-hook, or dialling/flashing)", wire.ST_UNKNOWN_OP: "unknown command"}
OP_NAMES = {wire.OP_HOOK: "HOOK", wire.OP_FLASH: "FLASH", wire.OP_PULSE_DIAL: "PULSE_DIAL", wire.OP_GAIN: "GAIN",
            wire.OP_LED: "LED", wire.OP_GET_STATS: "GET_STATS", wire.OP_REDUNDANCY: "REDUNDANCY",
            wire.OP_RESET: "RESET", wire.OP_CID_WINDOW: "CID_WINDOW"}


@dataclass(frozen=True)
class Hello:
    proto: int
    firmware: str
    channels: int
    law: str  # "ulaw" or "alaw"
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
    kind: EventKind | int  # an int only for a code this host does not know (a newer card)
    value: int
    ticks: int

    @property
    def name(self) -> str:
        return self.kind.name.lower() if isinstance(self.kind, EventKind) else f"event {self.kind}"

    @classmethod
    def parse(cls, channel: int, body: bytes) -> CardEvent:
        code, value, ticks = struct.unpack(wire.EVENT, body)
        try:
            kind: EventKind | int = EventKind(code)
        except ValueError:
            kind = code
        return cls(channel, kind, value, ticks)


@dataclass(frozen=True)
class Status:
    uptime_ms: int
    offhook_bits: int
    ringing_bits: int
    copies: int

    @classmethod
    def parse(cls, body: bytes) -> Status:
        return cls(*struct.unpack(wire.STATUS, body))


@dataclass(frozen=True)
class LinkCounters:
    """The card's link counters (``STATS`` on channel 0xFF), in ``wire.LC_*`` order."""

    rx_frames: int = 0
    crc_errors: int = 0
    cobs_errors: int = 0
    truncated: int = 0
    oversized: int = 0
    unknown_type: int = 0
    duplicates: int = 0  # retried commands seen again
    retries: int = 0  # events sent again

    @classmethod
    def parse(cls, body: bytes) -> LinkCounters:
        return cls(*struct.unpack(wire.STATS, body))


@dataclass(frozen=True)
class ChannelCounters:
    """One line's counters on the card (``STATS`` on the line's channel), in ``wire.CC_*`` order."""

    audio_up: int = 0
    audio_down: int = 0
    underruns: int = 0
    overruns: int = 0
    lost: int = 0
    late: int = 0
    events_dropped: int = 0
    longest_gap: int = 0

    @classmethod
    def parse(cls, body: bytes) -> ChannelCounters:
        return cls(*struct.unpack(wire.STATS, body))


@dataclass(frozen=True)
class CardStats:
    """Everything ``GET_STATS`` returns: the link's counters and each line's (index = channel)."""

    link: LinkCounters
    lines: tuple[ChannelCounters, ...]



@dataclass(frozen=True)
class ImageAck:
    """The card's answer to an ``IMAGE`` frame: the op, its result (``wire.IR_*``, named by
    ``result_name``) and the image offset the card expects next."""

    op: int
    result: int
    next_offset: int

    @property
    def ok(self) -> bool:
        return self.result == wire.IR_OK

    @property
    def result_name(self) -> str:
        return wire.IR_NAMES[self.result] if self.result < len(wire.IR_NAMES) else f"result {self.result}"

    @classmethod
    def parse(cls, body: bytes) -> ImageAck:
        return cls(*struct.unpack(wire.IMAGE_ACK, body))


@dataclass(frozen=True)
class SlotInfo:
    """One of the card's two image slots: its state (``wire.SLOT_NAMES``) and the image header's
    version, security counter and payload digest prefix (None / 0 / None when the slot holds no
    readable header)."""

    index: int
    state: str  # empty / receiving / pending / trial / confirmed / reverted
    version: str | None
    security_counter: int
    digest: str | None = None  # hex: the first wire.DIGEST_PREFIX bytes of the payload's SHA-256


@dataclass(frozen=True)
class CardSlots:
    """What the card's updater says about its slots (``SLOTS``, the answer to ``IMAGE STATUS``)."""

    running: int | None  # the slot the card runs (None: no valid image)
    active: int  # the confirmed slot it boots when no trial is due
    trial_boots_left: int
    last_revert_reason: str | None  # None: never reverted
    reverted_slot: int | None
    slots: tuple[SlotInfo, SlotInfo]

    @property
    def running_slot(self) -> SlotInfo | None:
        return None if self.running is None else self.slots[self.running]

    @property
    def security_counter(self) -> int:
        """The lowest security counter the card takes: its confirmed images' highest (the card
        keeps its own and checks it at BEGIN too)."""
        return max((s.security_counter for s in self.slots if s.state == "confirmed"), default=0)

    @classmethod
    def parse(cls, body: bytes) -> CardSlots:
        f = struct.unpack(wire.SLOTS, body)
        running, active, left, reason, reverted = f[:5]
        slots = []
        for i, (state, ma, mi, pa, sec, digest) in enumerate((f[5:11], f[11:17])):
            name = wire.SLOT_NAMES[state] if state < len(wire.SLOT_NAMES) else f"state {state}"
            has = (ma, mi, pa, sec) != (0, 0, 0, 0) or any(digest)
            slots.append(SlotInfo(i, name, f"{ma}.{mi}.{pa}" if has else None, sec, digest.hex() if has else None))
        why = None if reason == wire.REV_NONE else (wire.REV_NAMES[reason] if reason < len(wire.REV_NAMES)
                                                      else f"reason {reason}")
        return cls(None if running < 0 else running, active, left, why, None if reverted == 0xFF else reverted,
                   (slots[0], slots[1]))
