"""LineCardLink's commands at the transport boundary: retries, what happens after the last one,
and the typed API (hook, redundancy, audio copies, counters) down to the bytes."""

from __future__ import annotations

import asyncio
import struct

import pytest

from drivers.linecard import (
    CardStats,
    ChannelCounters,
    CommandError,
    LineCardLink,
    LinkCounters,
    LinkDown,
    LinkListener,
)
from firmware.card import wire
from tests.drivers.fakecard import FakeCard


class Recorder(LinkListener):
    def __init__(self) -> None:
        self.ups: list[bool] = []
        self.downs: list[str] = []

    def link_up(self, hello, reset):
        self.ups.append(reset)

    def link_down(self, reason):
        self.downs.append(reason)


async def started(card: FakeCard) -> tuple[LineCardLink, Recorder]:
    rec = Recorder()
    # dead_after well above a command's ~1 s of tries: this card sends no STATUS heartbeat
    link = LineCardLink("fake://card", rec, dead_after=10.0, transport=card.transport)
    await link.start(timeout=2)
    return link, rec


def cmd_sends(card: FakeCard, op: int) -> list[int]:
    """The seq of every CMD frame with ``op`` the card received (retries repeat the seq)."""
    return [seq for _ch, seq, body in card.sent(wire.T_CMD) if body[0] == op]


async def test_a_command_acknowledged_after_n_lost_tries_succeeds_with_n_plus_1_sends():
    card = FakeCard(lose_cmds=3)
    link, rec = await started(card)
    try:
        await link.hook(0, True)
        sends = cmd_sends(card, wire.OP_HOOK)
        assert len(sends) == 4 and len(set(sends)) == 1  # the same command (one seq) four times
        assert link.counters.retries == 3 and link.counters.commands_failed == 0
        assert link.is_up and rec.downs == []
    finally:
        await link.close()


async def test_a_command_never_acknowledged_is_sent_max_tries_then_the_link_goes_down_and_resyncs():
    card = FakeCard()
    link, rec = await started(card)
    try:
        card.lose_cmds = -1  # the card stops acknowledging
        card.answer_sync = False  # ... and answers SYNC only when told below
        with pytest.raises(LinkDown, match=rf"did not acknowledge command HOOK on line 2 after {wire.MAX_TRIES} "
                                           r"tries .*the link is down and reconnecting"):
            await link.hook(1, True)
        assert len(cmd_sends(card, wire.OP_HOOK)) == wire.MAX_TRIES
        assert link.counters.commands_failed == 1 and link.counters.retries == wire.MAX_TRIES - 1
        assert not link.is_up
        assert len(rec.downs) == 1 and "did not acknowledge command HOOK" in rec.downs[0]
        with pytest.raises(LinkDown, match="not connected"):  # refused at once while down
            await link.set_redundancy(2)
        # the port is reopened and SYNC sent on it, as after a lost port
        syncs_before = len(card.sent(wire.T_SYNC))
        async with asyncio.timeout(3):
            while card.opened < 2 or len(card.sent(wire.T_SYNC)) == syncs_before:
                await asyncio.sleep(0.01)
        card.answer_sync, card.lose_cmds = True, 0
        await link.wait_up(3)  # back on the next HELLO
        assert rec.ups == [False, False] and link.counters.reconnects == 1
        await link.hook(1, True)  # and it works
    finally:
        await link.close()


async def test_a_refused_command_raises_with_the_cards_reason_and_the_link_stays_up():
    card = FakeCard(status=wire.ST_BUSY)
    link, rec = await started(card)
    try:
        with pytest.raises(CommandError, match="FLASH on line 1: line busy"):
            await link.flash(0, 150)
        assert link.is_up and rec.downs == []
    finally:
        await link.close()


async def test_typed_commands_put_the_documented_bytes_on_the_wire():
    card = FakeCard()
    link, _ = await started(card)
    try:
        await link.hook(1, True)
        await link.hook(1, False)
        await link.set_gains(0, -3.5, 6)
        await link.pulse_dial(0, "507", 40, 60)
        await link.set_redundancy(3)
        with pytest.raises(ValueError, match="pulse dialling takes up to 32 digits 0-9"):
            await link.pulse_dial(0, "12#")
        with pytest.raises(ValueError, match="1..6 copies, not 7"):
            await link.set_redundancy(7)
        got = [(ch, body) for ch, _seq, body in card.sent(wire.T_CMD)]
        assert got == [
            (1, b"\x01\x01\x00\x00\x00"),  # HOOK off-hook: op 1, arg1 1, arg2 0 (<Bhh)
            (1, b"\x01\x00\x00\x00\x00"),  # HOOK on-hook
            (0, b"\x04\xdd\xff\x3c\x00"),  # GAIN -35, +60 (0.1 dB)
            (0, b"\x03\x28\x00\x3c\x00507"),  # PULSE_DIAL make 40, break 60, digits
            (0xFF, b"\x07\x03\x00\x00\x00"),  # REDUNDANCY 3, card-wide
        ]
        assert link.redundancy == 3
    finally:
        await link.close()


async def test_audio_is_sent_k_minus_1_times_at_once_and_once_more_with_the_next_frame():
    card = FakeCard()
    link, _ = await started(card)
    try:
        await link.set_redundancy(3)
        a, b = bytes([1]) * 160, bytes([2]) * 160
        link.send_audio(0, 40, a)
        link.send_audio(0, 41, b)
        assert [(ch, seq, body) for ch, seq, body in card.sent(wire.T_AUDIO)] == [
            (0, 40, a), (0, 40, a), (0, 41, b), (0, 41, b), (0, 40, a)]
    finally:
        await link.close()


async def test_card_counters_and_status_come_back_typed():
    card = FakeCard(channels=2)
    link, _ = await started(card)
    try:
        task = asyncio.create_task(link.card_stats())
        async with asyncio.timeout(2):
            while not cmd_sends(card, wire.OP_GET_STATS):
                await asyncio.sleep(0.01)
        for ch, base in ((wire.BROADCAST, 10), (0, 20), (1, 30)):
            link._on_bytes(bytes(wire.encode(wire.T_STATS, ch, 0, struct.pack(wire.STATS, *range(base, base + 8)))))
        stats = await task
        assert stats == CardStats(LinkCounters(*range(10, 18)),
                                  (ChannelCounters(*range(20, 28)), ChannelCounters(*range(30, 38))))
        assert stats.link.retries == 17 and stats.lines[1].longest_gap == 37  # named as wire's LC_*/CC_* say
        link._on_bytes(bytes(wire.encode(wire.T_STATUS, wire.BROADCAST, 0, struct.pack(wire.STATUS, 5, 0, 0, 4))))
        assert link.redundancy == 4  # the card's own word on the copies it sends
    finally:
        await link.close()


def test_the_counter_dataclasses_name_the_wire_counters_in_wire_order():
    from dataclasses import fields

    assert tuple(f.name for f in fields(LinkCounters)) == wire.LINK_COUNTERS
    assert tuple(f.name for f in fields(ChannelCounters)) == wire.CHANNEL_COUNTERS
    assert [wire.LC_RX_FRAMES, wire.LC_RETRIES, wire.CC_AUDIO_UP, wire.CC_LONGEST_GAP] == [0, 7, 0, 7]
