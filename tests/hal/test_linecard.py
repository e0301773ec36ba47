"""The line card HAL on the real link over a stand-in card (no simulator): what a line plays
reaches the card encoded once in the card's law, and the board reports link health typed."""

from __future__ import annotations

import asyncio
import struct
import subprocess

import numpy as np
import pytest

import hal
from drivers.dsp import ALAW, G711, ULAW
from drivers.linecard import LineCardLink
from firmware.card import wire
from hal.linecard import BoardConfig, LineCardBoard
from node_agent.config import load
from node_agent.prompts import PromptLibrary
from tests.drivers.fakecard import FakeCard
from tests.node.test_config import GOOD


def board_on(card: FakeCard, config: BoardConfig | None = None) -> LineCardBoard:
    def link(url, listener, *, baud):
        return LineCardLink(url, listener, baud=baud, dead_after=10.0, transport=card.transport)

    return LineCardBoard("fake://card", config, link=link)


def card_frame(channel: int, seq: int, law: int) -> bytes:
    """One card -> host audio frame of silence, no echo reference."""
    return bytes(wire.encode(wire.T_AUDIO, channel, seq, struct.pack(wire.AUDIO_UP, wire.NO_SEQ)
                             + G711(law).silence()))


def played(card: FakeCard, channel: int) -> bytes:
    """The audio the card got for ``channel``, one copy of each frame, in seq order."""
    frames = {seq: body for ch, seq, body in card.sent(wire.T_AUDIO) if ch == channel}
    return b"".join(frames[s] for s in sorted(frames))


async def play_through(board: LineCardBoard, card: FakeCard, pcm: np.ndarray, law: int) -> bytes:
    line = board.lines[0]
    await line.answer()
    line.audio.write(pcm)
    seq = 0
    async with asyncio.timeout(10):
        while line.audio.playing:  # each frame from the card is a tick of its clock: one frame back
            board.link._on_bytes(card_frame(0, seq, law))
            seq += 1
            await asyncio.sleep(0)
    return played(card, 0)


async def test_an_a_law_card_plays_a_prompt_encoded_once(tmp_path):
    wav = tmp_path / "hold.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(wav), "synth", "1.0", "sine", "300-3000",
                    "vol", "0.7"], check=True)
    cfg_path = tmp_path / "branch.toml"
    cfg_path.write_text(GOOD + '\n[prompts.hold]\nwav = "hold.wav"\n', encoding="utf-8")
    prompts = PromptLibrary(load(cfg_path))
    prompts.build()
    pcm = PromptLibrary(load(cfg_path)).get("hold", "en")  # from the cache, as the node plays it
    assert len(pcm) % 160 == 0
    card = FakeCard(law=wire.LAW_ALAW)
    board = board_on(card)
    await board.start(timeout=2)
    try:
        got = await play_through(board, card, pcm, ALAW)
    finally:
        await board.close()
    once = G711(ALAW).encode(pcm)
    assert got == once  # the card's law, one encode from the linear prompt, byte for byte
    ulaw = G711(ULAW)
    twice = G711(ALAW).encode(ulaw.decode(ulaw.encode(pcm)))
    assert twice != once  # (so the comparison above does tell a μ-law round trip apart)


async def test_link_status_is_read_through_the_board_typed():
    card = FakeCard()
    board = board_on(card)
    await board.start(timeout=2)
    try:
        board.link._on_bytes(b"\x05abcd\x00")  # one damaged frame
        st = board.link_status()
        assert st == hal.LinkStatus(connected=True, bad_frames=1, reconnects=0, card_resets=0, retries=0,
                                    commands_failed=0, audio_copies=6)  # one line: room for 6 copies
    finally:
        await board.close()
    assert not board.link_status().connected


def test_the_daemon_status_reads_link_health_only_through_the_hal(tmp_path):
    from node_agent.daemon import Node

    cfg_path = tmp_path / "branch.toml"
    cfg_path.write_text(GOOD, encoding="utf-8")
    node = Node(load(cfg_path))

    class OnlyTheInterface(hal.Board):  # a Board with nothing behind it: no .link to reach for
        lines: list = []

        async def start(self):
            return self

        async def close(self):
            pass

        identity = None
        connected = False

        async def set_led(self, line, on):
            pass

        async def stats(self):
            return {}

        def link_status(self):
            return hal.LinkStatus(False, 7, 3, 1, 0, 0, 1)

    node.board = OnlyTheInterface()
    try:
        card = node.status()["card"]
    finally:
        node.store.close()
    assert (card["connected"], card["bad_frames"], card["reconnects"]) == (False, 7, 3)


def test_a_bad_redundancy_setting_is_named():
    with pytest.raises(ValueError, match="BoardConfig.redundancy '9': use 'auto' or a number of copies"):
        BoardConfig(redundancy="9")


async def test_a_command_the_card_never_acknowledges_takes_every_line_down_and_back_up():
    from drivers.linecard import LinkDown
    from hal import events as ev

    card = FakeCard(channels=2)
    board = board_on(card)
    await board.start(timeout=2)
    try:
        for line in board.lines:
            assert isinstance(await line.next_event(1), ev.LineUp)
        card.lose_cmds = -1
        with pytest.raises(LinkDown, match="did not acknowledge command GAIN on line 1"):
            await board.lines[0].set_gains(0, -3)
        for line in board.lines:
            down = await line.next_event(1)
            assert isinstance(down, ev.LineDown) and "did not acknowledge command GAIN" in down.reason
        card.lose_cmds = 0
        for line in board.lines:  # SYNC -> HELLO on the reopened port: idle and usable again
            assert isinstance(await line.next_event(3), ev.LineUp)
        assert board.connected and board.link_status().reconnects == 1
    finally:
        await board.close()


def card_event(channel: int, seq: int, code: int, value: int) -> bytes:
    return bytes(wire.encode(wire.T_EVENT, channel, seq, struct.pack(wire.EVENT, code, value, 0)))


async def copies_become(board: LineCardBoard, want: int) -> None:
    """Wait (1 s at most) until the board has told the card ``want`` copies."""
    async with asyncio.timeout(1):
        while board.copies != want:
            await asyncio.sleep(0.005)


def redundancy_sent(card: FakeCard) -> list[int]:
    """The copies the host asked the card for, in order."""
    return [struct.unpack(wire.CMD, body[:wire.CMD_LEN])[1] for _, _, body in card.sent(wire.T_CMD)
            if body[0] == wire.OP_REDUNDANCY]


async def test_on_hook_caller_id_streaming_counts_in_the_link_budget():
    # the card streams a caller ID window by itself: after a first ring (which the host sees
    # first) or a polarity reversal (no warning). Either way the copies go down to what the
    # lines streaming fit, and back up when the windows close
    card = FakeCard(channels=8)
    board = board_on(card)
    await board.start(timeout=2)
    try:
        await copies_become(board, 6)  # idle: room for 6
        await board.lines[0].answer()  # one call: still 6
        ev_seq = 0
        for ch in range(1, 4):  # three lines ring: counted from the ring, before their windows open
            ev_seq += 1
            board.link._on_bytes(card_event(ch, ev_seq, wire.EV_RING_ON, 1))
        await copies_become(board, 2)  # 4 lines
        for ch in range(4, 8):  # four reversals: their windows open with no ring first
            ev_seq += 1
            board.link._on_bytes(card_event(ch, ev_seq, wire.EV_CID_WINDOW, 1))
        await copies_become(board, 1)  # 8 lines
        for ch in range(1, 8):
            ev_seq += 1
            board.link._on_bytes(card_event(ch, ev_seq, wire.EV_CID_WINDOW if ch >= 4 else wire.EV_RING_STOP, 0))
        await copies_become(board, 6)  # only the call is left
        assert redundancy_sent(card) == [6, 2, 1, 6]
    finally:
        await board.close()
