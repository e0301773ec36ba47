"""The bad-request corpus against a real simulator: each refused by field, the connection and card unharmed.

One simulator process for the module, one connection per group of cases; after each case a
good request on the same connection must work and the card must not have rebooted.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

from drivers.audiofile import synthesize, write_wav
from simulator import cli
from tests.conftest import SimProcess, start_sim, stop_sim
from tests.simulator.control_corpus import CASES, j

CRASH_SIGNS = ("Traceback", "firmware crashed")


class Conn:
    """A blocking JSON-lines connection: raw bytes out, one answer back."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.file = self.sock.makefile("rwb")

    def send(self, raw: bytes) -> dict:
        self.file.write(raw + b"\n")
        self.file.flush()
        line = self.file.readline()
        assert line, "the simulator closed the connection"
        return json.loads(line)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Iterator[SimProcess]:
    s = start_sim(tmp_path_factory.mktemp("sim"), "--channels", "2")
    yield s
    stop_sim(s)


@pytest.fixture(scope="module")
def conns(sim) -> Iterator[dict[str, Conn]]:
    opened: dict[str, Conn] = {}
    yield opened
    for c in opened.values():
        c.close()


@pytest.fixture(scope="module")
def boots(sim) -> int:
    """The card's boot count once it has booted (its thread starts after the control port opens)."""
    c = Conn(sim.control)
    try:
        deadline = time.monotonic() + 20
        while (n := c.send(j(op="status"))["boots"]) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert n == 1, "the card did not boot"
        return n
    finally:
        c.close()


def conn(conns: dict[str, Conn], sim: SimProcess, group: str) -> Conn:
    if group not in conns:
        conns[group] = Conn(sim.control)
    return conns[group]


def still_fine(c: Conn, sim: SimProcess, boots: int) -> None:
    st = c.send(j(op="status", id=7))
    assert st["ok"] is True and st["id"] == 7, st
    assert st["boots"] == boots, "the card rebooted"
    assert not any(s in sim.output() for s in CRASH_SIGNS), sim.output()[-3000:]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_request_is_refused_by_field_and_the_connection_goes_on(case, sim, conns, boots):
    c = conn(conns, sim, case.group)
    resp = c.send(case.raw)
    assert resp["ok"] is False, resp
    assert resp["field"] == case.field and case.field in resp["error"], resp
    still_fine(c, sim, boots)


def test_what_is_refused_only_when_tried_names_its_field_too(sim, conns, boots, tmp_path):
    c = conn(conns, sim, "runtime")
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("not a WAV")
    for req, field in [(j(op="play", line=2, wav="/nonexistent/prompt.wav", wait=False), "wav"),
                       (j(op="play", line=2, wav=str(not_audio), wait=False), "wav"),
                       (j(op="listen", line=2, ms=10, prompts={"hi": "/nonexistent/hi.wav"}), "prompts['hi']")]:
        resp = c.send(req)
        assert resp["ok"] is False and resp["field"] == field and field in resp["error"], resp
        still_fine(c, sim, boots)
    resp = c.send(j(op="speak", line=2, text="hello", voice="nosuch", wait=False))
    assert resp["ok"] is False and "espeak-ng failed for voice 'nosuch'" in resp["error"], resp
    still_fine(c, sim, boots)
    # audio queued without waiting adds up on an idle line: bounded too, and a hang-up clears it
    assert c.send(j(op="silence", line=2, ms=600_000, wait=False))["ok"] is True
    assert c.send(j(op="silence", line=2, ms=600_000, wait=False))["ok"] is True
    resp = c.send(j(op="silence", line=2, ms=1000, wait=False))
    assert resp["ok"] is False and resp["field"] == "ms" and "at most 1200 s may wait" in resp["error"], resp
    assert c.send(j(op="hangup", line=2))["ok"] is True
    assert c.send(j(op="silence", line=2, ms=1000, wait=False))["ok"] is True
    assert c.send(j(op="hangup", line=2))["ok"] is True
    still_fine(c, sim, boots)


def test_speak_says_a_text_that_looks_like_an_option(sim, conns, boots, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("zebra xylophone quartz. " * 30)
    text = f"-f{secret}"
    c = conn(conns, sim, "speak")
    resp = c.send(j(op="speak", line=2, text=text, wait=False))
    assert resp["ok"] is True, resp
    # the simulator spoke the text itself (" -f..." is never an option), not the file
    assert resp["ms"] == len(synthesize(" " + text)) // 8
    assert resp["ms"] < len(synthesize(secret.read_text())) // 8 / 2
    assert c.send(j(op="hangup", line=2))["ok"] is True  # nobody will hear it: drop it
    still_fine(c, sim, boots)


def test_simctl_names_the_step_the_simulator_refused(sim, tmp_path, capsys):
    tone = tmp_path / "tone.wav"
    write_wav(tone, (np.sin(np.arange(800) * 0.3) * 3000).astype(np.int16))
    script = tmp_path / "steps.json"
    script.write_text(json.dumps([{"op": "status"}, {"op": "dtmf", "line": 2, "digits": "1", "on_ms": -80}]))
    assert cli.main(["call", "--sim", sim.control, "--script", str(script)]) == 2
    err = capsys.readouterr().err
    assert "step 2 (dtmf): dtmf: on_ms must be a whole number from 10 to 10000 ms, not -80" in err, err


def test_after_the_corpus_a_good_call_rings_and_the_card_never_rebooted(sim, conns, boots):
    c = conn(conns, sim, "ring")  # the connection that carried the bad cadences
    assert c.send(j(op="ring", line=2, cadence=[300, 300], wait_answer=False))["ok"] is True
    deadline = time.monotonic() + 10  # the card polls its ring detector every 20 ms
    while (st := c.send(j(op="status")))["lines"][1]["rings"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert st["lines"][1]["rings"] >= 2, st["lines"]  # the firmware saw a whole cadence go by
    assert c.send(j(op="hangup", line=2))["ok"] is True
    still_fine(c, sim, boots)
