"""The one wire format: COBS + CRC-32 framing, message layouts, resynchronisation."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from firmware.card import wire


@given(st.binary(max_size=700))
def test_cobs_round_trip(data):
    enc = wire.cobs_encode(data)
    assert 0 not in enc
    assert bytes(wire.cobs_decode(enc)) == data
    assert len(enc) <= len(data) + len(data) // 254 + 1


@given(st.integers(0, 0xFF), st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.binary(max_size=162))
def test_frame_round_trip(ftype, ch, seq, body):
    frame = wire.encode(ftype, ch, seq, body)
    assert frame[-1] == 0 and 0 not in frame[:-1]
    res = wire.parse(frame[:-1])
    ok = wire.body_ok(ftype, len(body))
    if ok is None:
        assert res[0] == wire.E_UNKNOWN
    elif ok:
        assert res == (wire.OK, ftype, ch, seq, body)
    else:
        assert res[0] == wire.E_TRUNCATED


@given(st.binary(max_size=400), st.integers(0, 0xFFFF))
def test_any_garbage_before_a_frame_costs_nothing_after_the_next_delimiter(garbage, seq):
    frame = wire.encode(wire.T_AUDIO, 3, seq, b"\x01\x02" + b"\x7f" * 160)
    d = wire.Deframer()
    res = d.feed(garbage + b"\x00" + bytes(frame))
    assert res[-1] == (wire.OK, wire.T_AUDIO, 3, seq, b"\x01\x02" + b"\x7f" * 160)
    assert all(r[0] != wire.OK for r in res[:-1]) or len(res) >= 1


def test_every_error_kind_is_named():
    good = wire.encode(wire.T_EVENT, 0, 1, struct.pack(wire.EVENT, wire.EV_RING_ON, 1, 0))
    flipped = bytearray(good)
    flipped[3] ^= 0x10
    d = wire.Deframer()
    kinds = [r[0] for r in d.feed(bytes(flipped))]
    assert kinds[0] in (wire.E_CRC, wire.E_COBS)
    assert d.feed(bytes(wire.encode(0x42, 0, 0, b"x")))[0][0] == wire.E_UNKNOWN
    assert d.feed(bytes(wire.encode(wire.T_EVENT, 0, 0, b"\x01")))[0][0] == wire.E_TRUNCATED
    assert d.feed(b"\x03ab\x00")[0][0] == wire.E_TRUNCATED  # shorter than a header and CRC
    assert d.feed(b"\x05" * 1000)[0][0] == wire.E_OVERSIZED
    # after an oversized run the next delimiter resynchronises
    assert d.feed(b"\x00" + bytes(good))[-1][0] == wire.OK
    assert wire.ERROR_NAMES[wire.E_CRC] == "bad CRC"


def test_split_delivery_reassembles():
    frame = bytes(wire.encode(wire.T_STATUS, 0xFF, 0, struct.pack(wire.STATUS, 5, 1, 0, 1)))
    d = wire.Deframer()
    out = []
    for b in frame:
        out += d.feed(bytes([b]))
    assert out == [(wire.OK, wire.T_STATUS, 0xFF, 0, struct.pack(wire.STATUS, 5, 1, 0, 1))]


def test_sequence_arithmetic_wraps():
    assert wire.seq_after(1, 0xFFFF)
    assert not wire.seq_after(0xFFFF, 1)
    assert wire.seq_diff(2, 0xFFFE) == 4
    assert wire.seq_diff(0xFFFE, 2) == -4


def test_audio_payload_efficiency_on_the_wire():
    frame = wire.encode(wire.T_AUDIO, 0, 0, b"\x00\x00" + b"\xff" * 160)
    assert 160 / len(frame) > 0.9
