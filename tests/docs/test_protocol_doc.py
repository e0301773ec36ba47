"""docs/linecard-protocol.md says what firmware/card/wire.py defines: every table compared with
the module both ways (each name documented exists with the documented value, each name the
module defines is documented), and every `NAME` (value) the text mentions."""

from __future__ import annotations

import struct

import pytest

from firmware.card import wire
from tests.docs.markdown import DOCS, code, mentions, number, table

DOC = (DOCS / "linecard-protocol.md").read_text(encoding="utf-8")


def defined(prefix: str) -> dict[str, int]:
    """wire's integer constants named PREFIX_..., by the rest of the name."""
    return {k[len(prefix):]: v for k, v in vars(wire).items()
            if k.startswith(prefix) and k.isupper() and isinstance(v, int)}


def documented(rows: list[dict[str, str]], value: str, name: str = "name") -> dict[str, int]:
    return {code(r[name]): number(r[value]) for r in rows}


@pytest.mark.parametrize(("heading", "first", "prefix"), [
    ("Commands (`CMD` op)", "op", "OP_"),
    ("Events (`EVENT` code)", "code", "EV_"),
    ("Status codes (`ACK` body)", "code", "ST_"),
    ("Capabilities (`HELLO` caps bits)", "bit", "CAP_"),
    ("Commands (`CMD` op)", "state", "LED_"),
    ("Image transfer (`IMAGE` op)", "op", "IMG_"),
    ("Image results (`IMAGE_ACK` result)", "code", "IR_"),
    ("Slot states (`SLOTS` state)", "state", "SLOT_"),
    ("Revert reasons (`SLOTS` reason)", "reason", "REV_"),
])
def test_each_code_table_is_the_wire_format(heading, first, prefix):
    codes = {k: v for k, v in defined(prefix).items() if not k.endswith("_MS")}  # a duration is no code
    assert documented(table(DOC, heading, first), first) == codes


def test_frame_types_and_their_bodies():
    rows = table(DOC, "Messages", "type")
    assert {code(r["name"]): number(r["type"]) for r in rows} == defined("T_")
    for r in rows:
        name, ftype, size = code(r["name"]), number(r["type"]), r["bytes"]
        up = r["direction"] == "card → host"
        if name == "AUDIO":
            layout = wire.AUDIO_UP if up else None
            want = wire.AUDIO_UP_LEN if up else wire.AUDIO_DOWN_LEN
            assert size == str(want), r
            assert (code(r["body"]) == layout) if layout else "octets" in r["body"], r
            assert wire.FRAME_SAMPLES + (struct.calcsize(wire.AUDIO_UP) if up else 0) == want
        elif name == "CMD":
            assert code(r["body"]) == wire.CMD
            assert size == f"{wire.CMD_LEN}–{wire.CMD_LEN + wire.MAX_DIGITS}", r
        elif name == "IMAGE":
            assert code(r["body"]) == wire.IMAGE and struct.calcsize(wire.IMAGE) == wire.IMAGE_LEN
            assert size == f"{wire.IMAGE_LEN}–{wire.IMAGE_LEN + wire.IMAGE_DATA_MAX}", r
        elif name == "SYNC":
            assert size == "0" and wire.BODY_LEN[ftype] == 0
        else:
            assert code(r["body"]) == getattr(wire, name), r  # the layout is named after the type
            assert size == str(struct.calcsize(getattr(wire, name))) == str(wire.BODY_LEN[ftype]), r
        # the receiver takes exactly that length, and refuses one byte more or less
        variable = {"CMD": (wire.CMD_LEN, wire.MAX_DIGITS), "IMAGE": (wire.IMAGE_LEN, wire.IMAGE_DATA_MAX)}
        lengths = range(variable[name][0], sum(variable[name]) + 1) if name in variable else [int(size)]
        for n in lengths:
            assert wire.body_ok(ftype, n), (name, n)
        if name != "AUDIO":  # AUDIO takes both directions' lengths, 2 apart
            assert not wire.body_ok(ftype, lengths[0] - 1) and not wire.body_ok(ftype, lengths[-1] + 1), name
    assert {"card → host", "host → card", "both"} == {r["direction"] for r in rows}


def test_counters_are_the_wire_format_in_order():
    rows = table(DOC, "Counters (`STATS` bodies)", "index")
    assert [number(r["index"]) for r in rows] == list(range(wire.N_COUNTERS))
    link = tuple(code(r["link (channel 0xFF)"]) for r in rows)
    line = tuple(code(r["per line"]) for r in rows)
    assert link == wire.LINK_COUNTERS
    assert line == wire.CHANNEL_COUNTERS
    assert {n.lower(): i for n, i in defined("LC_").items()} == {n: i for i, n in enumerate(link)}
    assert {n.lower(): i for n, i in defined("CC_").items()} == {n: i for i, n in enumerate(line)}
    assert struct.calcsize(wire.STATS) == 4 * wire.N_COUNTERS


def test_deframer_results_and_how_they_are_logged():
    rows = table(DOC, "Framing", "result")
    got = {code(r["name"]): number(r["result"]) for r in rows}
    assert got == {"OK": wire.OK} | {f"E_{k}": v for k, v in defined("E_").items()}
    for r in rows[1:]:
        assert code(r["logged as"]) == wire.ERROR_NAMES[number(r["result"])]


def test_sizes_and_timing_are_the_wire_constants():
    rows = table(DOC, "Sizes and timing", "name")
    doc = documented(rows, "value")
    for name, value in doc.items():
        assert getattr(wire, name, None) == value, f"{name}: the doc says {value}, wire.py {getattr(wire, name, None)}"
    # every other integer constant of wire.py is in that table
    tabled = ("T_", "OP_", "EV_", "ST_", "CAP_", "LC_", "CC_", "E_", "LED_", "IMG_", "IR_", "SLOT_", "REV_")
    rest = {k for k, v in vars(wire).items() if k.isupper() and isinstance(v, int)
            and not k.startswith(tabled) and k != "OK"} | {"LED_BLINK_MS"}
    assert rest <= set(doc), f"not documented: {sorted(rest - set(doc))}"


def test_wire_sizes_hold_for_real_frames():
    # the longest frame (card -> host audio) fills MAX_WIRE exactly; one byte more is oversized
    up = wire.encode(wire.T_AUDIO, 0, 1234, bytes(range(1, wire.AUDIO_UP_LEN + 1)))
    down = wire.encode(wire.T_AUDIO, 0, 1234, bytes(range(1, wire.AUDIO_DOWN_LEN + 1)))
    assert (len(up), len(down)) == (wire.AUDIO_UP_WIRE, wire.AUDIO_DOWN_WIRE)
    assert len(up) - 1 == wire.MAX_WIRE
    assert wire.parse(up[:-1])[0] == wire.OK
    assert wire.parse(up[:-1] + b"\x01")[0] == wire.E_OVERSIZED


def test_every_constant_the_text_mentions_has_its_value():
    found = mentions(DOC)
    assert len(found) >= 10  # the reliability and framing sections speak in these terms
    for name, value in found:
        assert hasattr(wire, name), f"the doc mentions `{name}`, which wire.py does not define"
        assert getattr(wire, name) == value, f"the doc says `{name}` ({value}); wire.py says {getattr(wire, name)}"
