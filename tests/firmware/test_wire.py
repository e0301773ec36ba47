"""The one wire format: COBS + CRC-32 framing, message layouts, resynchronisation.

The golden frames below are written out by hand from the layouts in docs/linecard-protocol.md
(little-endian struct fields, CRC-32 as zlib computes it, COBS as in Cheshire & Baker), not by
wire.py: a change of byte order, layout, type code or framing in wire.py fails them. The same
vectors are checked on the real MicroPython VM (``test_golden_frame_on_micropython``).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.card import wire


class Golden(NamedTuple):
    name: str
    ftype: int
    channel: int
    seq: int
    layout: str | None  # the wire.py struct format of the body's fixed part
    fields: tuple
    body: str | tuple[str, ...]  # hex
    wire: str | tuple[str, ...]  # hex: the frame as sent, COBS-encoded, with its 0x00


def unhex(h: str | tuple[str, ...]) -> bytes:
    return bytes.fromhex("".join(h) if isinstance(h, tuple) else h)


# Every message type, both directions: HELLO, ACK (card -> host and host -> card), EVENT, STATUS,
# STATS, SLOTS (card -> host); CMD without and with digits, SYNC (host -> card); AUDIO up (echo reference
# + 160 octets) and down (160 octets, with zeros to stuff).
GOLDEN = [
    Golden('hello', 0x01, 0xff, 0x0000, 'HELLO', (1, 1, 0, 0, 8, 1, 63, 48879, b'BNLC-8FX'),
           '0101000008013f00efbe424e4c432d384658',
           '0301ff01030101010408013f0fefbe424e4c432d3846584b3255ec00'),
    Golden('ack_card_to_host', 0x02, 0xff, 0x0007, 'ACK', (2,),
           '02',
           '0402ff07060225d5a68900'),
    Golden('ack_host_to_card', 0x02, 0xff, 0x1234, 'ACK', (0,),
           '00',
           '0502ff341205139f713900'),
    Golden('event', 0x03, 0x02, 0x0102, 'EVENT', (3, -1, 16909060),
           '03ffff04030201',
           '100302020103ffff040302010f2291c300'),
    Golden('status', 0x04, 0xff, 0x0000, 'STATUS', (11259375, 5, 2, 3),
           'efcdab00050203',
           '0304ff0104efcdab08050203ba9184c800'),
    Golden('stats', 0x05, 0xff, 0x0000, 'STATS', (1, 2, 3, 4, 5, 6, 7, 305419896),
           '0100000002000000030000000400000005000000060000000700000078563412',
           '0305ff01020101010202010102030101020401010205010102060101020701010978563412829587dd00'),
    # the answer to IMAGE STATUS: slot 1 on trial; each slot with the first 8 bytes of its payload's SHA-256
    Golden('slots', 0x07, 0xff, 0x0009, 'SLOTS', (1, 0, 2, 0, 255, 4, 1, 1, 0, 1, bytes.fromhex('12c17b5dc9140e97'),
                                                  3, 1, 2, 0, 1, bytes.fromhex('a0b1c2d3e4f50617')),
           '01000200ff040101000100000012c17b5dc9140e970301020001000000a0b1c2d3e4f50617',
           '0407ff090201020205ff040101020101010c12c17b5dc9140e97030102020101010da0b1c2d3e4f506178e9c9cbb00'),
    Golden('cmd_hook', 0x81, 0x01, 0x0203, 'CMD', (1, 1, 0),
           '0101000000',
           '078101030201010101057ff571a200'),
    Golden('cmd_gain', 0x81, 0x03, 0x0a0b, 'CMD', (4, -60, 35),
           '04c4ff2300',
           '0981030b0a04c4ff2305c0ecaab600'),
    Golden('cmd_pulse_dial', 0x81, 0x00, 0xffff, 'CMD', (3, 40, 60),
           '0328003c0030313233',
           '028105ffff0328023c09303132333f3e706e00'),
    Golden('audio_up', 0x10, 0x07, 0xfffe, 'AUDIO_UP', (256,),
           ('000100254a6f94b9de03284d7297bce1062b50759abfe4092e53789dc2e70c31567ba0c5ea0f34597ea3c8ed'
            '12375c81a6cbf0153a5f84a9cef3183d6287acd1f61b40658aafd4f91e43688db2d7fc21466b90b5daff2449'
            '6e93b8dd02274c7196bbe0052a4f7499bee3082d52779cc1e60b30557a9fc4e90e33587da2c7ec11365b80a5'
            'caef14395e83a8cdf2173c6186abd0f51a3f6489aed3f81d42678cb1d6fb'),
           ('051007feff0201a4254a6f94b9de03284d7297bce1062b50759abfe4092e53789dc2e70c31567ba0c5ea0f34'
            '597ea3c8ed12375c81a6cbf0153a5f84a9cef3183d6287acd1f61b40658aafd4f91e43688db2d7fc21466b90'
            'b5daff24496e93b8dd02274c7196bbe0052a4f7499bee3082d52779cc1e60b30557a9fc4e90e33587da2c7ec'
            '11365b80a5caef14395e83a8cdf2173c6186abd0f51a3f6489aed3f81d42678cb1d6fbd7887dde00')),
    Golden('audio_down', 0x10, 0x00, 0x0005, None, (),
           ('ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff'
            'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff00007f7f7f7f7f7f'
            '7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f'
            '7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f'),
           ('0210020551ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff'
            'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff01537f'
            '7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f'
            '7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f0829670c00')),
    Golden('sync', 0x80, 0xff, 0x0000, None, (),
           '',
           '0380ff0105ca5d857200'),
]


# COBS edge cases: (raw, encoded) with the encoding written out
COBS_CASES = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (b"\x01" * 253, b"\xfe" + b"\x01" * 253),
    (b"\x01" * 254, b"\xff" + b"\x01" * 254 + b"\x01"),  # a full block: a code byte follows
    (b"\x01" * 255, b"\xff" + b"\x01" * 254 + b"\x02\x01"),
    (b"\x01" * 254 + b"\x00", b"\xff" + b"\x01" * 254 + b"\x01\x01"),
    (b"\x00" + b"\x01" * 254, b"\x01\xff" + b"\x01" * 254 + b"\x01"),
]


@pytest.mark.parametrize("g", GOLDEN, ids=lambda g: g.name)
def test_golden_frame(g):
    body, frame = unhex(g.body), unhex(g.wire)
    if g.layout:
        fmt = getattr(wire, g.layout)
        assert struct.pack(fmt, *g.fields) == body[:struct.calcsize(fmt)], f"{g.name}: body layout"
    assert bytes(wire.encode(g.ftype, g.channel, g.seq, body)) == frame, f"{g.name}: encoded frame"
    assert wire.parse(frame[:-1]) == (wire.OK, g.ftype, g.channel, g.seq, body), f"{g.name}: parsed"
    assert wire.Deframer().feed(frame) == [(wire.OK, g.ftype, g.channel, g.seq, body)]


@pytest.mark.parametrize("g", GOLDEN, ids=lambda g: g.name)
def test_golden_frame_encoded_into_a_buffer(g):
    """The card's allocation-free encoder makes the same bytes, and its in-place decoder undoes them."""
    body, frame = unhex(g.body), unhex(g.wire)
    out = bytearray(len(frame))
    out[wire.BODY_AT:wire.BODY_AT + len(body)] = body
    n = wire.encode_into(out, g.ftype, g.channel, g.seq, len(body))
    assert bytes(out[:n]) == frame
    m = wire.unstuff(out, n - 1)
    assert bytes(out[1:1 + m]) == frame_payload(g)


def frame_payload(g) -> bytes:
    # header + body + CRC, as the golden wire bytes carry it (COBS undone by the reference decoder)
    return bytes(wire.cobs_decode(unhex(g.wire)[:-1]))


@pytest.mark.parametrize("raw,enc", COBS_CASES, ids=lambda v: f"{len(v)}B" if isinstance(v, bytes) else str(v))
def test_cobs_edge_cases(raw, enc):
    assert bytes(wire.cobs_encode(raw)) == enc
    assert bytes(wire.cobs_decode(enc)) == raw


def test_unstuff_rejects_malformed_encodings():
    for bad in (b"", b"\x00\x01", b"\x05\x01\x02", b"\x02\x01\x00", b"\xff" + b"\x01" * 20):
        assert wire.unstuff(bytearray(bad), len(bad)) == -1, bad.hex()


def test_encode_into_refuses_a_frame_that_does_not_fit():
    with pytest.raises(ValueError):
        wire.encode_into(bytearray(20), wire.T_AUDIO, 0, 0, 160)


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
    # the garbage yields at most one result per 0x00 in it, and none of them is our frame
    assert len(res) - 1 <= garbage.count(0) + 1
    assert (wire.OK, wire.T_AUDIO, 3, seq, b"\x01\x02" + b"\x7f" * 160) not in res[:-1]


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
