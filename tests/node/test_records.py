"""Call records survive a crash: open from the first ring, up to date as the call goes, closed
before the line is released; a node that died mid-call has its records closed as interrupted at
the next start, and HQ gets exactly one outbox item per call, whichever way it ended.

The crash windows are hit exactly, not by timing: the node runs in a subprocess
(``tests/node/fakeline.py``) that kills itself by SIGKILL at the chosen instant."""

from __future__ import annotations

import json
import subprocess
import sys

from drivers.audiofile import to_8k
from hal import events as ev
from node_agent.recordings import Recordings
from node_agent.records import CallLog
from node_agent.store import Store
from tests.conftest import ROOT
from tests.node.fakeline import ACCOUNT, OneLineNode, until


def restart(folder):
    """What a starting node does first (as ``Node.run``): close what the dead one left open."""
    store = Store(folder / "data" / "node.db")
    try:
        interrupted = CallLog(store).close_interrupted()
        recovered = Recordings(store, folder / "data" / "recordings").recover()
        records = list(store.db.query("SELECT * FROM call_records"))
        outbox = [(i.key, i.payload) for i in store.outbox_pending()]
        recordings = list(store.db["recordings"].rows)
    finally:
        store.close()
    return interrupted, recovered, records, outbox, recordings


def crash(folder, kill_at: str) -> None:
    res = subprocess.run([sys.executable, "-m", "tests.node.fakeline", str(folder), kill_at], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == -9, f"the node was not killed at {kill_at}: {res.returncode} {res.stderr}"


async def test_the_record_is_open_from_the_first_ring_and_follows_the_call(tmp_path):
    node = OneLineNode(tmp_path)
    node.runner.answer_on_ring = 2
    node.start()
    try:
        node.line.emit(ev.Ring(1, 1))
        await until(lambda: len(node.records()) == 1, 5, "a record at the first ring")
        [rec] = node.records()
        assert rec["ended"] is None and rec["answered"] is None and rec["disposition"] == ""
        node.line.emit(ev.CallerIdReceived(1, "13800138000", "LI NA", "", "bell202"))
        node.line.emit(ev.Ring(1, 2))
        await until(lambda: node.records()[0]["answered"], 5, "the answer in the record")
        assert node.records()[0]["caller_number"] == "13800138000"
        node.keys("31")
        await until(lambda: json.loads(node.records()[0]["ivr_path"]) == ["lang", "hours", "menu", "auth"], 5,
                    "the path in the record while the call is up")
        node.keys(f"{ACCOUNT}#000000#")
        await until(lambda: node.records()[0]["auth_outcome"] == "wrong", 5,
                    "a failed PIN in the record while the call is up (still in the authenticate node)")
        assert node.records()[0]["ended"] is None
        # nothing goes to HQ until the call's final state
        assert not [k for k, _ in restart_outbox(node)], "an outbox item for a call still in progress"
    finally:
        await node.stop()


def restart_outbox(node):
    s = Store(node.store.path)
    try:
        return [(i.key, i.payload) for i in s.outbox_pending() if i.kind == "call_record"]
    finally:
        s.close()


async def test_a_missed_call_is_closed_as_missed(tmp_path):
    node = OneLineNode(tmp_path)
    node.runner.answer_on_ring = 3
    node.start()
    try:
        node.line.emit(ev.Ring(1, 1))
        node.line.emit(ev.RingingStopped(1, 1))
        await until(lambda: node.records() and node.records()[0]["ended"], 5, "the missed call closed")
    finally:
        await node.stop()
    assert node.records()[0]["disposition"] == "missed"
    assert [k for k, _ in restart_outbox(node)] == [f"call-{node.records()[0]['id']}"]


def test_kill_between_the_final_commit_and_the_hang_up_keeps_the_complete_record(tmp_path):
    crash(tmp_path, "hangup")
    interrupted, _, [rec], outbox, _ = restart(tmp_path)
    assert interrupted == []  # it was closed before the kill: the restart leaves it alone
    assert (rec["disposition"], rec["auth_outcome"], rec["ended_in"]) == ("caller_hangup", "wrong", "auth")
    assert [(k, p["disposition"]) for k, p in outbox if k.startswith("call-")] == [(f"call-{rec['id']}",
                                                                                    "caller_hangup")]
    assert restart(tmp_path)[0] == []  # a second start changes nothing and adds nothing
    assert len([k for k, _ in restart(tmp_path)[3] if k.startswith("call-")]) == 1


def test_kill_inside_the_final_commit_leaves_an_interrupted_record_with_what_it_had(tmp_path):
    crash(tmp_path, "commit")
    interrupted, _, [rec], outbox, _ = restart(tmp_path)
    assert interrupted == [rec["id"]]
    # what the record had from its updates: the path to the PIN question and the failed PIN
    assert (rec["disposition"], rec["auth_outcome"], rec["ended_in"]) == ("interrupted", "wrong", "auth")
    assert json.loads(rec["ivr_path"]) == ["lang", "hours", "menu", "auth"] and rec["ended"]
    calls = [(k, p["disposition"]) for k, p in outbox if k.startswith("call-")]
    assert calls == [(f"call-{rec['id']}", "interrupted")]
    # the PIN failure committed during the call is not lost
    assert [p["outcome"] for k, p in outbox if k.startswith("auth-")] == ["wrong"]
    again = restart(tmp_path)
    assert again[0] == [] and len([k for k, _ in again[3] if k.startswith("call-")]) == 1


def test_kill_during_a_voice_message_keeps_the_message_as_far_as_it_got(tmp_path):
    crash(tmp_path, "recording")
    interrupted, recovered, [rec], outbox, [msg] = restart(tmp_path)
    assert interrupted == [rec["id"]] and rec["ended_in"] == "message"
    assert recovered == 1 and msg["call_id"] == rec["id"]
    # 2 s were recorded; at most FLUSH_FRAMES (200 ms) had not reached the kernel
    assert 1700 <= msg["ms"] <= 2400, msg
    assert len(to_8k(msg["path"])) == msg["ms"] * 8
    assert [k for k, _ in outbox if k.startswith("recording-")] == [f"recording-{rec['id']}-message"]
    assert restart(tmp_path)[1] == 0


def test_closing_the_store_waits_for_a_commit_in_flight(tmp_path):
    """The daemon stopping closes its store while a call record may still be committing on the
    records' writer thread: closing that connection under it crashed the process (a segfault)."""
    import threading

    store = Store(tmp_path / "node.db")
    inside, release, closed = threading.Event(), threading.Event(), threading.Event()

    def writer() -> None:
        with store.transaction() as db:
            db.execute("CREATE TABLE t (x)")
            inside.set()
            assert release.wait(10), "the test never let the commit go"
            db.execute("INSERT INTO t VALUES (1)")

    def closer() -> None:
        store.close()
        closed.set()

    w = threading.Thread(target=writer)
    w.start()
    assert inside.wait(10)
    c = threading.Thread(target=closer)
    c.start()
    assert not closed.wait(0.3), "close() did not wait for the transaction in flight"
    release.set()
    w.join(10)
    assert closed.wait(10)
    again = Store(tmp_path / "node.db")
    assert again.db.execute("SELECT x FROM t").fetchall() == [(1,)]
    again.close()
