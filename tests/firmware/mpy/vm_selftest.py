# The card's self-test after a boot (card/app.py), on the VM: a trial is confirmed once every
# codec drives its highway slot and the host has synced; a codec that never answers rejects it
# (self-test failed) and resets the card; a confirmed image is never rejected.
import struct

import machine
from card import board, wire
from card.app import CODEC_TICKS, Card
from card.bootmeta import CONFIRMED, REV_SELF_TEST, TRIAL
from card.image_header import pack
from fake_time import clock
from mpytest import eq

SYNC = bytes.fromhex("0380ff0105ca5d857200")


class FakeUpdater:
    # what the card's application asks of the updater, recorded
    def __init__(self, state):
        self.running = 1
        self.states = [CONFIRMED, state]
        self.calls = []
        self.next_offset = 0
        self.hdr = pack(b"BNLC-8FX", (1, 2, 3), 1, 0, b"\x00" * 32)

    def header(self, slot):
        from card.image_header import unpack
        return unpack(self.hdr)

    def state(self, slot):
        return self.states[slot]

    def confirm(self):
        self.calls.append("confirm")
        return 0

    def reject(self, reason):
        self.calls.append(("reject", reason))
        return 0


def block(dead_slot=-1):
    # one highway block as the DAAs send it on-hook (μ-law idle 0xFF), one slot undriven (0x00)
    b = bytearray(b"\xff" * (wire.FRAME_SAMPLES * 8))
    if dead_slot >= 0:
        from card.highway import SLOT_BYTE
        for i in range(SLOT_BYTE[dead_slot], len(b), 8):
            b[i] = 0
    return bytes(b)


def new(state, dead_slot=-1):
    machine.clear()
    clock.set(0)
    up = FakeUpdater(state)
    card = Card(channels=4, updater=up)
    machine.i2s_units[board.I2S_RX].rx_block = block(dead_slot)
    return card, up, machine.uarts[0]


def ticks(card, n):
    for _ in range(n):
        clock.advance(wire.FRAME_MS)
        now = clock.ticks_ms()
        card.frame_tick(now)
        if card.testing:
            card.self_test(now)


def test_hello_reports_the_running_images_version():
    card, up, u = new(TRIAL)
    u.feed(SYNC)
    card.handle(card.link.poll(), clock.ticks_ms())
    body = wire.Deframer().feed(u.take())[0][4]
    eq(struct.unpack(wire.HELLO, body)[1:4], (1, 2, 3), "HELLO version (the header's, not board.FW_VERSION)")


def test_a_trial_is_confirmed_when_every_codec_answers_and_the_host_synced():
    card, up, u = new(TRIAL)
    ticks(card, CODEC_TICKS + 5)
    eq(up.calls, [], "no confirm before the host synced")
    eq(card.testing, True, "still testing")
    u.feed(SYNC)
    card.handle(card.link.poll(), clock.ticks_ms())
    ticks(card, 1)
    eq(up.calls, ["confirm"], "confirmed once")
    eq(card.testing, False, "the self-test is over")


def test_a_codec_that_never_answers_rejects_the_trial_and_resets():
    card, up, u = new(TRIAL, dead_slot=2)
    u.feed(SYNC)
    card.handle(card.link.poll(), clock.ticks_ms())
    try:
        ticks(card, CODEC_TICKS)
        raise AssertionError("the card did not reset")
    except machine.ResetCalled:
        pass
    eq(up.calls, [("reject", REV_SELF_TEST)], "rejected with the reason")


def test_a_confirmed_image_that_fails_its_self_test_is_not_rejected():
    card, up, u = new(CONFIRMED, dead_slot=0)
    ticks(card, CODEC_TICKS + 1)
    eq((up.calls, card.testing), ([], False), "logged only")
