"""Bad requests for the simulator's control port, each with the field its refusal must name.

Shared by the validator's unit tests and the test against a real simulator (2 lines), so both
hold the same corpus. ``group`` is the connection a live test sends a case on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    group: str
    raw: bytes  # one request line, without its newline
    field: str  # what the error must name
    why: str

    @property
    def id(self) -> str:
        return f"{self.group}-{self.why}"


def j(**req) -> bytes:
    return json.dumps(req).encode()


CASES = [
    # the request line itself
    Case("framing", b'{"op": "status", "x": "\xff\xfe"}', "request", "invalid UTF-8"),
    Case("framing", b"[" * 100_000, "request", "lists nested 100000 deep"),
    Case("framing", b'{"a":' * 20_000 + b"1" + b"}" * 20_000, "request", "objects nested 20000 deep"),
    Case("framing", b'{"op": "status", "id": [[[[[1]]]]]}', "request", "nested 6 deep"),
    Case("framing", b"not json", "request", "not JSON"),
    Case("framing", b"", "request", "an empty line"),
    Case("framing", b'["status"]', "request", "a list, not an object"),
    Case("framing", b'"status"', "request", "a string, not an object"),
    Case("framing", j(op="speak", text="x" * 300_000), "request", "300 kB of text to speak"),
    Case("framing", j(op="status", id={"a": 1}), "id", "an id that is an object"),
    Case("framing", j(op="status", id="x" * 65), "id", "an id too long"),
    # numbers the parser would turn into something unusable
    Case("numbers", b'{"op": "ring", "line": ' + b"9" * 5000 + b"}", "line", "a 5000-digit line"),
    Case("numbers", b'{"op": "ring", "line": 1e400}', "line", "an infinite line"),
    Case("numbers", b'{"op": "silence", "ms": 1e999}', "ms", "infinite silence"),
    Case("numbers", b'{"op": "impair", "loss_db": NaN}', "loss_db", "NaN loss"),
    Case("numbers", b'{"op": "dtmf", "digits": "1", "level_dbm0": -Infinity}', "level_dbm0", "-Infinity level"),
    Case("numbers", j(op="silence", ms=1e9), "ms", "silence of 1e9 ms"),
    Case("numbers", j(op="silence", ms=-1), "ms", "negative silence"),
    Case("numbers", j(op="silence", ms="1000"), "ms", "silence as a string"),
    # ops and fields
    Case("ops", j(), "op", "no op"),
    Case("ops", j(op=5), "op", "op a number"),
    Case("ops", j(op=["ring"]), "op", "op a list"),
    Case("ops", j(op="explode"), "op", "an unknown op"),
    Case("ops", j(op="__init__"), "op", "a Python name as op"),
    Case("ops", j(op="status", bogus=1), "bogus", "an unknown field"),
    Case("ops", j(op="reset_card", force=True), "force", "reset_card takes no fields"),
    Case("ops", j(op="hangup", line=1, mode="slam"), "mode", "an unknown hang-up mode"),
    Case("ops", j(op="wait_onhook", line=1, timeout_ms=-1), "timeout_ms", "a negative timeout"),
    # ringing: bad cadences made the firmware crash and reboot until a hang-up
    Case("ring", j(op="ring", line=2, cadence=[0, 0], wait_answer=False), "cadence", "cadence [0, 0]"),
    Case("ring", j(op="ring", line=2, cadence=[-500, 500], wait_answer=False), "cadence", "cadence [-500, 500]"),
    Case("ring", j(op="ring", line=2, cadence=[1000], wait_answer=False), "cadence", "cadence [1000]"),
    Case("ring", j(op="ring", line=2, cadence=["1000", "4000"], wait_answer=False), "cadence", "cadence strings"),
    Case("ring", j(op="ring", line=2, cadence=[1000, 4000, 1], wait_answer=False), "cadence", "cadence of 3"),
    Case("ring", j(op="ring", line=2, cadence=[1000, 60000], wait_answer=False), "cadence", "a 60 s gap"),
    Case("ring", j(op="ring", line=2, cadence="uk", wait_answer=False), "cadence", "an unknown cadence"),
    Case("ring", j(op="ring", line=2, cadence={"on": 1}, wait_answer=False), "cadence", "cadence an object"),
    Case("ring", j(op="ring", line=True, wait_answer=False), "line", "line true"),
    Case("ring", j(op="ring", line=0, wait_answer=False), "line", "line 0"),
    Case("ring", j(op="ring", line=3, wait_answer=False), "line", "line past the card's 2"),
    Case("ring", j(op="ring", line="1", wait_answer=False), "line", "line a string"),
    Case("ring", j(op="ring", line=1.5, wait_answer=False), "line", "line 1.5"),
    Case("ring", j(op="ring", line=2, cid="13800138000", wait_answer=False), "cid", "a string where a table belongs"),
    Case("ring", j(op="ring", line=2, cid={"number": "138-0013"}, wait_answer=False), "cid.number", "cid number"),
    Case("ring", j(op="ring", line=2, cid={"number": "1" * 21}, wait_answer=False), "cid.number", "cid 21 digits"),
    Case("ring", j(op="ring", line=2, cid={"number": "1", "name": "N" * 51}, wait_answer=False), "cid.name",
         "cid name too long"),
    Case("ring", j(op="ring", line=2, cid={"number": "1", "mode": "fsk"}, wait_answer=False), "cid.mode",
         "cid mode"),
    Case("ring", j(op="ring", line=2, cid={"number": "1", "datetime": "2026-01-01"}, wait_answer=False),
         "cid.datetime", "cid datetime"),
    Case("ring", j(op="ring", line=2, cid={"number": "1", "when": "now"}, wait_answer=False), "cid.when",
         "cid unknown field"),
    Case("ring", j(op="ring", line=2, max_rings=-1, wait_answer=False), "max_rings", "negative max_rings"),
    Case("ring", j(op="ring", line=2, wait_answer="no"), "wait_answer", "wait_answer a string"),
    Case("ring", j(op="ring", line=2, timeout_ms=1e12), "timeout_ms", "a timeout of 30 years"),
    # DTMF
    Case("dtmf", j(op="dtmf", line=2, digits="1", on_ms=-80), "on_ms", "on_ms -80"),
    Case("dtmf", j(op="dtmf", line=2, digits="1", on_ms=0), "on_ms", "on_ms 0"),
    Case("dtmf", j(op="dtmf", line=2, digits="1", off_ms=1e9), "off_ms", "off_ms 1e9"),
    Case("dtmf", j(op="dtmf", line=2, digits="12x"), "digits", "a digit that is not DTMF"),
    Case("dtmf", j(op="dtmf", line=2, digits=""), "digits", "no digits"),
    Case("dtmf", j(op="dtmf", line=2, digits=123), "digits", "digits a number"),
    Case("dtmf", j(op="dtmf", line=2), "digits", "digits missing"),
    Case("dtmf", j(op="dtmf", line=2, digits="1" * 1000, on_ms=5000, off_ms=5000), "digits",
         "2.8 hours of tones"),
    Case("dtmf", j(op="dtmf", line=2, digits="1", level_dbm0=50), "level_dbm0", "level +50 dBm0"),
    Case("dtmf", j(op="dtmf", line=2, digits="1", twist_db="big"), "twist_db", "twist a string"),
    Case("dtmf", j(op="dtmf", line=2, digits="1", freq_offset=0.5), "freq_offset", "50 % off"),
    Case("dtmf", j(op="dtmf", line=2, digits="1", row_offset=2), "row_offset", "row 200 % off"),
    Case("dtmf", j(op="dtmf", line=2, digits="1", wait=1), "wait", "wait 1"),
    # speech and audio
    Case("audio", j(op="speak", line=2, text="x" * 6000, wait=False), "text", "6000 characters to speak"),
    Case("audio", j(op="speak", line=2, text="a\u0000b", wait=False), "text", "a NUL in the text"),
    Case("audio", j(op="speak", line=2, text="\ud800", wait=False), "text", "a lone surrogate"),
    Case("audio", j(op="speak", line=2, text=5, wait=False), "text", "text a number"),
    Case("audio", j(op="speak", line=2, text="hi", voice="-f/etc/hostname", wait=False), "voice",
         "a voice like an option"),
    Case("audio", j(op="speak", line=2, text="hi", voice="", wait=False), "voice", "no voice"),
    Case("audio", j(op="play", line=2, wav="prompt.wav", wait=False), "wav", "a relative path"),
    Case("audio", j(op="play", line=2, wav=["/a.wav"], wait=False), "wav", "wav a list"),
    Case("audio", j(op="play", line=2, wav="/" + "a" * 2000, wait=False), "wav", "a 2 kB path"),
    # line impairments and link faults
    Case("faults", j(op="impair", line=2, noise_dbm0=50), "noise_dbm0", "noise +50 dBm0"),
    Case("faults", j(op="impair", line=2, loss_db=-10), "loss_db", "a negative loss"),
    Case("faults", j(op="impair", line=2, loss_db=1e308), "loss_db", "a loss of 1e308 dB"),
    Case("faults", j(op="impair", line=2, echo_db="x"), "echo_db", "echo a string"),
    Case("faults", j(op="impair", line=2, noise_dbm0=-40, seed=-1), "seed", "a negative seed"),
    Case("faults", j(op="fault", ber=2), "ber", "ber 2"),
    Case("faults", j(op="fault", ber=-0.1), "ber", "a negative ber"),
    Case("faults", j(op="fault", ber=True), "ber", "ber true"),
    Case("faults", j(op="fault", drop_up=1.5), "drop_up", "drop 150 %"),
    # power and power cuts
    Case("power", j(op="power"), "on", "power without on"),
    Case("power", j(op="power", on="off"), "on", "power on a string"),
    Case("power", j(op="power", on=1), "on", "power on a number"),
    Case("power", j(op="power", on=True, line=1), "line", "power takes no line"),
    Case("power", j(op="cut"), "at", "cut without at"),
    Case("power", j(op="cut", at="flash"), "at", "cut at an unknown point"),
    Case("power", j(op="cut", at=3), "at", "cut at a number"),
    Case("power", j(op="cut", at="flash_op"), "n", "cut at flash_op without n"),
    Case("power", j(op="cut", at="flash_op", n=0), "n", "cut at flash op 0"),
    Case("power", j(op="cut", at="flash_op", n=-1), "n", "cut at a negative flash op"),
    Case("power", j(op="cut", at="flash_op", n=1.5), "n", "cut at flash op 1.5"),
    Case("power", j(op="cut", at="flash_op", n="3"), "n", "cut at flash op as a string"),
    Case("power", j(op="cut", at="image_byte"), "n", "cut at image_byte without n"),
    Case("power", j(op="cut", at="image_byte", n=2**40), "n", "cut at a byte past 2**31"),
    Case("power", j(op="cut", at="reboot", n=1), "n", "cut at reboot with n"),
    Case("power", j(op="cut", at="trial", n=0), "n", "cut at trial with n"),
    Case("power", j(op="cut", at="none", n=5), "n", "disarm with n"),
    Case("power", j(op="cut", at="reboot", when="now"), "when", "cut unknown field"),
    # listening
    Case("listen", j(op="listen", line=2, ms=-1), "ms", "listen -1 ms"),
    Case("listen", j(op="listen", line=2, ms=1e9), "ms", "listen 11 days"),
    Case("listen", j(op="listen", line=2, prompts="welcome.wav"), "prompts", "prompts a string"),
    Case("listen", j(op="listen", line=2, prompts={"a": 5}), "prompts['a']", "a prompt a number"),
    Case("listen", j(op="listen", line=2, prompts={"": "/a.wav"}), "prompts", "a prompt without a name"),
    Case("listen", j(op="listen", line=2, prompts={"a": "a.wav"}), "prompts['a']", "a prompt relative"),
    Case("listen", j(op="listen", line=2, prompts={f"p{i}": f"/p{i}.wav" for i in range(129)}), "prompts",
         "129 prompts"),
    Case("listen", j(op="listen", line=2, ms=10, until="welcome"), "until", "until no prompt given"),
]
