# One FXO line (card/line.py) with fake pins, ADC and PCM highway: ring and hook events, the hook
# relay when dialling, LEDs, the audio frame it builds from its highway slot.
import struct

import machine
from card import board, wire
from card.highway import SLOT_BYTE, SLOTS, Highway
from card.line import FxoLine
from fake_time import clock
from mpytest import eq


def new(ch=0):
    machine.clear()
    clock.set(0)
    hw = board.Hardware()
    rx, tx = hw.highway()
    events = []
    hwy = Highway(rx, tx, wire.FRAME_SAMPLES, 0xFF)
    line = FxoLine(ch, hw, True, lambda c, code, value: events.append((c, code, value)), hwy)
    machine.adc_values["LOOP" + str(ch)] = 30000  # loop current present
    return line, hwy, rx, events


def tick(line, n=1):
    for _ in range(n):
        clock.advance(wire.FRAME_MS)
        line.sense(clock.ticks_ms())


def test_ring_burst_gives_ring_on_off_and_opens_the_caller_id_window():
    line, hwy, rx, events = new(3)
    machine.levels["RING3"] = 1
    tick(line, 1)
    eq(events, [], "40 ms needed")
    tick(line, 1)
    eq(events, [(3, wire.EV_RING_ON, 1)], "ring on after 40 ms")
    tick(line, 48)
    machine.levels["RING3"] = 0
    tick(line, 5)
    eq(events[1:], [(3, wire.EV_RING_OFF, 1000), (3, wire.EV_CID_WINDOW, 1)], "ring off, CID window")
    eq(line.streaming(), True, "on-hook audio streams for caller ID")


def test_hook_command_drives_the_relay_and_reports_it():
    line, hwy, rx, events = new(1)
    line.hook(1)
    eq(machine.levels["HOOK1"], 1, "relay closed")
    eq(events, [(1, wire.EV_HOOK, 1)], "EV_HOOK 1")
    line.hook(0)
    eq(machine.levels["HOOK1"], 0, "relay open")


def test_pulse_dialling_breaks_and_makes_the_loop_at_10_pps():
    line, hwy, rx, events = new(0)
    line.hook(1)
    del machine.writes["HOOK0"][:]
    eq(line.pulse_dial(b"2", 0, 0), wire.ST_OK, "accepted")
    tick(line, 10)
    eq(machine.writes["HOOK0"], [0, 0, 0, 1, 1, 0, 0, 0, 1, 1], "60 ms break, 40 ms make, twice")
    tick(line, 35)
    eq(events[-1], (0, wire.EV_DIAL_DONE, 1), "done after the inter-digit pause")
    eq(line.pulse_dial(b"1#", 0, 0), wire.ST_BAD_ARGS, "not a decimal digit")


def test_led_follows_the_line_until_the_host_sets_it():
    line, hwy, rx, events = new(2)
    tick(line, 1)
    eq(machine.levels["LED2"], 0, "auto: idle line dark")
    line.hook(1)
    tick(line, 1)
    eq(machine.levels["LED2"], 1, "auto: lit off-hook")
    eq(line.set_led(wire.LED_OFF), wire.ST_OK, "LED_OFF")
    tick(line, 100)
    eq(machine.writes["LED2"][-1], 0, "stays off for 2 s of frames")
    eq(machine.writes["LED2"].count(1), 1, "never relit by the frame tick")
    line.set_led(wire.LED_BLINK)
    seen = []
    for _ in range(50):
        tick(line, 1)
        seen.append(machine.levels["LED2"])
    eq(seen.count(0) > 10 and seen.count(1) > 10, True, "blinks")
    line.set_led(wire.LED_AUTO)
    tick(line, 1)
    eq(machine.levels["LED2"], 1, "auto again: lit off-hook")
    eq(line.set_led(4), wire.ST_BAD_ARGS, "unknown state refused")


def test_audio_tick_plays_the_host_frame_into_the_slot_and_sends_the_captured_one():
    line, hwy, rx, events = new(5)
    block = bytearray(wire.FRAME_SAMPLES * SLOTS)
    for i in range(wire.FRAME_SAMPLES):
        for s in range(SLOTS):
            block[i * SLOTS + SLOT_BYTE[s]] = (s * 16 + i) & 0xFF  # slot s, sample i
    rx.rx_block = bytes(block)
    line.hook(1)
    for seq in (40, 41, 42):
        line.audio_from_host(seq, bytes([seq]) * wire.FRAME_SAMPLES)
    hwy.receive()
    n = line.tick_audio()
    hwy.transmit()
    eq(n, wire.AUDIO_UP_WIRE, "frame length")
    res = wire.parse(bytes(line.up[:n - 1]))
    want = struct.pack("<H", 40) + bytes((5 * 16 + i) & 0xFF for i in range(wire.FRAME_SAMPLES))
    eq(res, (wire.OK, wire.T_AUDIO, 5, 0, want), "echo ref 40 + line 5's slot")
    tx = machine.i2s_units[board.I2S_TX].last
    eq(bytes(tx[SLOT_BYTE[5] + SLOTS * i] for i in range(160)), bytes([40]) * 160, "frame 40 in slot 5")
    eq(bytes(tx[SLOT_BYTE[4] + SLOTS * i] for i in range(160)), b"\xff" * 160, "other slots idle")
