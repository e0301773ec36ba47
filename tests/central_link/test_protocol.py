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
    (p.QueueCall("3f2a9c", 1, "13800138000", ["language", "menu", "agent"], "en", "verified", "1000001", "vip"),
     '{"v":1,"type":"queue_call","call":"3f2a9c","line":1,"caller":"13800138000","ivr_path":["language","menu",'
     '"agent"],"language":"en","auth":"verified","account":"1000001","account_class":"vip"}'),
    (p.Queued("3f2a9c", 2), '{"v":1,"type":"queued","call":"3f2a9c","position":2}'),
    (p.QueueRefused("3f2a9c", "no_agents"), '{"v":1,"type":"queue_refused","call":"3f2a9c","reason":"no_agents"}'),
    (p.QueuePosition("3f2a9c", 1), '{"v":1,"type":"queue_position","call":"3f2a9c","position":1}'),
    (p.QueueLeave("3f2a9c", "callback"), '{"v":1,"type":"queue_leave","call":"3f2a9c","reason":"callback"}'),
    (p.Connect("3f2a9c", "alice", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"),
     '{"v":1,"type":"connect","call":"3f2a9c","agent":"alice","sdp":"v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 0\\r\\n"}'),
    (p.MediaAnswer("3f2a9c", "v=0\r\n"), '{"v":1,"type":"media_answer","call":"3f2a9c","sdp":"v=0\\r\\n"}'),
    (p.ConnectFailed("3f2a9c", "the caller hung up"),
     '{"v":1,"type":"connect_failed","call":"3f2a9c","reason":"the caller hung up"}'),
    (p.HangUp("3f2a9c"), '{"v":1,"type":"hang_up","call":"3f2a9c"}'),
    (p.CallEnded("3f2a9c", "caller", "hung up"), '{"v":1,"type":"call_ended","call":"3f2a9c","by":"caller",'
     '"reason":"hung up"}'),
    (p.Verify("3f2a9c", "cap-1", ["account", "pin"]),
     '{"v":1,"type":"verify","call":"3f2a9c","capture":"cap-1","fields":["account","pin"]}'),
    (p.VerifyCancel("3f2a9c", "cap-1"), '{"v":1,"type":"verify_cancel","call":"3f2a9c","capture":"cap-1"}'),
    (p.VerifyAgain("3f2a9c", "cap-1", "pin"), '{"v":1,"type":"verify_again","call":"3f2a9c","capture":"cap-1",'
     '"field":"pin"}'),
    (p.VerifyProgress("3f2a9c", "cap-1", "pin", 3, "keying"),
     '{"v":1,"type":"verify_progress","call":"3f2a9c","capture":"cap-1","field":"pin","keyed":3,"state":"keying"}'),
    (p.VerifyResult("3f2a9c", "cap-1", "verified", "1000001"),
     '{"v":1,"type":"verify_result","call":"3f2a9c","capture":"cap-1","outcome":"verified","account":"1000001"}'),
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
    # the live messages: what a caller keyed travels only as a count, or as the account once it is verified
    ('{"v":1,"type":"queue_call","call":"c1","line":1,"caller":"1","auth":"none","account":"482913"}', "bad_field",
     "queue_call", "must be empty unless the caller is verified"),
    ('{"v":1,"type":"queue_call","call":"c1","line":1,"caller":"1","auth":"failed","account_class":"vip"}',
     "bad_field", "queue_call", "account_class must be empty"),
    ('{"v":1,"type":"queue_call","call":"c1","line":1,"caller":"1","auth":"482913"}', "bad_field", "queue_call",
     "auth a string of 6 characters is not one of none"),
    ('{"v":1,"type":"verify_result","call":"c1","capture":"k","outcome":"failed","account":"482913"}', "bad_field",
     "verify_result", "account must be empty unless"),
    ('{"v":1,"type":"verify_progress","call":"c1","capture":"k","field":"pin","keyed":"482913","state":"keying"}',
     "bad_field", "verify_progress", "keyed must be int, not a string of 6"),
    ('{"v":1,"type":"verify_progress","call":"c1","capture":"k","field":"482913","keyed":1,"state":"keying"}',
     "bad_field", "verify_progress", "field a string of 6 characters is not one of account, pin"),
    ('{"v":1,"type":"verify_progress","call":"c1","capture":"k","field":"pin","keyed":65,"state":"keying"}',
     "bad_field", "verify_progress", "a count from 0 to 64"),
    ('{"v":1,"type":"call_ended","call":"c1","by":"caller","reason":"pin 482913"}', "bad_field", "call_ended",
     "no 4 digits in a row (it is a string of 10 characters)"),
    ('{"v":1,"type":"connect_failed","call":"c1","reason":"482913"}', "bad_field", "connect_failed",
     "no 4 digits in a row"),
    ('{"v":1,"type":"queue_refused","call":"c1","reason":"busy"}', "bad_field", "queue_refused",
     "reason \"busy\" is not one of no_agents, full, closed"),
    ('{"v":1,"type":"queue_leave","call":"c1","reason":"bored"}', "bad_field", "queue_leave", "is not one of"),
    ('{"v":1,"type":"verify","call":"c1","capture":"k","fields":["pin","pin"]}', "bad_field", "verify",
     "at most once"),
    ('{"v":1,"type":"verify","call":"c1","capture":"k","fields":["cvv"]}', "bad_field", "verify",
     "verify.fields[0] \"cvv\" is not one of account, pin"),
    ('{"v":1,"type":"connect","call":"c 1","agent":"a","sdp":""}', "bad_field", "connect", "connect.call"),
    ('{"v":1,"type":"connect","call":"c1","agent":"a b","sdp":""}', "bad_field", "connect", "an agent's name"),
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


def test_a_message_this_end_may_not_send_never_leaves_it():
    """The same checks run on sending: code that put a keyed PIN in a reason would fail here, on the
    node, before anything reached the WebSocket."""
    for bad in (p.CallEnded("c1", "caller", "keyed 482913"), p.VerifyResult("c1", "k", "failed", "482913"),
                p.QueueCall("c1", 1, "1", auth="none", account="482913"), p.VerifyProgress("c1", "k", "pin", 99, "keying")):
        with pytest.raises(p.ProtocolError) as exc:
            bad.to_json()
        assert "482913" not in str(exc.value)


def test_the_live_value_lists_are_the_agent_apis():
    from central_link.hq import call_control
    assert p.CAPTURE_FIELDS == call_control.FIELDS and p.OUTCOMES == call_control.OUTCOMES
