"""A call forwarded to HQ, end to end: a simulated caller (own process, real card firmware) on the
real node daemon, the real hub over mutual TLS, and an agent in this process that takes the call as
the agent API does (router, then the hub's CallControl.connect) with the WebRTC offer of a plain
aiortc peer on 127.0.0.1.

The caller presses the agent key, hears its place in line and the hold prompt; the agent takes the
call; a tone the caller sends is found at the agent's peer at its frequency, and the agent's tone by
the caller; the agent hangs up, the caller's line is released, and HQ's call record has the agent,
the time in queue and the talk time. Also: the caller hanging up while queued leaves HQ's queue
empty; and with HQ down the transfer takes its fallback at once."""

from __future__ import annotations

import asyncio
import contextlib
import json

import numpy as np
import pytest

from central_link.hq.agents import Role, State
from central_link.media.ice import IceConfig
from drivers.audiofile import write_wav
from node_agent.config import load
from node_agent.daemon import Node
from node_agent.prompts import PromptLibrary
from simulator.client import SimClient
from tests.central_link.harness import make_pki, start_hub, wait_for
from tests.central_link.peers import Agent, dominant, tone
from tests.ivr.harness import CACHE, WEEKDAY_10AM, script, wait_idle, write_config

WAIT = 20  # seconds for what takes well under one on an idle machine
WAITING = """
[prompts.hold]
en = "Please hold, an agent will be with you shortly."
cmn = "请稍候，坐席将尽快为您服务。"
[prompts.place]
en = "You are number {n} in line."
cmn = "您前面排在第{n}位。"
"""
HQ = """
[hq]
url = "wss://127.0.0.1:{port}/node"
cert = "{cert}"
key = "{key}"
ca = "{ca}"
hold_prompt = "hold"
hold_every_s = 1
position_prompt = "place"
announce_every_s = 5
queue_timeout_s = 3
[hq.ice]
networks = ["127.0.0.0/8"]
"""


@pytest.fixture
def sim(sim_factory):
    return sim_factory()


@contextlib.asynccontextmanager
async def forwarding_branch(sim, tmp_path, hub_port: int, pki):
    crt, key = pki.node("test-branch")
    path = write_config(tmp_path, sim.serial, lines=1)
    path.write_text(path.read_text() + WAITING + HQ.format(port=hub_port, cert=crt, key=key, ca=pki.ca[0]))
    cfg = load(path)
    node = Node(cfg, clock=lambda: WEEKDAY_10AM)
    node.prompts = node.ivr.prompts = PromptLibrary(cfg, cache_dir=CACHE)
    ready = asyncio.Event()
    task = asyncio.create_task(node.run(ready))
    client = None
    try:
        await asyncio.wait_for(ready.wait(), 60)
        client = await SimClient.parse(sim.control).connect()
        refs = {name: str(p) for name, p in node.prompts.export(tmp_path / "prompts", ["en"]).items()}
        for n in (1, 2):  # the position as the caller hears it, said with its number
            pcm = await asyncio.to_thread(node.prompts.spoken, "place", "en", n)
            refs[f"place{n}.en"] = str(write_wav(tmp_path / "prompts" / f"place{n}.en.wav", pcm))
        yield node, client, refs
    finally:
        if client is not None:
            await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def tone_wav(path, freq: int, seconds: float):
    return str(write_wav(path, tone(freq).read(int(8000 * seconds))))


async def test_a_caller_waits_at_the_branch_then_talks_to_an_agent_both_ways(sim, tmp_path):
    pki = make_pki(tmp_path / "certs", nodes=("test-branch",))
    hub = await start_hub(tmp_path, pki, nodes=("test-branch",))
    hub.router.login("alice", Role.AGENT)  # logged in, not ready: the call waits in line
    agent = Agent(IceConfig.loopback(), 1000)
    try:
        async with forwarding_branch(sim, tmp_path, hub.port, pki) as (node, client, refs):
            await wait_for(lambda: node.uplink.up, WAIT, "the node's link to HQ")
            heard, _ = await script(client, refs, [
                {"op": "ring", "cadence": [500, 500]},
                {"op": "listen", "until": "lang.en", "ms": 8000},
                {"op": "dtmf", "digits": "3"},
                {"op": "listen", "until": "main.en", "ms": 8000},
                {"op": "dtmf", "digits": "0"},  # an agent, please
                {"op": "listen", "until": "hold.en", "ms": 15000},
            ])
            assert heard[-2:] == ["place1.en", "hold.en"], heard  # its place in line, then the hold prompt
            (queued,) = hub.router.queue.waiting()
            assert (queued.node, queued.line, queued.language, queued.ivr_path) == \
                ("test-branch", 1, "en", ("language", "hours", "menu", "agent"))
            # the agent goes ready, is offered the call and answers it, as the agent API does
            hub.agent_api.changed(hub.router.ready("alice"))
            call = hub.router.answer("alice")
            answer = await hub.connect(call, "alice", await agent.offer())  # the CallControl the agent API holds
            await agent.accept_answer(answer)
            runner = node.runners[0]
            assert runner.current.transfer == "talking" and node._lines()[0].state == "talking"
            # the caller's tone at the agent; the agent's tone at the caller
            start = len(agent.heard)
            await client.call("play", line=1, wav=tone_wav(tmp_path / "600.wav", 600, 3), wait=False)
            caller = await client.call("listen", line=1, ms=1500)
            await wait_for(lambda: len(agent.heard) >= start + 100, WAIT, "2 s of the caller at the agent")
            got = agent.heard[start:]
            loud = [f for f in got if np.sqrt(np.mean(f.astype(float) ** 2)) > 500]
            assert len(loud) >= 50, "the caller's tone did not reach the agent"
            freq, purity = dominant(loud[-50:])
            assert abs(freq - 600) <= 10 and purity > 0.5, (freq, purity)
            assert caller["peak_hz"] and abs(caller["peak_hz"][0] - 1000) <= 15, caller
            assert caller["level_dbm0"] is not None and caller["level_dbm0"] > -25, caller
            # the agent hangs up: both legs end
            hub.agent_api.changed(hub.router.hang_up("alice"))
            await hub.hang_up(call, "alice")
            assert (await client.call("wait_onhook", line=1, timeout_ms=5000))["onhook"]
            await wait_idle(node)
            await wait_for(lambda: hub.store.items("call_record", "test-branch"), WAIT, "the call record at HQ")
        (rec,) = [r["payload"] for r in hub.store.items("call_record", "test-branch")]
        assert (rec["disposition"], rec["agent"]) == ("agent_hangup", "alice")
        assert rec["queue_ms"] > 500 and rec["talk_ms"] > 1500, rec
        assert json.loads(rec["ivr_path"])[-1] == "agent"
        assert hub.router.agent("alice").state == State.WRAP_UP and not hub.calls.talking
    finally:
        await agent.close()
        await hub.close()


async def test_a_caller_hanging_up_while_queued_leaves_hqs_queue(sim, tmp_path):
    pki = make_pki(tmp_path / "certs", nodes=("test-branch",))
    hub = await start_hub(tmp_path, pki, nodes=("test-branch",))
    hub.router.login("alice", Role.AGENT)
    try:
        async with forwarding_branch(sim, tmp_path, hub.port, pki) as (node, client, refs):
            await wait_for(lambda: node.uplink.up, WAIT, "the node's link to HQ")
            await script(client, refs, [
                {"op": "ring", "cadence": [500, 500]},
                {"op": "listen", "until": "lang.en", "ms": 8000},
                {"op": "dtmf", "digits": "3"},
                {"op": "listen", "until": "main.en", "ms": 8000},
                {"op": "dtmf", "digits": "0"},
                {"op": "listen", "until": "hold.en", "ms": 15000},
            ])
            assert len(hub.router.queue) == 1
            await client.call("hangup", line=1)
            await wait_for(lambda: len(hub.router.queue) == 0, WAIT, "the call to leave HQ's queue")
            await wait_idle(node)
            await wait_for(lambda: hub.store.items("call_record", "test-branch"), WAIT, "the call record at HQ")
        (rec,) = [r["payload"] for r in hub.store.items("call_record", "test-branch")]
        assert rec["disposition"] == "caller_hangup" and rec["agent"] == "" and rec["queue_ms"] > 0
    finally:
        await hub.close()


async def test_with_hq_down_the_transfer_takes_its_fallback(sim, tmp_path):
    pki = make_pki(tmp_path / "certs", nodes=("test-branch",))
    async with forwarding_branch(sim, tmp_path, 9, pki) as (node, client, refs):  # nothing listens on port 9
        heard, res = await script(client, refs, [
            {"op": "ring", "cadence": [500, 500]},
            {"op": "listen", "until": "lang.en", "ms": 8000},
            {"op": "dtmf", "digits": "3"},
            {"op": "listen", "until": "main.en", "ms": 8000},
            {"op": "dtmf", "digits": "0"},
            {"op": "listen", "until": "bye.en", "ms": 10000},
            {"op": "wait_onhook", "timeout_ms": 5000},
        ])
        await wait_idle(node)
    assert heard[-2:] == ["busy.en", "bye.en"] and res[-1]["onhook"]
