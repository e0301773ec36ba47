"""The agent's secure capture through the whole node path: a simulated caller keys on the simulated
card, the node's DTMF mask sits on the line's tap as the media bridge's would, and the "agent" (the
call's transfer node, standing in for a forwarded call) hears the mask's output."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from drivers.dsp.levels import dbm0
from node_agent.dtmf_mask import DtmfMask
from node_agent.verify import CaptureSettings, SecureCapture
from tests.dsp.dtmf_signals import ours
from tests.ivr.harness import branch, records, script, wait_idle
from tests.ivr.test_ivr_auth import ACCOUNT, PIN

UNPROMPTED = "4829"  # keyed while talking to the agent, before any capture


@pytest.fixture
def sim(sim_factory):
    return sim_factory("--channels", "2")


def agent_on_transfer(node, outcomes: list, heard: list, progress: list):
    """The flow's transfer node becomes a talk with an agent who asks for verification once the
    caller has keyed UNPROMPTED (flattened on the way to the agent)."""
    ivr = node.ivr

    async def transfer(call, flow_node):
        mask = DtmfMask()
        frames: list[np.ndarray] = []
        captured: list[bool] = []

        def tap(frame) -> None:
            frames.append(mask.process(frame.pcm))
            captured.append(mask.capturing)

        call.line.set_rx_tap(tap)
        try:
            deadline = asyncio.get_running_loop().time() + 15
            while len(call.keys) < len(UNPROMPTED):  # the caller keys while "talking"
                assert asyncio.get_running_loop().time() < deadline, "the unprompted keys never came"
                await asyncio.sleep(0.02)
            capture = SecureCapture(call, ivr, mask, CaptureSettings.from_flow(ivr.config.flows["main"]),
                                    on_progress=progress.append)
            outcome = await capture.run()
            outcomes.append(outcome)
        finally:
            call.line.set_rx_tap(None)
            heard.append((np.concatenate(frames) if frames else np.zeros(0, np.int16), captured))
        if outcome.end_call:
            call.disposition = "verify_failed"
            return None
        return flow_node["fallback"]

    ivr._transfer = transfer


def to_agent() -> list[dict]:
    return [{"op": "ring", "cadence": [500, 500]},
            {"op": "listen", "until": "lang.en", "ms": 5000},
            {"op": "dtmf", "digits": "3"},
            {"op": "listen", "until": "main.en", "ms": 5000},
            {"op": "dtmf", "digits": "0"},
            {"op": "silence", "ms": 300},
            {"op": "dtmf", "digits": UNPROMPTED, "on_ms": 60, "off_ms": 60},
            {"op": "listen", "until": "account.en", "ms": 8000}]


def keyed(account: str, pin: str, then: str) -> list[dict]:
    return [{"op": "dtmf", "digits": account + "#", "on_ms": 60, "off_ms": 60},
            {"op": "listen", "until": "pin.en", "ms": 5000},
            {"op": "dtmf", "digits": pin + "#", "on_ms": 60, "off_ms": 60},
            {"op": "listen", "until": then, "ms": 8000}]


async def test_the_agent_verifies_a_caller_and_hears_no_digit(sim, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    outcomes, heard, progress = [], [], []
    async with branch(sim, tmp_path) as (node, client, refs):
        node.auth.add_account(ACCOUNT, PIN)
        agent_on_transfer(node, outcomes, heard, progress)
        caller_heard, _ = await script(client, refs, to_agent() + keyed(ACCOUNT, PIN, "busy.en")
                                       + [{"op": "listen", "until": "bye.en", "ms": 5000},
                                          {"op": "wait_onhook", "timeout_ms": 8000}])
        await wait_idle(node)
    assert [(o.result, o.account) for o in outcomes] == [("verified", ACCOUNT)]
    assert caller_heard[-4:] == ["account.en", "pin.en", "busy.en", "bye.en"]
    agent_audio, captured = heard[0]
    # the caller's keys reached the node (it verified them), but no digit reached the agent: not the
    # ones keyed unprompted (flattened), not account or PIN (captured)
    assert ours(agent_audio) == []
    assert any(captured) and not captured[0]
    # the agent heard the prompts the node played during the capture
    during = agent_audio[np.repeat(np.array(captured), 160)]
    assert dbm0(during) > -40
    rec = records(node)[-1]
    assert rec["auth_outcome"] == "verified" and rec["account"] == ACCOUNT
    shown = repr(progress) + "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("simulator"))
    assert PIN not in shown and UNPROMPTED not in shown


async def test_three_wrong_pins_fail_and_end_the_call(sim, tmp_path):
    outcomes, heard, progress = [], [], []
    async with branch(sim, tmp_path) as (node, client, refs):
        node.auth.add_account(ACCOUNT, PIN)
        agent_on_transfer(node, outcomes, heard, progress)
        steps = to_agent()
        for i in range(3):
            steps += keyed(ACCOUNT, f"{i}{i}{i}{i}{i}{i}", "wrong.en")
            if i < 2:
                steps.append({"op": "listen", "until": "account.en", "ms": 8000})
        caller_heard, _ = await script(client, refs, steps + [{"op": "listen", "until": "bye.en", "ms": 5000},
                                                              {"op": "wait_onhook", "timeout_ms": 5000}])
        await wait_idle(node)
    assert [(o.result, o.end_call) for o in outcomes] == [("failed", True)]
    assert caller_heard[-10:] == ["account.en", "pin.en", "wrong.en"] * 3 + ["bye.en"]
    assert ours(heard[0][0]) == []
    rec = records(node)[-1]
    assert rec["auth_outcome"] == "failed" and rec["disposition"] == "verify_failed"
