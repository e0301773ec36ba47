# The card's link (card/link.py) with a fake UART: exact bytes out, retries, give-up, acks,
# duplicate commands, error counters, a full UART.
import struct

import machine
from card import wire
from card.link import CardLink
from fake_time import clock
from mpytest import eq, frames

# EVENT RING_ON value 1 at card time 1000 ms, line 2, seq 0 (written out: see test_wire.py)
EVENT_RING_ON = bytes.fromhex("0303020103010103e80301054f08368a00")
ACK_SEQ7_BAD_ARGS = bytes.fromhex("0402ff07060225d5a68900")
CMD_HOOK = bytes.fromhex("078101030201010101057ff571a200")  # line 1, seq 0x0203, off-hook


def new():
    machine.clear()
    clock.set(1000)
    u = machine.UART(0, txbuf=4096)
    return CardLink(u), u


def ring_on():
    return struct.pack(wire.EVENT, wire.EV_RING_ON, 1, 1000)


def test_event_goes_out_as_its_golden_bytes():
    link, u = new()
    eq(link.send_reliable(wire.T_EVENT, 2, ring_on()), 0, "first seq")
    eq(u.take(), EVENT_RING_ON, "the event on the wire")


def test_event_is_retried_every_retry_ms_until_acknowledged():
    link, u = new()
    link.send_reliable(wire.T_EVENT, 2, ring_on())
    u.take()
    link.service(clock.ticks_add(1000, wire.RETRY_MS - 1))
    eq(u.take(), b"", "not due yet")
    link.service(clock.ticks_add(1000, wire.RETRY_MS))
    eq(u.take(), EVENT_RING_ON, "the same bytes again")
    eq(link.counters[wire.LC_RETRIES], 1, "retries")
    u.feed(wire.encode(wire.T_ACK, 2, 0, struct.pack(wire.ACK, wire.ST_OK)))
    eq(link.poll(), [], "an ACK is consumed by the link")
    link.service(clock.ticks_add(1000, 10 * wire.RETRY_MS))
    eq(u.take(), b"", "acknowledged: no more retries")
    eq(link.events_dropped, 0, "nothing dropped")


def test_event_is_dropped_and_counted_after_max_tries():
    link, u = new()
    link.send_reliable(wire.T_EVENT, 2, ring_on())
    now = 1000
    sent = len(frames(u.take()))
    for _ in range(wire.MAX_TRIES + 5):
        now = clock.ticks_add(now, wire.RETRY_MS)
        link.service(now)
        sent += len(frames(u.take()))
    eq(sent, wire.MAX_TRIES, "sent MAX_TRIES times in all")
    eq(link.events_dropped, 1, "then dropped and counted")
    eq(link.pending, {}, "nothing left pending")


def test_at_most_max_pending_events_wait_for_an_ack():
    link, u = new()
    for _ in range(wire.MAX_PENDING + 3):
        link.send_reliable(wire.T_EVENT, 0, ring_on())
    eq(len(link.pending), wire.MAX_PENDING, "in flight")
    eq(link.events_dropped, 3, "the oldest dropped")
    eq(0 in link.pending, False, "seq 0 was the oldest")


def test_ack_goes_out_as_its_golden_bytes():
    link, u = new()
    link.ack(7, wire.ST_BAD_ARGS)
    eq(u.take(), ACK_SEQ7_BAD_ARGS, "ACK seq 7 BAD_ARGS")


def test_a_retried_command_is_acknowledged_again_not_repeated():
    link, u = new()
    u.feed(CMD_HOOK)
    eq(link.poll(), [(wire.T_CMD, 1, 0x0203, bytes.fromhex("0101000000"))], "the command")
    u.feed(CMD_HOOK)
    eq(link.poll(), [(wire.T_ACK, 1, 0x0203, None)], "its retry: ack again only")
    eq(link.counters[wire.LC_DUPLICATES], 1, "duplicates")


def test_a_command_is_remembered_for_the_dedupe_window():
    link, u = new()
    for seq in range(wire.DEDUPE_WINDOW):
        u.feed(wire.encode(wire.T_CMD, 0, seq, struct.pack(wire.CMD, wire.OP_HOOK, 0, 0)))
    eq(len(link.poll()), wire.DEDUPE_WINDOW, "all new")
    u.feed(wire.encode(wire.T_CMD, 0, 0, struct.pack(wire.CMD, wire.OP_HOOK, 0, 0)))
    eq(link.poll()[0][0], wire.T_ACK, "seq 0 still remembered")
    u.feed(wire.encode(wire.T_CMD, 0, wire.DEDUPE_WINDOW, struct.pack(wire.CMD, wire.OP_HOOK, 0, 0)))
    u.feed(wire.encode(wire.T_CMD, 0, 0, struct.pack(wire.CMD, wire.OP_HOOK, 0, 0)))
    eq([r[0] for r in link.poll()], [wire.T_CMD, wire.T_CMD], "one more: seq 0 forgotten, runs again")


def test_bad_frames_are_counted_by_kind():
    link, u = new()
    bad = bytearray(CMD_HOOK)
    bad[1] ^= 0x01  # the type byte: the CRC fails
    u.feed(bytes(bad))
    u.feed(wire.encode(0x42, 0, 0, b"x"))
    u.feed(wire.encode(wire.T_EVENT, 0, 0, b"\x01"))
    u.feed(b"\x05" * 300 + b"\x00")
    u.feed(CMD_HOOK)
    eq(len(link.poll()), 1, "only the good command")
    c = link.counters
    eq((c[wire.LC_RX_FRAMES], c[wire.LC_CRC_ERRORS], c[wire.LC_UNKNOWN_TYPE], c[wire.LC_TRUNCATED],
        c[wire.LC_OVERSIZED]), (1, 1, 1, 1, 1), "rx, crc, unknown, truncated, oversized")


def test_a_full_uart_cuts_the_frame_and_the_next_starts_with_a_delimiter():
    link, u = new()
    u.room = 10
    link.send(wire.T_EVENT, 2, 0, ring_on())
    eq(u.take(), EVENT_RING_ON[:10], "as much as fitted")
    eq(link.tx_dropped, 1, "counted")
    u.room = 4096  # the UART drained
    link.ack(7, wire.ST_BAD_ARGS)
    eq(u.take(), b"\x00" + ACK_SEQ7_BAD_ARGS, "a delimiter ends the cut frame first")
