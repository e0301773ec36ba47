"""kill -9 of the node in the middle of calls, then a restart: nothing committed is lost."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time

from simulator.client import SimClient
from tests.conftest import ROOT
from tests.ivr.harness import write_config


def start_node(cfg, log):
    return subprocess.Popen([sys.executable, "-m", "node_agent.cli", "-v", "-c", str(cfg), "run"], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)


async def wait_status(data, pred, timeout=20.0):
    import json

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            st = json.loads((data / "status.json").read_text())
            if pred(st):
                return st
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the node did not reach the expected state")


async def test_kill_9_mid_call_then_restart(sim_factory, tmp_path):
    sim = sim_factory("--channels", "2")
    cfg = write_config(tmp_path, sim.serial, max_failures=5)
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "node_agent.cli", "-c", str(cfg), "accounts", "add", "6222001234",
                    "--pin-stdin"], input="482913\n", cwd=ROOT, check=True, capture_output=True, text=True)
    log = (tmp_path / "node.log").open("w")
    node = start_node(cfg, log)
    client = await SimClient.parse(sim.control).connect()
    try:
        await wait_status(data, lambda st: st["card"]["connected"])
        # one finished call, with a committed PIN failure in it
        await client.call("ring", line=1, cadence=[500, 500])
        await client.call("listen", line=1, ms=2200)
        await client.call("dtmf", line=1, digits="3")
        await client.call("listen", line=1, ms=2500)
        await client.call("dtmf", line=1, digits="1")
        await client.call("listen", line=1, ms=2000)
        await client.call("dtmf", line=1, digits="6222001234#", on_ms=60, off_ms=60)
        await client.call("listen", line=1, ms=1500)
        await client.call("dtmf", line=1, digits="000000#", on_ms=60, off_ms=60)
        await client.call("listen", line=1, ms=1500)
        await client.call("hangup", line=1)
        await wait_status(data, lambda st: all(ln["state"] == "idle" for ln in st["lines"]) and st["lines"][0]["calls"] == 1)
        # two calls in progress when the plug is pulled
        await client.call("ring", line=1, cadence=[500, 500])
        await client.call("ring", line=2, cadence=[500, 500])
        await client.call("listen", line=1, ms=800)
        node.send_signal(signal.SIGKILL)
        node.wait(5)
        # restart, and a caller rings at once: answered within 2 s of the restart
        t0 = time.monotonic()
        node = start_node(cfg, log)
        res = await client.call("ring", line=1, cadence=[300, 300], timeout_ms=6000)
        answer_after_restart = time.monotonic() - t0
        assert res["answered"]
        await client.call("hangup", line=1)
        # the call that was up on line 2 when the node died was released: the line is idle again
        assert (await client.call("wait_onhook", line=2, timeout_ms=3000))["onhook"]
        await wait_status(data, lambda st: st["pid"] == node.pid and all(ln["state"] == "idle" for ln in st["lines"]))
    finally:
        await client.close()
        node.send_signal(signal.SIGTERM)
        node.wait(10)
    db = sqlite3.connect(data / "node.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    records = db.execute("SELECT disposition, auth_outcome FROM call_records ORDER BY started").fetchall()
    assert records[0] == ("caller_hangup", "wrong")
    assert db.execute("SELECT COUNT(*) FROM auth_events WHERE outcome = 'wrong'").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL").fetchone()[0] >= 2
    assert answer_after_restart < 2.0, answer_after_restart
