"""The serial link under bit errors and card resets, through the real path."""

from __future__ import annotations

import asyncio
import os
import time

from drivers.dsp import ToneGenerator, ToneSpec
from hal import events as ev
from tests.helpers import answered_call, collect_digits, connected, wait_for

DIGITS = "1234567890*#ABCD"
# The bit-error call runs on the card's faster clock (x2 by default: the card's 20 ms turns come
# every 10 ms, so the node has half the time for each). The link's baud rate, hence the bit errors,
# scale with it.
BER_SPEED = os.environ.get("BRANCHNODE_BER_SPEED", "2")


async def test_bit_errors_both_ways_lose_no_digit_and_leave_only_single_frame_gaps(sim_factory):
    # a 60 s call (card time) at a bit-error rate of 1e-4 both ways
    sim = sim_factory("--channels", "2", "--speed", BER_SPEED)
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        await client.call("fault", ber=1e-4)
        # audio both ways all along: a tone from the host, digits from the caller
        line.audio.write(ToneGenerator(ToneSpec(600, 0, -15, 0, 0)).read(8000 * 65))
        sent = ""
        heard = ""
        t_card = 0.0
        while t_card < 60_000:
            burst = DIGITS * 2
            task = asyncio.create_task(client.call("dtmf", line=1, digits=burst, on_ms=60, off_ms=60))
            heard += await collect_digits(line, quiet_s=0.4, max_s=30)
            await task
            sent += burst
            t_card += len(burst) * 120
        heard += await collect_digits(line, quiet_s=0.8, max_s=5)
        await client.call("fault", ber=0)
        stats = await board.stats()
        sim_st = await client.call("status")
    host_line = stats["lines"][1]
    card_line = stats["card"]["line1"]
    clock = sim_st["clock"]  # the simulator's own pauses, taken out of the card's clock
    longest_loss = sim_st["firmware"]["longest_loss"][0]  # host -> card frames lost in a row
    print("simulator clock:", clock, "card line:", card_line, "longest loss:", longest_loss)
    assert heard == sent, (host_line, card_line, clock)  # nothing lost, nothing doubled
    # bit errors cost single frames, never two in a row: card -> host (the host's reassembly) and
    # host -> card (the card's playout; a turn with nothing queued because the node fell behind on
    # a busy machine is an underrun, not a loss: the card then waits for that frame, nothing is
    # dropped, and test_eight_channels holds the node to no underruns at all at real time)
    assert host_line["longest_gap"] <= 1, host_line
    assert longest_loss <= 1, (card_line, clock)
    # the errors happened and are visible on both sides
    assert sim_st["port"]["bits_flipped_up"] > 50 and sim_st["port"]["bits_flipped_down"] > 50
    assert sum(stats["link"]["bad_frames"].values()) > 50
    card_link = stats["card"]["link"]
    assert card_link["crc_errors"] + card_link["cobs_errors"] + card_link["truncated"] > 50
    assert host_line["frames"] + host_line["lost"] >= 60_000 // 20 * 0.95


async def test_card_reset_mid_call_is_line_down_and_the_link_is_back_within_2_s(sim_factory):
    sim = sim_factory("--channels", "2")
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        boot_id = board.identity.boot_id
        t0 = time.monotonic()
        await client.call("reset_card")
        down = await wait_for(line, ev.LineDown, timeout=2.0)
        up = await wait_for(line, ev.LineUp, timeout=2.0)
        elapsed = time.monotonic() - t0
        assert down.line == 1 and up.line == 1
        assert elapsed < 2.0, elapsed
        assert board.connected and board.identity.boot_id != boot_id
        assert not line.offhook
        # and the line takes calls again
        line = await answered_call(board, client, 1)
        await client.call("dtmf", line=1, digits="789", on_ms=60, off_ms=60)
        assert await collect_digits(line, quiet_s=1.0, max_s=5) == "789"


async def test_the_card_counts_and_drops_bad_frames_and_keeps_working(sim_factory):
    import socket
    import struct

    from firmware.card import wire

    sim = sim_factory("--channels", "1")
    host, port = sim.serial.removeprefix("socket://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        good_cmd = bytes(wire.encode(wire.T_CMD, wire.BROADCAST, 9, struct.pack(wire.CMD, wire.OP_GET_STATS, 0, 0)))
        bad_crc = bytearray(good_cmd)
        bad_crc[5] ^= 0x40
        junk = [bytes(bad_crc), bytes(wire.encode(0x99, 0, 1, b"??")),
                bytes(wire.encode(wire.T_CMD, 0, 2, b"\x01")), b"\x09" * 900 + b"\x00", b"\xff\xfe\x00"]
        s.sendall(b"".join(junk) + good_cmd)
        deframer = wire.Deframer()
        got: dict[int, tuple] = {}
        end = time.monotonic() + 5
        while time.monotonic() < end and wire.BROADCAST not in got:
            for code, ftype, ch, _seq, body in deframer.feed(s.recv(65536)):
                if code == wire.OK and ftype == wire.T_STATS:
                    got[ch] = struct.unpack(wire.STATS, body)
    link = dict(zip(wire.LINK_COUNTERS, got[wire.BROADCAST]))
    assert link["crc_errors"] + link["cobs_errors"] >= 1
    assert link["unknown_type"] == 1
    assert link["truncated"] >= 1
    assert link["oversized"] == 1
    assert link["rx_frames"] >= 1  # the good command after the junk was understood and answered


async def test_a_card_that_stops_answering_is_noticed_and_the_link_comes_back(sim_factory):
    import signal

    sim = sim_factory("--channels", "1")
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        os.kill(sim.proc.pid, signal.SIGSTOP)  # the card hangs: port open, nothing comes out
        try:
            t0 = time.monotonic()
            down = await wait_for(line, ev.LineDown, timeout=3.0)
            assert "no frame from the card" in down.reason
            assert time.monotonic() - t0 < 2.0
            assert not board.connected
        finally:
            os.kill(sim.proc.pid, signal.SIGCONT)
        await wait_for(line, ev.LineUp, timeout=5.0)
        assert board.connected and board.link.counters.reconnects == 1
        line = await answered_call(board, client, 1)
        await client.call("dtmf", line=1, digits="24", on_ms=60, off_ms=60)
        assert await collect_digits(line, quiet_s=1.0, max_s=5) == "24"
