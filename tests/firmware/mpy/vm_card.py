# The whole card (card/app.py) on fake hardware: SYNC -> HELLO, commands and their ACKs, the LED
# command, the 20 ms frame tick, which must allocate nothing but the CRC results, and the receive
# path of the host's audio.
import binascii
import gc
import struct

import machine
from card import board, link, wire
from card.app import CAPS, Card
from fake_time import clock
from mpytest import eq, frames

SYNC = bytes.fromhex("0380ff0105ca5d857200")  # written out: see test_wire.py


def new(channels=8, baud=board.BAUD):
    machine.clear()
    clock.set(0)
    for ch in range(channels):
        machine.adc_values["LOOP" + str(ch)] = 30000
    card = Card(channels=channels, baud=baud)
    return card, machine.uarts[0]


def command(card, u, ch, seq, op, a1=0, a2=0):
    u.feed(wire.encode(wire.T_CMD, ch, seq, struct.pack(wire.CMD, op, a1, a2)))
    card.handle(card.link.poll(), clock.ticks_ms())


def test_sync_is_answered_with_hello_and_the_line_states():
    card, u = new(8)
    u.feed(SYNC)
    card.handle(card.link.poll(), clock.ticks_ms())
    out = frames(u.take())
    hello = struct.pack(wire.HELLO, 1, board.FW_VERSION[0], board.FW_VERSION[1], board.FW_VERSION[2], 8,
                        wire.LAW_ULAW, CAPS, card.boot_id, b"BNLC-8FX")
    eq(out[0], (wire.OK, wire.T_HELLO, 0xFF, 0, hello), "HELLO")
    eq([(r[1], r[2], r[4][0]) for r in out[1:]], [(wire.T_EVENT, ch, wire.EV_LINE_STATE) for ch in range(8)],
       "one LINE_STATE event per line")


def test_led_command_sets_a_state_that_the_frame_tick_keeps():
    card, u = new(4)
    command(card, u, 3, 9, wire.OP_LED, wire.LED_ON)
    eq(frames(u.take()), [(wire.OK, wire.T_ACK, 0xFF, 9, b"\x00")], "ACK OK")
    for _ in range(50):
        clock.advance(wire.FRAME_MS)
        card.frame_tick(clock.ticks_ms())
    eq(machine.levels["LED3"], 1, "still lit after 1 s of frames on an idle line")
    eq(machine.writes["LED3"].count(0), 1, "only the power-on write turned it off")
    command(card, u, 3, 10, wire.OP_LED, wire.LED_AUTO)
    card.frame_tick(clock.ticks_ms())
    eq(machine.levels["LED3"], 0, "auto: an idle line is dark")
    command(card, u, 3, 11, wire.OP_LED, 9)
    eq(frames(u.take())[-1][4], bytes([wire.ST_BAD_ARGS]), "unknown LED state refused")


def test_reset_if_idle_is_refused_busy_while_a_line_is_off_hook_or_ringing():
    card, u = new(4)
    card.lines[2].ringing = True
    command(card, u, wire.BROADCAST, 20, wire.OP_RESET, wire.RESET_IF_IDLE)  # no ResetCalled: not reset
    eq(frames(u.take()), [(wire.OK, wire.T_ACK, 0xFF, 20, bytes([wire.ST_BUSY]))], "ACK BUSY while line 3 rings")
    card.lines[2].ringing = False
    card.lines[1].offhook = True
    command(card, u, wire.BROADCAST, 21, wire.OP_RESET, wire.RESET_IF_IDLE)
    eq(frames(u.take())[-1][4], bytes([wire.ST_BUSY]), "ACK BUSY while line 2 is off-hook")
    reset = False
    try:
        command(card, u, wire.BROADCAST, 22, wire.OP_RESET, 0)  # a plain RESET: at once, calls or not
    except machine.ResetCalled:
        reset = True
    eq(reset, True, "plain RESET resets during a call")
    eq(frames(u.take())[-1][4], bytes([wire.ST_OK]), "ACK OK first")
    card.lines[1].offhook = False
    reset = False
    try:
        command(card, u, wire.BROADCAST, 23, wire.OP_RESET, wire.RESET_IF_IDLE)
    except machine.ResetCalled:
        reset = True
    eq(reset, True, "RESET_IF_IDLE resets a card whose lines are all free")


def _crc_size():
    # what one CRC-32 result costs the heap (a long int on this 32-bit port when >= 2**30)
    gc.collect()
    a = gc.mem_alloc()
    x = binascii.crc32(b"\x00\x00\x01")  # 0x8846e984
    n = gc.mem_alloc() - a
    eq(x, 0x8846E984, "reference CRC")
    return n


def _crcs_needing_a_long_int(data, first_seq):
    # CRCs of the distinct audio frames from seq first_seq on in data that do not fit a small int
    seen = {}
    for raw in bytes(data).split(b"\x00"):
        if not raw:
            continue
        p = wire.cobs_decode(raw)
        if p[0] == wire.T_AUDIO:
            seq = p[2] | (p[3] << 8)
            if seq >= first_seq:  # not the delayed copies of frames made before the measurement
                seen[(p[1], seq)] = struct.unpack("<I", p[-4:])[0]
    return len([c for c in seen.values() if c >= 0x40000000])


def test_frame_tick_allocates_nothing_but_the_crcs():
    # at 3 Mbaud the link has room for 3 copies of 8 lines (at 921,600 the card would send one)
    card, u = new(8, baud=3000000)
    card.copies = 3  # two copies now and one a tick later: the redundancy path too
    rx = machine.i2s_units[board.I2S_RX]
    rx.rx_block = bytes((i * 7) & 0xFF for i in range(wire.FRAME_SAMPLES * 8))
    for ln in card.lines:
        ln.hook(1)
        for seq in range(3):
            ln.audio_from_host(seq, bytes([0x20 + seq]) * wire.FRAME_SAMPLES)
    for _ in range(3):  # warm up: the stand-ins' own buffers are made on first use
        clock.advance(wire.FRAME_MS)
        card.frame_tick(clock.ticks_ms())
    u.take()
    u.room = len(u.txmem)  # a UART that keeps up: every frame goes out
    first_seq = card.lines[0].up_seq
    crc_size = _crc_size()
    allocated = 0
    ticks = 20
    gc.collect()
    gc.disable()
    try:
        for t in range(ticks):
            for ln in card.lines:  # the host's frames arrive between ticks (not measured here)
                ln.audio_from_host(3 + t, bytes([t]) * wire.FRAME_SAMPLES)
            clock.advance(wire.FRAME_MS)
            now = clock.ticks_ms()
            a = gc.mem_alloc()
            card.frame_tick(now)
            allocated += gc.mem_alloc() - a
    finally:
        gc.enable()
    sent = u.take()
    eq(len(sent), ticks * 8 * 3 * wire.AUDIO_UP_WIRE, "3 copies of 8 lines' frames per tick")
    eq(allocated, _crcs_needing_a_long_int(sent, first_seq) * crc_size, "heap bytes allocated by " + str(ticks) + " frame ticks")
    eq(card.lines[0].counters[wire.CC_AUDIO_DOWN], 3 + ticks, "the host's frames were played")


def _view_size():
    # what one memoryview slice costs the heap
    buf = bytearray(16)
    mv = memoryview(buf)
    gc.collect()
    a = gc.mem_alloc()
    v = mv[2:9]
    n = gc.mem_alloc() - a
    eq(len(v), 7, "a view")
    return n


def test_receiving_the_hosts_audio_allocates_one_view_a_piece():
    # 20 ticks of audio for 8 lines from the host, read from the UART 256 bytes at a time, taken
    # apart in the link's own buffer and put in the playout buffers: the heap grows by one
    # memoryview for each piece of a frame copied (a frame is split where a read ends), nothing
    # else: the CRC check's result is the residue 0x2144DF1C, below 2**30, a small int
    card, u = new(8)
    for ln in card.lines:
        ln.hook(1)
    u.take()
    data = bytearray()
    for seq in range(20):
        for ch in range(8):
            data.extend(wire.encode(wire.T_AUDIO, ch, seq, bytes([seq + 1]) * wire.FRAME_SAMPLES))
    pieces = 0
    for at in range(0, len(data), link.RX_CHUNK):
        pieces += len([p for p in bytes(data[at:at + link.RX_CHUNK]).split(b"\x00") if p])
    u.feed(data)
    on_frame = card.on_frame
    view_size = _view_size()
    gc.collect()
    gc.disable()
    try:
        a = gc.mem_alloc()
        card.link.poll_each(on_frame)
        allocated = gc.mem_alloc() - a
    finally:
        gc.enable()
    eq(card.link.counters[wire.LC_RX_FRAMES], 20 * 8, "every frame received")
    eq(sum(ln.counters[wire.CC_AUDIO_DOWN] for ln in card.lines), 20 * 8, "and queued to play")
    eq(allocated, pieces * view_size, "heap bytes for 160 frames in " + str(pieces) + " pieces")


def test_the_allocation_probe_sees_an_allocation():
    # the measurement above is real: the host's encoder (a new bytearray a frame) shows up in it
    gc.collect()
    gc.disable()
    try:
        a = gc.mem_alloc()
        wire.encode(wire.T_AUDIO, 0, 0, b"\x01" * 162)
        n = gc.mem_alloc() - a
    finally:
        gc.enable()
    eq(n > 162, True, "wire.encode allocated " + str(n) + " bytes")


def test_get_stats_sends_the_named_counters():
    card, u = new(2)
    card.link.counters[wire.LC_RETRIES] = 7
    card.lines[1].counters[wire.CC_UNDERRUNS] = 5
    card.link.events_dropped = 2
    command(card, u, wire.BROADCAST, 3, wire.OP_GET_STATS)
    out = frames(u.take())
    eq([(r[1], r[2]) for r in out], [(wire.T_ACK, 0xFF), (wire.T_STATS, 0xFF), (wire.T_STATS, 0), (wire.T_STATS, 1)],
       "ACK, then the link's and each line's counters")
    link = struct.unpack(wire.STATS, out[1][4])
    eq((link[wire.LC_RX_FRAMES], link[wire.LC_RETRIES]), (1, 7), "link: rx_frames, retries")
    line1 = struct.unpack(wire.STATS, out[3][4])
    eq((line1[wire.CC_UNDERRUNS], line1[wire.CC_EVENTS_DROPPED]), (5, 2), "line 1: underruns, events_dropped")


def _audio_per_tick(card, u, ticks):
    # the card -> host audio frames of each of `ticks` frame ticks, as (channel, seq) in order
    out = []
    for _ in range(ticks):
        u.take()
        clock.advance(wire.FRAME_MS)
        card.frame_tick(clock.ticks_ms())
        out.append([(r[2], r[3]) for r in frames(u.take()) if r[1] == wire.T_AUDIO])
    return out


def test_caller_id_windows_never_overfill_the_link_with_copies():
    # one call with the 6 copies the host asked for; then 7 on-hook lines open caller ID windows
    # by themselves (a polarity reversal): 8 lines of 6 copies would be 3.5 times the link, so
    # the card sends one copy until the windows close, whatever the host asked for
    card, u = new(8)
    u.room = len(u.txmem)
    command(card, u, wire.BROADCAST, 1, wire.OP_REDUNDANCY, 6)
    card.lines[0].hook(1)
    ticks = _audio_per_tick(card, u, 2)
    eq(ticks[1], [(0, 1)] * 5 + [(0, 0)], "one line: 5 copies now and the last one a tick later")
    for ln in card.lines[1:]:
        eq(ln.open_cid_window(clock.ticks_ms(), 60), wire.ST_OK, "window opened")
    ticks = _audio_per_tick(card, u, 3)  # the 60 ms windows close on the third tick
    eq(ticks[0], [(0, 2)] + [(ch, 0) for ch in range(1, 8)], "8 lines streaming: one copy each")
    eq(ticks[1], [(0, 3)] + [(ch, 1) for ch in range(1, 8)], "and so on")
    eq(card.copies, 6, "what the host asked for is kept (and reported in STATUS)")
    eq(ticks[2], [(0, 4)] * 5 + [(0, 3)], "the windows closed: 6 copies again")
    eq([ln.counters[wire.CC_AUDIO_UP] for ln in card.lines], [5] + [2] * 7, "frames made")
