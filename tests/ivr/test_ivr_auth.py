"""Keypad authentication through the whole path, and a caller who does everything wrong."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest

from simulator.client import SimError
from tests.conftest import ROOT
from tests.ivr.harness import branch, records, script, wait_idle

ACCOUNT, PIN = "6222001234", "482913"


@pytest.fixture
def sim(sim_factory):
    return sim_factory("--channels", "2")


def to_auth(line_keys: str = "3") -> list[dict]:
    return [{"op": "ring", "cadence": [500, 500]},
            {"op": "listen", "until": "lang.en", "ms": 5000},
            {"op": "dtmf", "digits": line_keys},
            {"op": "listen", "until": "main.en", "ms": 5000},
            {"op": "dtmf", "digits": "1"},
            {"op": "listen", "until": "account.en", "ms": 5000}]


def attempt(account: str, pin: str, then: str) -> list[dict]:
    return [{"op": "dtmf", "digits": account + "#", "on_ms": 60, "off_ms": 60},
            {"op": "listen", "until": "pin.en", "ms": 5000},
            {"op": "dtmf", "digits": pin + "#", "on_ms": 60, "off_ms": 60},
            {"op": "listen", "until": then, "ms": 8000}]


async def test_right_pin_hears_the_account_status(sim, tmp_path):
    async with branch(sim, tmp_path) as (node, client, refs):
        node.auth.add_account(ACCOUNT, PIN)
        heard, _ = await script(client, refs, to_auth() + attempt(ACCOUNT, PIN, "bye.en") +
                                [{"op": "wait_onhook", "timeout_ms": 5000}])
        await wait_idle(node)
    assert heard == ["lang.cmn", "lang.en", "main.en", "account.en", "pin.en", "ok.en", "bye.en"]
    rec = records(node)[-1]
    assert rec["auth_outcome"] == "verified" and rec["account"] == ACCOUNT
    assert PIN not in json.dumps(rec)


async def test_three_wrong_pins_end_the_call_and_unknown_accounts_sound_the_same(sim, tmp_path):
    async with branch(sim, tmp_path) as (node, client, refs):
        node.auth.add_account(ACCOUNT, PIN)
        steps = to_auth()
        for i in range(3):
            steps += attempt(ACCOUNT if i != 1 else "6222009999", "000000", "wrong.en" if i < 2 else "bye.en")
            if i < 2:
                steps.append({"op": "listen", "until": "account.en", "ms": 5000})
        heard, _ = await script(client, refs, steps + [{"op": "wait_onhook", "timeout_ms": 5000}])
        await wait_idle(node)
    # the unknown account (second try) got exactly the prompts a wrong PIN gets
    assert heard == ["lang.cmn", "lang.en", "main.en"] + ["account.en", "pin.en", "wrong.en"] * 3 + ["bye.en"]
    rec = records(node)[-1]
    assert rec["auth_outcome"] == "failed" and rec["disposition"] == "completed"


async def test_blacklist_across_calls_and_lines_until_nodectl_clears_the_alarm(sim, tmp_path):
    async with branch(sim, tmp_path, max_failures=2) as (node, client, refs):
        node.auth.add_account(ACCOUNT, PIN)
        # three failures (more than 2) over two calls on two lines
        await script(client, refs, to_auth() + attempt(ACCOUNT, "111111", "wrong.en") + attempt(ACCOUNT, "222222", "wrong.en")
                     + [{"op": "hangup"}], line=1)
        await wait_idle(node, 1)
        await script(client, refs, to_auth() + attempt(ACCOUNT, "333333", "wrong.en") + [{"op": "hangup"}], line=2)
        await wait_idle(node, 2)
        assert [a["account"] for a in node.auth.alarms()] == [ACCOUNT]
        # refused even with the right PIN, with its own prompt
        heard, _ = await script(client, refs, to_auth() + attempt(ACCOUNT, PIN, "bye.en"), line=1)
        assert heard[-2:] == ["locked.en", "bye.en"]
        await wait_idle(node, 1)
        cfg = str(node.config.path)
        listed = subprocess.run([sys.executable, "-m", "node_agent.cli", "-c", cfg, "alarms", "list", "--json"],
                                cwd=ROOT, capture_output=True, text=True, check=True)
        alarm = json.loads(listed.stdout)[0]
        cleared = subprocess.run([sys.executable, "-m", "node_agent.cli", "-c", cfg, "alarms", "clear",
                                  str(alarm["id"]), "--by", "supervisor"], cwd=ROOT, capture_output=True, text=True)
        assert cleared.returncode == 0 and "cleared" in cleared.stdout
        heard, _ = await script(client, refs, to_auth() + attempt(ACCOUNT, PIN, "bye.en"), line=1)
        assert heard[-2:] == ["ok.en", "bye.en"]
        await wait_idle(node, 1)
    assert [r["auth_outcome"] for r in records(node)] == ["wrong", "wrong", "blacklisted", "verified"]


async def test_fifty_keys_in_two_seconds(sim, tmp_path):
    async with branch(sim, tmp_path) as (node, client, refs):
        # 50 keys in 2 s: faster than DTMF signalling allows (a receiver must take 40 ms tones and
        # may refuse shorter ones); then 50 keys at the fastest valid timing, 4 s. Whatever is
        # taken drives the IVR wherever it leads (a '0' reaches the agent fallback and goodbye,
        # the node may hang up before all are sent): it must follow without getting stuck, and
        # clear the call
        for on_ms, off_ms in ((24, 16), (40, 40)):
            await script(client, refs, [{"op": "ring", "cadence": [500, 500]},
                                        {"op": "listen", "until": "lang.en", "ms": 5000}])
            with contextlib.suppress(SimError):  # "the node hung up before this was sent"
                await client.call("dtmf", line=1, digits="1234567890*#" * 4 + "12", on_ms=on_ms, off_ms=off_ms)
            await script(client, refs, [{"op": "listen", "ms": 3000}, {"op": "hangup"}])
            await wait_idle(node)
        for burst in records(node):
            assert burst["disposition"] in ("caller_hangup", "completed", "transfer_fallback"), burst
            assert json.loads(burst["ivr_path"])[:3] == ["language", "hours", "menu"], burst
        # (hanging up inside each node type: tests/ivr/test_ivr_flows.py, with the time to release)
        # and the node still answers
        heard, _ = await script(client, refs, [{"op": "ring", "cadence": [500, 500]},
                                               {"op": "listen", "until": "lang.en", "ms": 5000}, {"op": "hangup"}])
        await wait_idle(node)
