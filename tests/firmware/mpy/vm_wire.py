# wire.py on the MicroPython VM: the golden frames (passed in from tests/firmware/test_wire.py)
# give the same bytes here as on the host, both encoders, the decoders, COBS edge cases.
import struct

from card import wire
from mpytest import eq


def test_golden(name, ftype, channel, seq, layout, fields, body, frame):
    if layout:
        fmt = getattr(wire, layout)
        eq(struct.pack(fmt, *fields), body[:struct.calcsize(fmt)], name + ": body layout")
    eq(bytes(wire.encode(ftype, channel, seq, body)), frame, name + ": wire.encode")
    out = bytearray(len(frame))
    out[wire.BODY_AT:wire.BODY_AT + len(body)] = body
    n = wire.encode_into(out, ftype, channel, seq, len(body))
    eq(bytes(out[:n]), frame, name + ": wire.encode_into")
    eq(wire.parse(frame[:-1]), (wire.OK, ftype, channel, seq, body), name + ": wire.parse")
    eq(wire.Deframer().feed(frame), [(wire.OK, ftype, channel, seq, body)], name + ": Deframer")
    buf = bytearray(frame[:-1])
    m = wire.unstuff(buf, len(buf))
    eq(bytes(buf[1 + 4:1 + m - 4]), body, name + ": wire.unstuff")


def test_cobs(cases):
    for raw, enc in cases:
        eq(bytes(wire.cobs_encode(raw)), enc, "cobs_encode of " + str(len(raw)) + " bytes")
        eq(bytes(wire.cobs_decode(enc)), raw, "cobs_decode of " + str(len(enc)) + " bytes")


def test_errors_are_named_by_kind():
    d = wire.Deframer()
    good = bytes(wire.encode(wire.T_EVENT, 0, 1, struct.pack(wire.EVENT, wire.EV_RING_ON, 1, 0)))
    bad = bytearray(good)
    bad[1] ^= 0x01  # the type byte (non-zero either way, so COBS holds): the CRC no longer matches
    eq(d.feed(bytes(bad))[0][0], wire.E_CRC, "flipped bit")
    eq(d.feed(bytes(wire.encode(0x42, 0, 0, b"x")))[0][0], wire.E_UNKNOWN, "unknown type")
    eq(d.feed(b"\x03ab\x00")[0][0], wire.E_TRUNCATED, "shorter than header + CRC")
    eq(d.feed(b"\x05" * 400)[0][0], wire.E_OVERSIZED, "no delimiter for 400 bytes")
    eq(d.feed(b"\x00" + good)[-1][0], wire.OK, "resynchronised at the next delimiter")


def test_sequence_arithmetic_wraps():
    eq(wire.seq_after(1, 0xFFFF), True, "1 after 0xFFFF")
    eq(wire.seq_diff(2, 0xFFFE), 4, "2 - 0xFFFE")
    eq(wire.seq_diff(0xFFFE, 2), -4, "0xFFFE - 2")
