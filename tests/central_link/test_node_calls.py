"""The hub's side of forwarded calls against real uplinks over mutual TLS on 127.0.0.1: queue_call
into the router and its answers, positions pushed as the line moves, CallControl relayed to the
node and answered, the node's reports passed to the agent side, and a node that goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from central_link import protocol as p
from central_link.hq.agents import Role, State
from central_link.hq.call_control import CallGone
from central_link.uplink import LinkDown

from .harness import MemoryOutbox, node_context, start_hub, uplink, wait_for

WAIT = 10


class Node:
    """A node's live side as the uplink drives it: it records what HQ sends and answers as a node
    would (``answers`` chooses: connect -> media_answer or connect_failed)."""

    def __init__(self) -> None:
        self.got: list[p.Message] = []
        self.links: list[bool] = []
        self.up = None
        self.connect_fails = False

    def received(self, msg: p.Message) -> None:
        self.got.append(msg)
        reply = None
        if isinstance(msg, p.Connect):
            reply = (p.ConnectFailed(msg.call, "the caller hung up") if self.connect_fails
                     else p.MediaAnswer(msg.call, f"answer to {msg.sdp}"))
        elif isinstance(msg, p.HangUp):
            reply = p.CallEnded(msg.call, "agent", "the agent hung up")
        elif isinstance(msg, p.Verify):
            reply = p.VerifyProgress(msg.call, msg.capture, msg.fields[0], 0, "started")
        elif isinstance(msg, p.VerifyCancel):
            reply = p.VerifyResult(msg.call, msg.capture, "cancelled")
        if reply is not None:
            asyncio.ensure_future(self.up.send(reply))

    def link_changed(self, up: bool) -> None:
        self.links.append(up)

    def positions(self, call: str) -> list[int]:
        return [m.position for m in self.got if isinstance(m, p.QueuePosition) and m.call == call]


class Events:
    """The agent API's AgentEvents, recorded."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, str, str]] = []
        self.notified: list[tuple[str, dict]] = []

    def node_ended(self, call_id: str, by: str, reason: str) -> None:
        self.ended.append((call_id, by, reason))

    def notify_call(self, call_id: str, event: dict) -> None:
        self.notified.append((call_id, event))


@contextlib.asynccontextmanager
async def deployment(tmp_path, pki, nodes=("node-a", "node-b")):
    hub = await start_hub(tmp_path, pki, nodes)
    events = Events()
    hub.calls.events = events
    url = f"wss://127.0.0.1:{hub.port}/node"
    ends, tasks = {}, []
    for n in nodes:
        end = Node()
        end.up = uplink(url, node_context(pki, n), n, MemoryOutbox(), handler=end)
        ends[n] = end
        end.task = asyncio.create_task(end.up.run())
        tasks.append(end.task)
    try:
        await wait_for(lambda: all(e.up.up for e in ends.values()), WAIT, "the nodes to be welcomed")
        yield hub, ends, events
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await hub.close()


def agent_does(hub, fn, *args):
    """What the agent API does for an agent's request: the router event, then its changed()."""
    result = fn(*args)
    hub.agent_api.changed(result if isinstance(result, list) else [])
    return result


def call(n: str, **kw) -> p.QueueCall:
    return p.QueueCall(n, 1, "13800138000", ["language", "menu", "agent"], "en", **kw)


async def test_no_agent_logged_in_is_refused_then_calls_queue_with_positions_pushed(tmp_path, pki):
    async with deployment(tmp_path, pki) as (hub, nodes, _events):
        a, b = nodes["node-a"], nodes["node-b"]
        assert await a.up.queue_call(call("c1"), WAIT) == p.QueueRefused("c1", "no_agents")
        agent_does(hub, hub.router.login, "alice", Role.AGENT)  # logged in, not ready: calls wait
        assert await a.up.queue_call(call("c1"), WAIT) == p.Queued("c1", 1)
        assert await b.up.queue_call(call("c2"), WAIT) == p.Queued("c2", 2)
        assert await a.up.queue_call(call("c3", auth="verified", account="1000001", account_class="vip"),
                                     WAIT) == p.Queued("c3", 3)
        queued = hub.router.queue.get("node-a:c3")
        assert (queued.node, queued.line, queued.caller_id, queued.ivr_path, queued.account,
                queued.account_class) == ("node-a", 1, "13800138000", ("language", "menu", "agent"), "1000001", "vip")
        assert a.positions("c1") == b.positions("c2") == []  # nothing moved yet
        agent_does(hub, hub.router.ready, "alice")  # c1 is offered: everyone behind it moves up
        await wait_for(lambda: a.positions("c3") == [2] and b.positions("c2") == [1] and a.positions("c1") == [0],
                       WAIT, "the positions after the offer")
        agent_does(hub, hub.router.not_ready, "alice", "break")  # the offer is withdrawn: back to the head
        await wait_for(lambda: a.positions("c3") == [2, 3] and b.positions("c2") == [1, 2], WAIT,
                       "the positions after the offer went back")
        assert a.positions("c1") == [0, 1]
        # the caller on c1 hangs up: queue_leave; c2 and c3 move up
        await a.up.send(p.QueueLeave("c1", "caller_hangup"))
        await wait_for(lambda: b.positions("c2")[-1:] == [1] and a.positions("c3")[-1:] == [2], WAIT,
                       "the positions after c1 left")
        assert "node-a:c1" not in hub.router.queue and len(hub.router.queue) == 2


async def test_an_answered_call_is_connected_verified_and_hung_up_through_the_node(tmp_path, pki):
    async with deployment(tmp_path, pki) as (hub, nodes, events):
        a = nodes["node-a"]
        agent_does(hub, hub.router.login, "alice", Role.AGENT)
        agent_does(hub, hub.router.ready, "alice")
        assert await a.up.queue_call(call("c1"), WAIT) == p.Queued("c1", 0)  # offered at once
        taken = hub.router.answer("alice")
        assert await hub.connect(taken, "alice", "offer-sdp") == "answer to offer-sdp"  # the hub is the CallControl
        assert [m for m in a.got if isinstance(m, p.Connect)] == [p.Connect("c1", "alice", "offer-sdp")]
        await hub.calls.verify(taken, "alice", "cap-1", ("account", "pin"))
        assert events.notified[-1] == ("node-a:c1", {"type": "verify_progress", "capture": "cap-1",
                                                     "field": "account", "keyed": 0, "state": "started"})
        await a.up.send(p.VerifyProgress("c1", "cap-1", "pin", 4, "keying"))
        await a.up.send(p.VerifyResult("c1", "cap-1", "verified", "1000001"))
        await wait_for(lambda: events.notified[-1][1]["type"] == "verify_result", WAIT, "the capture's outcome")
        assert events.notified[-2:] == [
            ("node-a:c1", {"type": "verify_progress", "capture": "cap-1", "field": "pin", "keyed": 4,
                           "state": "keying"}),
            ("node-a:c1", {"type": "verify_result", "capture": "cap-1", "outcome": "verified",
                           "account": "1000001"})]
        await hub.calls.verify_cancel(taken, "cap-2")
        await hub.calls.hang_up(taken, "alice")
        assert p.HangUp("c1") in a.got
        assert events.ended == []  # the agent hung up itself: the node's call_ended is no news to it
        with pytest.raises(CallGone):
            await hub.calls.verify(taken, "alice", "cap-3", ("pin",))


async def test_the_caller_hanging_up_while_talking_ends_the_agents_side(tmp_path, pki):
    async with deployment(tmp_path, pki) as (hub, nodes, events):
        a = nodes["node-a"]
        agent_does(hub, hub.router.login, "alice", Role.AGENT)
        agent_does(hub, hub.router.ready, "alice")
        await a.up.queue_call(call("c1"), WAIT)
        taken = hub.router.answer("alice")
        await hub.calls.connect(taken, "alice", "offer")
        await a.up.send(p.CallEnded("c1", "caller", "hung up"))
        await wait_for(lambda: events.ended, WAIT, "node_ended")
        assert events.ended == [("node-a:c1", "caller", "hung up")]
        assert "node-a:c1" not in hub.calls.talking


async def test_a_node_that_cannot_connect_raises_call_gone(tmp_path, pki):
    async with deployment(tmp_path, pki) as (hub, nodes, _events):
        a = nodes["node-a"]
        a.connect_fails = True
        agent_does(hub, hub.router.login, "alice", Role.AGENT)
        agent_does(hub, hub.router.ready, "alice")
        await a.up.queue_call(call("c1"), WAIT)
        with pytest.raises(CallGone, match="the caller hung up"):
            await hub.calls.connect(hub.router.answer("alice"), "alice", "offer")


async def test_a_node_going_away_abandons_its_waiting_calls_and_ends_its_talking_ones(tmp_path, pki):
    async with deployment(tmp_path, pki) as (hub, nodes, events):
        a, b = nodes["node-a"], nodes["node-b"]
        agent_does(hub, hub.router.login, "alice", Role.AGENT)
        agent_does(hub, hub.router.login, "bob", Role.AGENT)
        agent_does(hub, hub.router.ready, "alice")
        await a.up.queue_call(call("talk"), WAIT)
        await hub.calls.connect(hub.router.answer("alice"), "alice", "offer")
        agent_does(hub, hub.router.ready, "bob")
        await a.up.queue_call(call("offered"), WAIT)  # rings bob
        await a.up.queue_call(call("waiting"), WAIT)
        await b.up.queue_call(call("other"), WAIT)
        assert hub.router.agent("bob").state == State.OFFERED
        a.task.cancel()  # node-a stops: its WebSocket closes
        await wait_for(lambda: ("node-a:talk", "node", "the branch's link to HQ went down") in events.ended, WAIT,
                       "the talking call to end")
        assert "node-a:offered" not in hub.router.queue and "node-a:waiting" not in hub.router.queue
        assert a.links == [True, False]
        bob = hub.router.agent("bob")
        assert (bob.state, bob.call) == (State.OFFERED, "node-b:other")  # the next call, from the node still here


async def test_a_bad_live_message_is_answered_with_an_error_and_the_link_survives(tmp_path, pki, hub_log):
    async with deployment(tmp_path, pki, nodes=("node-a",)) as (hub, nodes, _events):
        a = nodes["node-a"]
        ws = a.up._link.ws
        await ws.send_str('{"v":1,"type":"queue_call","call":"c1","line":1,"caller":"1","auth":"none",'
                          '"account":"482913"}')
        await ws.send_str(p.Connect("c1", "alice", "x").to_json())  # the hub's message, sent to it
        await wait_for(lambda: hub.counters.errors_sent >= 2, WAIT, "two errors")
        agent_does(hub, hub.router.login, "alice", Role.AGENT)
        assert await a.up.queue_call(call("c2"), WAIT) == p.Queued("c2", 1)  # the same connection
        assert not any("482913" in line for line in hub_log.lines)
        assert len(hub.router.queue) == 1


async def test_queue_call_fails_fast_while_the_link_is_down(tmp_path, pki):
    up = uplink("wss://127.0.0.1:9/node", node_context(pki, "node-a"), "node-a", MemoryOutbox(), handler=Node())
    with pytest.raises(LinkDown, match="not connected"):
        await asyncio.wait_for(up.queue_call(call("c1"), WAIT), 0.5)
    assert json.loads(call("c1").to_json())["type"] == "queue_call"


async def test_a_full_queue_and_a_closing_hub_refuse_with_their_reason(tmp_path, pki):
    async with deployment(tmp_path, pki, nodes=("node-a",)) as (hub, nodes, _events):
        a = nodes["node-a"]
        agent_does(hub, hub.router.login, "alice", Role.AGENT)
        hub.calls.max_waiting = 1
        assert await a.up.queue_call(call("c1"), WAIT) == p.Queued("c1", 1)
        assert await a.up.queue_call(call("c2"), WAIT) == p.QueueRefused("c2", "full")
        hub.calls.closing = True
        await a.up.send(p.QueueLeave("c1", "callback"))
        assert await a.up.queue_call(call("c3"), WAIT) == p.QueueRefused("c3", "closed")
        assert len(hub.router.queue) == 0


async def test_queue_call_fails_when_hq_does_not_answer_in_time_or_the_link_breaks(tmp_path, pki):
    async with deployment(tmp_path, pki, nodes=("node-a",)) as (hub, nodes, _events):
        a = nodes["node-a"]
        stuck, release = asyncio.Event(), asyncio.Event()

        async def never(node, msg):  # a hub busy elsewhere: no answer comes (until the test ends)
            stuck.set()
            await release.wait()

        hub.calls.on_message = never
        with pytest.raises(LinkDown, match="did not answer queue_call within 0.3 s"):
            await a.up.queue_call(call("c1"), 0.3)
        waiting = asyncio.ensure_future(a.up.queue_call(call("c2"), WAIT))
        await wait_for(lambda: stuck.is_set(), WAIT, "the hub to get it")
        await a.up._link.ws.close()  # the link breaks while the node waits
        with pytest.raises(LinkDown, match="went down before it answered"):
            await asyncio.wait_for(waiting, WAIT)
        assert a.links[-1] is False
        release.set()
