"""Digits a caller keyed that might be a PIN, and whether an account exists, through the whole path:
simulated calls into a running node, then every place those digits could end up."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import pytest

from node_agent.store import Store
from tests.conftest import ROOT
from tests.ivr.harness import branch, records, script, wait_idle
from tests.ivr.test_ivr_auth import attempt, to_auth

ACCOUNT, PIN, UNKNOWN = "6222001234", "482913", "6222009999"
RUN_TOGETHER = ACCOUNT + PIN  # account and PIN without '#' between them


@pytest.fixture
def sim(sim_factory):
    return sim_factory("--channels", "2")


async def nodectl(cfg: str, *args: str) -> str:
    """``nodectl`` in a process of its own, while the node (in this one) keeps running."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "node_agent.cli", "-c", cfg, *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and b"Traceback" not in err, (args, proc.returncode, out, err)
    return (out + err).decode()


async def test_digits_that_might_be_a_pin_are_nowhere(sim, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # the node runs in this process: everything it logs, at DEBUG
    async with branch(sim, tmp_path, max_failures=1) as (node, client, refs):
        node.auth.add_account(ACCOUNT, PIN)
        # an earlier failure today for the unknown account: the call below takes it past the limit,
        # so that an admin has an alarm to see
        await node.auth.verify(UNKNOWN, "000000", call_id="earlier", line=2)
        # one call: the PIN keyed at the account prompt; account and PIN run together (the account
        # prompt ends on the pause); a wrong unknown account. Three failures: goodbye
        heard, _ = await script(client, refs, to_auth() + [
            {"op": "dtmf", "digits": PIN + "#", "on_ms": 60, "off_ms": 60},
            {"op": "listen", "until": "pin.en", "ms": 5000},
            {"op": "dtmf", "digits": PIN + "#", "on_ms": 60, "off_ms": 60},
            {"op": "listen", "until": "account.en", "ms": 8000},
            {"op": "dtmf", "digits": RUN_TOGETHER, "on_ms": 60, "off_ms": 60},
            {"op": "listen", "until": "pin.en", "ms": 8000},
            {"op": "dtmf", "digits": PIN + "#", "on_ms": 60, "off_ms": 60},
            {"op": "listen", "until": "account.en", "ms": 8000},
        ] + attempt(UNKNOWN, PIN, "bye.en") + [{"op": "wait_onhook", "timeout_ms": 5000}])
        await wait_idle(node)
        # each entry reached the node whole, as an account (the three tries of the call, in order)
        call_id = records(node)[-1]["id"]
        tried = [r["account"] for r in node.store.db.query(
            "SELECT account FROM auth_events WHERE call_id = ? ORDER BY id", [call_id])]
        assert tried == [node.auth.keyed_hash.ref(d) for d in (PIN, RUN_TOGETHER, UNKNOWN)], heard
        # everything an admin or HQ can see, and the raw database files, while the node runs
        cfg = str(node.config.path)
        commands = [["calls"], ["calls", "--json"], ["alarms", "list"], ["alarms", "list", "--json"], ["status"],
                    ["status", "--json"]]
        shown = dict(zip((" ".join(c) for c in commands), await asyncio.gather(*(nodectl(cfg, *c) for c in commands))))
        data = node.config.data_dir
        raw = {p.name: p.read_bytes() for p in data.iterdir() if p.name.startswith("node.db")}
        status_file = (data / "status.json").read_text()
    store = Store(data / "node.db")
    try:
        outbox = [(r["kind"], r["payload"]) for r in store.db.query("SELECT kind, payload FROM outbox")]
    finally:
        store.close()
    node_log = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith("simulator"))

    # the places looked at hold what they should, so finding nothing in them means something
    assert {"node.db", "node.db-wal", "node.db-shm"} <= set(raw) and len(raw["node.db-wal"]) > 0
    assert ACCOUNT.encode() in b"".join(raw.values())  # a real account is kept in clear
    unknown_ref = json.loads(shown["alarms list --json"])[0]["account"]
    assert unknown_ref.startswith("unknown:") and unknown_ref in shown["alarms list"]
    assert "unknown account" in shown["alarms list"]
    assert [r["account"] for r in records(node)] == [unknown_ref]  # correlated, not readable
    assert {k for k, _ in outbox} >= {"auth_event", "alarm", "call_record"}
    assert "node_agent.calls" in node_log and "unknown account unknown:" in node_log
    for digits in (PIN, RUN_TOGETHER, UNKNOWN):
        for name, content in raw.items():
            assert digits.encode() not in content, (digits, name)
        for what, out in shown.items():
            assert digits not in out, (digits, what)
        assert digits not in json.dumps(outbox), digits
        assert digits not in status_file and digits not in node_log, digits


async def test_an_unknown_account_past_the_limit_hears_what_a_locked_real_account_hears(sim, tmp_path):
    async with branch(sim, tmp_path, max_failures=1) as (node, client, refs):
        node.auth.add_account(ACCOUNT, PIN)
        heard = {}
        for line, account in ((1, ACCOUNT), (2, UNKNOWN)):
            # one failure earlier today; this call's first wrong PIN is one more than the limit
            # (1): locked; the next try, with the real account's PIN, is refused
            await node.auth.verify(account, "000000", call_id=f"earlier-{line}", line=line)
            steps = (to_auth() + attempt(account, "111111", "wrong.en")
                     + [{"op": "listen", "until": "account.en", "ms": 5000}] + attempt(account, PIN, "bye.en")
                     + [{"op": "wait_onhook", "timeout_ms": 5000}])
            heard[account], results = await script(client, refs, steps, line=line)
            assert results[-1]["onhook"], results[-1]
            await wait_idle(node, line)
        alarms = node.auth.alarms()
    assert heard[UNKNOWN] == heard[ACCOUNT]
    assert heard[ACCOUNT] == (["lang.cmn", "lang.en", "main.en", "account.en", "pin.en", "wrong.en"]
                              + ["account.en", "pin.en", "locked.en", "bye.en"])
    assert [(a["known"], a["account"] == ACCOUNT) for a in alarms] == [(True, True), (False, False)]
    assert [r["auth_outcome"] for r in records(node)] == ["blacklisted", "blacklisted"]
