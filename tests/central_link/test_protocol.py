"""The link's messages: each one's JSON is fixed (golden), parses back to itself, and a bad one
raises a ProtocolError naming what was wrong."""

from __future__ import annotations

import json

import pytest

from central_link import protocol as p

GOLDEN: list[tuple[p.Message, str]] = [
    (p.Hello("sz-futian-01", "branchnode 0.1.0", "1.4.0", [p.LineState(1, "0755-8888-0001", "idle")]),
     '{"v":1,"type":"hello","node":"sz-futian-01","software":"branchnode 0.1.0","firmware":"1.4.0",'
     '"lines":[{"line":1,"number":"0755-8888-0001","state":"idle"}]}'),
    (p.Welcome("branchnode-hq 0.1.0", 10.0), '{"v":1,"type":"welcome","hub":"branchnode-hq 0.1.0","heartbeat_s":10.0}'),
    (p.Heartbeat(42, [p.LineState(2, "0755-8888-0002", "ivr")]),
     '{"v":1,"type":"heartbeat","seq":42,"lines":[{"line":2,"number":"0755-8888-0002","state":"ivr"}]}'),
    (p.HeartbeatAck(42), '{"v":1,"type":"heartbeat_ack","seq":42}'),
    (p.OutboxItem("call-3f2a9c", "call_record", {"id": "3f2a9c", "line": 1}),
     '{"v":1,"type":"outbox","key":"call-3f2a9c","kind":"call_record","payload":{"id":"3f2a9c","line":1}}'),
    (p.Ack("call-3f2a9c"), '{"v":1,"type":"ack","key":"call-3f2a9c"}'),
    (p.Error("unknown_version", "version 2 is not spoken here: this end speaks 1", "hello"),
     '{"v":1,"type":"error","code":"unknown_version","detail":"version 2 is not spoken here: this end speaks 1",'
     '"about":"hello"}'),
]


@pytest.mark.parametrize(("msg", "text"), GOLDEN, ids=[m.TYPE for m, _ in GOLDEN])
def test_golden(msg, text):
    assert msg.to_json() == text
    assert p.parse(text) == msg
    assert p.parse(text.encode()) == msg  # a frame given as bytes reads the same


def test_every_message_has_a_golden_example():
    assert {m.TYPE for m, _ in GOLDEN} == set(p.MESSAGES)


def test_optional_fields_may_be_left_out_and_unicode_survives():
    assert p.parse('{"v":1,"type":"heartbeat","seq":1}') == p.Heartbeat(1, [])
    assert p.parse('{"v":1,"type":"error","code":"malformed","detail":"x"}') == p.Error("malformed", "x", "")
    hello = p.Hello("n1", "s", "f", [p.LineState(1, "福田 1", "idle")])
    assert p.parse(hello.to_json()) == hello and "福田" in hello.to_json()
    assert p.parse('{"v":1,"type":"welcome","hub":"h","heartbeat_s":5}').heartbeat_s == 5.0  # an int is a float


@pytest.mark.parametrize(("frame", "code", "about", "words"), [
    (b"\xff\xfe", "malformed", "", "not JSON"),
    ("", "malformed", "", "not JSON"),
    ("[" * 100_000 + "]" * 100_000, "malformed", "", "not JSON"),
    ('"hello"', "malformed", "", "not str"),
    ('{"type":"hello"}', "unknown_version", "hello", "version null"),
    ('{"v":true,"type":"ack","key":"k"}', "unknown_version", "ack", "version true"),
    ('{"v":"1","type":"ack","key":"k"}', "unknown_version", "ack", "version a string of 1 character"),
    ('{"v":1.0,"type":"ack","key":"k"}', "unknown_version", "ack", "version a number"),
    ('{"v":1}', "unknown_type", "", "type null"),
    ('{"v":1,"type":["ack"]}', "unknown_type", "", "type a list"),
    ('{"v":1,"type":"hello","node":"n","software":"s","firmware":"f","lines":{}}', "bad_field", "hello",
     "hello.lines must be a list"),
    ('{"v":1,"type":"hello","node":"n","software":"s","firmware":"f","lines":[{"line":true,"number":"1",'
     '"state":"idle"}]}', "bad_field", "hello", "hello.lines[0].line must be int, not true"),
    ('{"v":1,"type":"hello","node":"n","software":"s","firmware":"f","lines":[7]}', "bad_field", "hello",
     "hello.lines[0] must be an object"),
    ('{"v":1,"type":"outbox","key":"k","kind":"alarm","payload":[]}', "bad_field", "outbox",
     "outbox.payload must be an object"),
    ('{"v":1,"type":"outbox","key":"","kind":"alarm","payload":{}}', "bad_field", "outbox", "key must be 1 to 200"),
    ('{"v":1,"type":"heartbeat","seq":1.5}', "bad_field", "heartbeat", "heartbeat.seq must be int, not a number"),
    ('{"v":1,"type":"ack","key":"k","extra":1}', "bad_field", "ack", "unknown field \"extra\""),
    ("x" * (p.MAX_FRAME + 1), "malformed", "", f"at most {p.MAX_FRAME}"),
    # digits are never echoed: a PIN sent by mistake cannot come back in an error, or reach a log
    ('{"v":1,"type":"heartbeat","seq":"482913"}', "bad_field", "heartbeat", "not a string of 6 characters"),
    ('{"v":1,"type":"ack","key":482913}', "bad_field", "ack", "ack.key must be str, not a number"),
    ('{"v":1,"type":"482913"}', "unknown_type", "", "type a string of 6 characters is not one of"),
    ('{"v":482913,"type":"ack","key":"k"}', "unknown_version", "ack", "version a number is not"),
    ('{"v":1,"type":"ack","key":"k","482913":1}', "bad_field", "ack", "unknown field a string of 6"),
])
def test_bad_frames_name_what_is_wrong(frame, code, about, words):
    with pytest.raises(p.ProtocolError) as exc:
        p.parse(frame)
    assert (exc.value.code, exc.value.about) == (code, about)
    assert words in exc.value.detail, exc.value.detail
    err = p.Error.of(exc.value)
    assert json.loads(err.to_json())["code"] == code  # answered with an error message of the schema
    assert code in p.ERROR_CODES
    assert "482913" not in err.to_json()
