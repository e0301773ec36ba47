"""A transferred call at the node, against a stand-in for the uplink (what HQ sends is handed to the
forwarder as the uplink would): fallbacks when HQ cannot take the call, hold prompts and position
announcements, the callback key, the caller hanging up while queued, and an agent's call with real
media (a plain aiortc peer on 127.0.0.1) through the line, hung up by either side."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from central_link import protocol as p
from central_link.media.ice import IceConfig
from central_link.uplink import LinkDown
from drivers.dsp import ULAW
from drivers.dsp.receive import RxFrame
from hal import events as ev
from hal.audio import FRAME
from node_agent.config import Forwarding
from node_agent.forwarding import Capture, Forwarder
from tests.central_link.peers import Agent, dominant, tone
from tests.node.fakeline import ACCOUNT, CONFIG, PIN, FakeLine, FakePrompts, OneLineNode, until

WAIT = 10


class Prompts(FakePrompts):
    """Silent prompts of ``ms``, the position prompt as well."""

    def spoken(self, name: str, language: str, n: int) -> np.ndarray:
        return self.pcm


class ToneLine(FakeLine):
    """The fake line, with a caller who sends a tone to the forwarding tap every 20 ms and whose
    ear keeps what the node plays."""

    def __init__(self, freq: int = 600) -> None:
        super().__init__()
        self.rx_tap = None
        self.gen = tone(freq)
        self.heard: list[np.ndarray] = []

    async def _tick(self) -> None:
        t = time.monotonic()
        slot = 0
        while self._offhook:
            t += 0.02
            await asyncio.sleep(max(0.0, t - time.monotonic()))
            self.heard.append(self.audio.next_out().copy())
            pcm = self.gen.read(FRAME)
            if self.rx_tap is not None:
                self.rx_tap(RxFrame(slot * 20, pcm, False))
            self.audio.deliver(pcm)
            slot += 1


class FakeUplink:
    """What the forwarder needs of the uplink; HQ's answer to queue_call is ``answer`` (or LinkDown)."""

    def __init__(self, answer: p.Message | None) -> None:
        self.answer = answer
        self.up = True
        self.sent: list[p.Message] = []

    async def queue_call(self, msg, timeout):
        self.sent.append(msg)
        if self.answer == "never":  # HQ is slow to answer
            await asyncio.Event().wait()
        if self.answer is None:
            raise LinkDown("HQ did not answer queue_call")
        return self.answer

    async def send(self, msg):
        msg.to_json()  # the protocol's checks, as the real uplink runs them
        self.sent.append(msg)

    def of(self, kind):
        return [m for m in self.sent if isinstance(m, kind)]


def make(tmp_path, answer, **settings) -> tuple[OneLineNode, Forwarder, FakeUplink]:
    node = OneLineNode(tmp_path)
    node.ivr.prompts = Prompts(200)
    node.line = ToneLine()
    node.runner.line = node.line
    base = dict(hold_prompt="info", hold_every_s=0.5, position_prompt="code", announce_every_s=0.6)
    fwd = Forwarder(Forwarding(**(base | settings)), lambda: ULAW)
    fwd.ice = IceConfig.loopback()
    link = FakeUplink(answer)
    fwd.link = link
    node.ivr.forwarder = fwd
    return node, fwd, link


async def to_transfer(node: OneLineNode) -> object:
    node.start()
    node.line.emit(ev.Ring(1, 1))
    await until(lambda: node.runner.current is not None, WAIT, "the call was answered")
    node.keys("36")  # English, then "an agent"
    return node.runner.current


@pytest.mark.parametrize("answer,up", [(None, True), (p.QueueRefused("x", "no_agents"), True), (None, False)],
                         ids=["no answer", "refused", "link down"])
async def test_a_call_hq_cannot_take_goes_to_the_transfers_fallback(tmp_path, answer, up):
    node, fwd, link = make(tmp_path, answer)
    link.up = up
    try:
        await to_transfer(node)
        await until(lambda: node.records() and node.records()[-1]["ended"], WAIT, "the call to end")
        rec = node.records()[-1]
        assert rec["disposition"] == "transfer_fallback" and rec["ended_in"] == "bye"
        assert rec["agent"] in ("", None) and rec["queue_ms"] is None
        assert len(link.of(p.QueueCall)) == (1 if up else 0) and not link.of(p.QueueLeave)
    finally:
        await node.stop()


async def test_the_waiting_caller_hears_hold_and_positions_and_hanging_up_leaves_the_queue(tmp_path):
    node, fwd, link = make(tmp_path, p.Queued("x", 2))
    try:
        call = await to_transfer(node)
        await until(lambda: call.transfer == "queued", WAIT, "the call queued")
        (ask,) = link.of(p.QueueCall)
        assert (ask.call, ask.line, ask.ivr_path, ask.language, ask.auth, ask.account) == \
            (call.call_id, 1, ["lang", "hours", "menu", "agent"], "en", "none", "")
        await until(lambda: "code:2" in call.heard and "info" in call.heard[call.heard.index("code:2"):], WAIT,
                    "the position, then the hold prompt")
        fwd.received(p.QueuePosition(call.call_id, 1))
        await until(lambda: "code:1" in call.heard, WAIT, "the new position announced")
        assert node.runner.state == "ivr" and not link.of(p.QueueLeave)
        node.line.emit(ev.HungUp(1, "loop_drop"))
        await until(lambda: link.of(p.QueueLeave), WAIT, "queue_leave")
        assert link.of(p.QueueLeave) == [p.QueueLeave(call.call_id, "caller_hangup")]
        await until(lambda: node.records()[-1]["ended"], WAIT, "the record closed")
        rec = node.records()[-1]
        assert rec["disposition"] == "caller_hangup" and rec["queue_ms"] >= 500
    finally:
        await node.stop()


AUTH_THEN_AGENT = CONFIG.replace('next = "bye"\non_fail = "bye"\n[flows.main.nodes.message]',
                                 'next = "agent"\non_fail = "bye"\n[flows.main.nodes.message]')


@pytest.mark.parametrize("account_class", ["vip", ""])
async def test_a_caller_verified_in_the_ivr_is_queued_with_the_account_and_its_class(tmp_path, account_class):
    assert AUTH_THEN_AGENT != CONFIG
    (tmp_path / "branch.toml").write_text(AUTH_THEN_AGENT, encoding="utf-8")
    node, fwd, link = make(tmp_path, p.Queued("x", 1))
    node.auth.add_account(ACCOUNT, PIN, account_class=account_class)
    try:
        node.start()
        node.line.emit(ev.Ring(1, 1))
        await until(lambda: node.runner.current is not None, WAIT, "the call was answered")
        call = node.runner.current
        node.keys("31")  # English, then "authenticate"
        await until(lambda: call.path[-1:] == ["auth"] and call.doing == "keys", WAIT, "the account is asked")
        node.keys(f"{ACCOUNT}#{PIN}#")
        await until(lambda: link.of(p.QueueCall), WAIT, "the verified caller queued at HQ")
        (ask,) = link.of(p.QueueCall)
        assert (ask.auth, ask.account, ask.account_class) == ("verified", ACCOUNT, account_class)
        assert PIN not in ask.to_json()
    finally:
        await node.stop()


async def test_the_callback_key_leaves_the_queue_and_leaves_a_number(tmp_path):
    node, fwd, link = make(tmp_path, p.Queued("x", 3), callback_key="9", callback_prompt="cbnum",
                           callback_confirm_prompt="cbok")
    try:
        call = await to_transfer(node)
        await until(lambda: "info" in call.heard, WAIT, "the hold prompt")
        node.keys("9")
        await until(lambda: link.of(p.QueueLeave), WAIT, "queue_leave")
        assert link.of(p.QueueLeave) == [p.QueueLeave(call.call_id, "callback")]
        await until(lambda: call.heard[-1:] == ["cbnum"], WAIT, "the number asked for")
        node.keys("13800138000#")
        await until(lambda: node.records() and node.records()[-1]["ended"], WAIT, "the call to end")
        assert node.records()[-1]["disposition"] == "callback_left" and "cbok" in call.heard
        items = node.store.outbox_pending(10)
        assert [(i.kind, i.payload) for i in items if i.kind == "callback"] == \
            [("callback", {"call_id": call.call_id, "number": "13800138000"})]
    finally:
        await node.stop()


async def test_hanging_up_while_hq_is_queuing_the_call_leaves_the_queue(tmp_path):
    node, fwd, link = make(tmp_path, "never")
    try:
        call = await to_transfer(node)
        await until(lambda: link.of(p.QueueCall), WAIT, "queue_call")
        node.line.emit(ev.HungUp(1, "loop_drop"))
        await until(lambda: link.of(p.QueueLeave), WAIT, "queue_leave")
        assert link.of(p.QueueLeave) == [p.QueueLeave(call.call_id, "caller_hangup")]  # HQ may have queued it
    finally:
        await node.stop()


async def test_no_agent_within_max_wait_leaves_the_queue_for_the_fallback(tmp_path):
    node, fwd, link = make(tmp_path, p.Queued("x", 1), max_wait_s=0.5)
    try:
        await to_transfer(node)
        await until(lambda: node.records() and node.records()[-1]["ended"], WAIT, "the call to end")
        assert [m.reason for m in link.of(p.QueueLeave)] == ["timeout"]
        assert node.records()[-1]["disposition"] == "transfer_fallback"
    finally:
        await node.stop()


async def test_the_link_lost_while_waiting_takes_the_fallback(tmp_path):
    node, fwd, link = make(tmp_path, p.Queued("x", 1))
    try:
        call = await to_transfer(node)
        await until(lambda: call.transfer == "queued", WAIT, "the call queued")
        fwd.link_changed(False)
        await until(lambda: node.records()[-1]["ended"], WAIT, "the call to end")
        assert node.records()[-1]["disposition"] == "transfer_fallback" and not link.of(p.QueueLeave)
    finally:
        await node.stop()


async def talking(node, fwd, link, agent: Agent):
    call = await to_transfer(node)
    await until(lambda: call.transfer == "queued", WAIT, "the call queued")
    fwd.received(p.Connect(call.call_id, "alice", await agent.offer()))
    await until(lambda: link.of(p.MediaAnswer), WAIT, "the node's answer")
    await agent.accept_answer(link.of(p.MediaAnswer)[0].sdp)
    return call


async def test_an_agents_call_carries_audio_both_ways_and_the_agent_hanging_up_ends_it(tmp_path):
    node, fwd, link = make(tmp_path, p.Queued("x", 1))
    agent = Agent(IceConfig.loopback(), 1000)
    seen: list[np.ndarray] = []

    class Spy:  # the one caller -> agent filter of the call: sees every slot
        def process(self, frame):
            seen.append(frame)
            return frame

    fwd.filters = lambda call: Spy()
    try:
        call = await talking(node, fwd, link, agent)
        assert call.transfer == "talking" and call.agent == "alice"
        start = len(node.line.heard)
        await until(lambda: len(agent.heard) >= 60 and len(node.line.heard) >= start + 60, WAIT, "a second of audio")
        freq, purity = dominant(agent.heard[-40:])
        assert abs(freq - 600) <= 10 and purity > 0.6, (freq, purity)  # the caller's tone, at the agent
        freq, purity = dominant(node.line.heard[-40:])
        assert abs(freq - 1000) <= 10 and purity > 0.6, (freq, purity)  # the agent's, to the caller
        assert len(seen) >= 50
        fwd.received(p.HangUp(call.call_id))
        await until(lambda: node.records()[-1]["ended"], WAIT, "the call to end")
        rec = node.records()[-1]
        assert (rec["disposition"], rec["agent"]) == ("agent_hangup", "alice")
        assert rec["queue_ms"] >= 0 and rec["talk_ms"] >= 1000
        assert link.of(p.CallEnded) == [p.CallEnded(call.call_id, "agent", "the agent hung up")]
        await until(lambda: node.line.released_at is not None, WAIT, "the caller's line released")
    finally:
        await agent.close()
        await node.stop()


async def test_the_caller_hanging_up_while_talking_ends_the_agents_leg(tmp_path):
    node, fwd, link = make(tmp_path, p.Queued("x", 1))
    agent = Agent(IceConfig.loopback(), 1000)
    try:
        call = await talking(node, fwd, link, agent)
        await until(lambda: len(agent.heard) >= 10, WAIT, "audio at the agent")
        node.line.emit(ev.HungUp(1, "loop_drop"))
        await until(lambda: link.of(p.CallEnded), WAIT, "call_ended")
        assert link.of(p.CallEnded) == [p.CallEnded(call.call_id, "caller", "the caller hung up")]
        await until(lambda: node.records()[-1]["ended"], WAIT, "the record closed")
        assert node.records()[-1]["disposition"] == "caller_hangup" and node.records()[-1]["agent"] == "alice"
    finally:
        await agent.close()
        await node.stop()


@pytest.mark.parametrize("hang_up", [True, False], ids=["agent hung up", "media lost"])
async def test_media_that_ends_is_the_agent_hanging_up_when_hq_says_so_else_lost(tmp_path, hang_up):
    node, fwd, link = make(tmp_path, p.Queued("x", 1))
    agent = Agent(IceConfig.loopback(), 1000)
    try:
        call = await talking(node, fwd, link, agent)
        await until(lambda: len(agent.heard) >= 10, WAIT, "audio at the agent")
        await agent.close()  # the browser closes its peer connection first ...
        if hang_up:
            fwd.received(p.HangUp(call.call_id))  # ... and HQ's hang_up follows
        await until(lambda: link.of(p.CallEnded), WAIT, "call_ended")
        by = "agent" if hang_up else "node"
        assert link.of(p.CallEnded)[0].by == by
        await until(lambda: node.records()[-1]["ended"], WAIT, "the record closed")
        assert node.records()[-1]["disposition"] == ("agent_hangup" if hang_up else "media_lost")
    finally:
        await agent.close()
        await node.stop()


async def test_verify_is_handed_to_the_nodes_capture_or_answered_unavailable(tmp_path):
    node, fwd, link = make(tmp_path, p.Queued("x", 1))
    agent = Agent(IceConfig.loopback(), 1000)
    ran: list[Capture] = []

    async def capture(cap: Capture) -> None:
        ran.append(cap)
        cap.session.mute()
        cap.progress("pin", 2, "keying")
        cap.call.line.audio.clear()
        frames = cap.call.line.audio.frames_out
        await until(lambda: cap.call.line.audio.frames_out > frames + 10, WAIT, "the line's clock")
        assert not cap.call.line.audio.playing  # the agent's audio is not queued to the line meanwhile
        cmd = await cap.commands.get()
        if isinstance(cmd, p.VerifyAgain):
            cap.result("failed", "")
            cap.end_call()
            return
        assert isinstance(cmd, p.VerifyCancel)
        cap.result("cancelled", "")

    try:
        call = await talking(node, fwd, link, agent)
        fwd.received(p.Verify(call.call_id, "cap-1", ["pin"]))
        await until(lambda: link.of(p.VerifyResult), WAIT, "the answer")
        assert link.of(p.VerifyResult) == [p.VerifyResult(call.call_id, "cap-1", "unavailable")]  # no capture here
        fwd.captures = capture
        fwd.received(p.Verify(call.call_id, "cap-2", ["pin"]))
        await until(lambda: link.of(p.VerifyProgress), WAIT, "progress")
        assert ran and ran[0].session.muted
        assert link.of(p.VerifyProgress) == [p.VerifyProgress(call.call_id, "cap-2", "pin", 2, "keying")]
        fwd.received(p.VerifyCancel(call.call_id, "cap-2"))
        await until(lambda: len(link.of(p.VerifyResult)) == 2, WAIT, "the cancel's result")
        assert link.of(p.VerifyResult)[-1] == p.VerifyResult(call.call_id, "cap-2", "cancelled")
        await until(lambda: not ran[0].session.muted, WAIT, "the caller heard again")
        await until(lambda: node.line.audio.playing, WAIT, "the agent heard on the line again")
        assert ran[0].filter is not None and ran[0].ivr is node.ivr
        # a capture whose rule ends the call (three failures)
        fwd.received(p.Verify(call.call_id, "cap-3", ["pin"]))
        await until(lambda: len(link.of(p.VerifyProgress)) == 2, WAIT, "the third capture's progress")
        fwd.received(p.VerifyAgain(call.call_id, "cap-3", "pin"))
        await until(lambda: link.of(p.CallEnded), WAIT, "the call to end")
        assert link.of(p.VerifyResult)[-1] == p.VerifyResult(call.call_id, "cap-3", "failed")
        assert link.of(p.CallEnded)[0].by == "node"
        await until(lambda: node.records()[-1]["ended"], WAIT, "the record closed")
        assert node.records()[-1]["disposition"] == "verify_failed"
    finally:
        await agent.close()
        await node.stop()


async def test_hq_messages_for_a_call_the_node_does_not_have_are_answered(tmp_path):
    node, fwd, link = make(tmp_path, p.Queued("x", 1))
    try:
        fwd.received(p.Connect("gone", "alice", "v=0"))
        fwd.received(p.Verify("gone", "cap", ["pin"]))
        fwd.received(p.HangUp("gone"))
        await until(lambda: len(link.sent) == 3, WAIT, "three answers")
        assert link.of(p.ConnectFailed)[0].call == "gone" and link.of(p.VerifyResult)[0].outcome == "unavailable"
        assert link.of(p.CallEnded)[0].by == "node"
    finally:
        await node.stop()
