"""The console's routes through aiohttp's test client, with a scripted node (a CallControl that
records what it was asked): answer hands the browser's offer to the node and returns its answer;
a call that cannot be connected frees the agent at once; hang-up reaches the node; the event
socket pushes offers with their screen pop, withdrawals, the node's hang-up and the capture's
progress as counts; and nothing a node reports with digits in it reaches the agent."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from central_link.hq.call_control import CallGone
from central_link.hq.queue import Auth, CallQueue, QueuedCall
from central_link.hq.routing import Router, RoutingConfig
from central_link.hq.store import HubStore
from central_link.hq.web import COOKIE, AgentApi
from tests.central_link.harness import wait_for

PW = "alice-secret-1"
OFFER = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=browser\r\n"
ANSWER = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=node\r\n"
WAIT = 5.0


class Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


class Node:
    """What the agent API asked of the calls' nodes, in order; ``connect`` does what ``answer_with`` says."""

    def __init__(self) -> None:
        self.asked: list[tuple] = []
        self.answer_with: object = ANSWER  # an SDP, an exception to raise, or an Event to wait for
        self.hang_up_raises: Exception | None = None

    async def connect(self, call, agent, offer_sdp):
        self.asked.append(("connect", call.id, agent, offer_sdp))
        if isinstance(self.answer_with, asyncio.Event):
            await self.answer_with.wait()
            return ANSWER
        if isinstance(self.answer_with, Exception):
            raise self.answer_with
        return self.answer_with

    async def hang_up(self, call, agent):
        self.asked.append(("hang_up", call.id, agent))
        if self.hang_up_raises:
            raise self.hang_up_raises

    async def verify(self, call, agent, capture, fields):
        self.asked.append(("verify", call.id, agent, capture, fields))

    async def verify_cancel(self, call, capture):
        self.asked.append(("verify_cancel", call.id, capture))

    async def verify_again(self, call, capture, field):
        self.asked.append(("verify_again", call.id, capture, field))


@pytest.fixture
async def hq(tmp_path):
    store = HubStore(tmp_path / "hq.db")
    store.add_agent("alice", "agent", PW)
    clock = Clock()
    router = Router(CallQueue(), clock, RoutingConfig(offer_timeout_s=60, wrap_up_s=30, max_no_answer=3))

    async def db(fn, *args):
        return fn(*args)

    node = Node()
    api = AgentApi(store, router, db, calls=node)
    app = web.Application()
    api.add_routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, api, node, clock
    api.close()
    await client.close()
    store.close()


async def ready_agent(client) -> dict[str, str]:
    r = await client.post("/agent/login", json={"name": "alice", "password": PW})
    cookie = {"Cookie": f"{COOKIE}={r.cookies[COOKIE].value}"}
    assert (await client.post("/agent/status", json={"status": "ready"}, headers=cookie)).status == 200
    return cookie


def queue_call(api: AgentApi, call_id: str = "c1", **kw) -> None:
    kw = {"node": "sz-futian-01", "line": 3, "caller_id": "+8675512345", "ivr_path": ("main", "cards"),
          "language": "zh"} | kw
    api.changed(api.router.enqueue(QueuedCall(call_id, **kw)))


class Events:
    """The agent's event socket, read in the background."""

    def __init__(self, ws) -> None:
        self.ws, self.got = ws, []
        self.closed: int | None = None
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.got.append(json.loads(msg.data))
        self.closed = self.ws.close_code

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.got if e["type"] == kind]

    async def wait(self, kind: str, n: int = 1) -> dict:
        await wait_for(lambda: len(self.of(kind)) >= n, WAIT, f"{n} {kind} event(s)")
        return self.of(kind)[n - 1]


async def events(client, cookie) -> Events:
    ev = Events(await client.ws_connect("/agent/events", headers=cookie))
    await ev.wait("status")  # the first frame is always the agent's view now
    return ev


async def answered(client, api, cookie) -> dict:
    queue_call(api)
    r = await client.post("/agent/answer", json={"sdp": OFFER}, headers=cookie)
    assert r.status == 200, await r.text()
    return await r.json()


async def test_answer_hands_the_browsers_offer_to_the_node_and_returns_its_answer(hq):
    client, api, node, clock = hq
    cookie = await ready_agent(client)
    r = await client.post("/agent/answer", json={}, headers=cookie)
    assert r.status == 400 and "the browser's WebRTC offer" in (await r.json())["error"]
    r = await client.post("/agent/answer", json={"sdp": OFFER}, headers=cookie)
    assert r.status == 409 and "no call offered" in (await r.json())["error"]
    queue_call(api)
    clock.t += 7
    r = await client.post("/agent/answer", json={"sdp": OFFER}, headers=cookie)
    body = await r.json()
    assert r.status == 200 and body["sdp"] == ANSWER and body["state"] == "talking"
    assert body["talking"] | {"waited_s": None} == {
        "id": "c1", "node": "sz-futian-01", "line": 3, "caller_id": "+8675512345", "ivr_path": ["main", "cards"],
        "language": "zh", "auth": "none", "account": None, "account_class": None, "priority": 0,
        "waited_s": None}
    assert body["talking"]["waited_s"] == 7.0
    assert node.asked == [("connect", "c1", "alice", OFFER)]


@pytest.mark.parametrize(("fails", "status", "words"), [
    (CallGone("the caller hung up"), 409, "the call could not be connected: the caller hung up"),
    (TimeoutError(), 504, "the branch did not answer within 0 s: the call was ended"),
    (RuntimeError("bug"), 502, "the call could not be connected (RuntimeError)"),
])
async def test_a_call_that_cannot_be_connected_frees_the_agent_at_once(hq, fails, status, words):
    client, api, node, _ = hq
    api.connect_timeout_s = 0.2
    cookie = await ready_agent(client)
    node.answer_with = asyncio.Event() if isinstance(fails, TimeoutError) else fails  # a node that never answers
    queue_call(api)
    r = await client.post("/agent/answer", json={"sdp": OFFER}, headers=cookie)
    assert r.status == status and words in (await r.json())["error"]
    me = await (await client.get("/agent/me", headers=cookie)).json()
    assert (me["status"], me["state"], me["call"]) == ("ready", "idle", None)  # no talk: nothing to wrap up
    assert ("hang_up", "c1", "alice") in node.asked or status != 504  # a node too slow is told to end the call
    assert "c1" not in api.router.queue


async def test_the_caller_hanging_up_while_connecting_is_answered_409(hq):
    client, api, node, _ = hq
    cookie = await ready_agent(client)
    node.answer_with = asyncio.Event()
    queue_call(api)
    answering = asyncio.ensure_future(client.post("/agent/answer", json={"sdp": OFFER}, headers=cookie))
    await wait_for(lambda: node.asked, WAIT, "the node asked to connect")
    api.node_ended("c1", "caller", "the caller hung up")
    node.answer_with.set()
    r = await answering
    assert r.status == 409 and "ended while it was being connected" in (await r.json())["error"]
    assert api.router.agent("alice").state == "wrap_up"


async def test_hang_up_reaches_the_node_and_the_agent_wraps_up_whatever_the_node_says(hq):
    client, api, node, _ = hq
    cookie = await ready_agent(client)
    await answered(client, api, cookie)
    node.hang_up_raises = CallGone("node sz-futian-01 is not connected")
    r = await client.post("/agent/hangup", json={}, headers=cookie)
    body = await r.json()
    assert r.status == 200 and body["state"] == "wrap_up" and body["wrap_up_remaining_s"] == 30.0
    assert body["talking"]["id"] == "c1"  # the screen pop stays for the wrap-up
    assert node.asked[-1] == ("hang_up", "c1", "alice")
    assert (await client.post("/agent/hangup", json={}, headers=cookie)).status == 409


async def test_events_offer_with_its_pop_withdrawal_and_the_node_ending_the_call(hq):
    client, api, node, clock = hq
    cookie = await ready_agent(client)
    ev = await events(client, cookie)
    assert ev.got[0]["status"] == "ready" and ev.got[0]["state"] == "idle"
    queue_call(api, "c1")
    offer = await ev.wait("offer")
    assert offer["call"] == "c1" and offer["pop"]["caller_id"] == "+8675512345"
    assert offer["pop"]["ivr_path"] == ["main", "cards"] and offer["pop"]["line"] == 3
    assert ev.of("status")[-1]["state"] == "offered" and ev.of("status")[-1]["offered"]["id"] == "c1"
    clock.t += 61
    api.changed(api.router.tick())  # what the hub's timer does at the deadline
    gone = await ev.wait("offer_withdrawn")
    assert gone == {"type": "offer_withdrawn", "call": "c1", "reason": "rang out: not answered in time"}
    again = await ev.wait("offer", 2)  # the only agent: offered again
    assert again["call"] == "c1"
    assert (await client.post("/agent/answer", json={"sdp": OFFER}, headers=cookie)).status == 200
    await wait_for(lambda: ev.of("status")[-1]["state"] == "talking", WAIT, "talking")
    assert ev.of("status")[-1]["talking"]["id"] == "c1"
    api.node_ended("c1", "caller", "the caller hung up")
    ended = await ev.wait("call_ended")
    assert ended == {"type": "call_ended", "call": "c1", "by": "caller", "reason": "the caller hung up"}
    await wait_for(lambda: ev.of("status")[-1]["state"] == "wrap_up", WAIT, "wrap-up")
    assert ev.of("status")[-1]["wrap_up_remaining_s"] == 30.0
    api.node_ended("c1", "caller", "again")  # a second report changes nothing
    assert api.router.agent("alice").state == "wrap_up"


async def test_a_not_ready_agent_is_offered_nothing_and_the_caller_leaving_withdraws(hq):
    client, api, _, _ = hq
    cookie = await ready_agent(client)
    ev = await events(client, cookie)
    await client.post("/agent/status", json={"status": "not_ready", "reason": "lunch"}, headers=cookie)
    queue_call(api, "c1")
    await wait_for(lambda: ev.of("status")[-1]["reason"] == "lunch", WAIT, "not ready")
    await client.post("/agent/status", json={"status": "ready"}, headers=cookie)
    await ev.wait("offer")
    assert len(ev.of("offer")) == 1  # nothing was offered while not ready
    api.changed(api.router.abandon("c1"))
    assert (await ev.wait("offer_withdrawn"))["reason"] == "the caller left the queue"


async def test_the_event_socket_is_closed_at_logout_and_refused_without_a_session_or_from_elsewhere(hq):
    client, api, _, _ = hq
    r = await client.get("/agent/events")
    assert r.status == 401 and (await r.json())["error"].startswith("no session")
    cookie = await ready_agent(client)
    r = await client.get("/agent/events", headers=cookie | {"Origin": "https://evil.example"})
    assert r.status == 403
    ev = await events(client, cookie)
    second = await events(client, cookie)  # another tab
    await answered(client, api, cookie)
    assert (await (await client.post("/agent/logout", json={}, headers=cookie)).json())["logout"] == "at hang-up"
    assert ev.closed is None
    await client.post("/agent/hangup", json={}, headers=cookie)
    await wait_for(lambda: ev.closed == second.closed == 4001, WAIT, "both sockets closed at the logout")
    assert api.sockets.count("alice") == 0
    assert (await client.get("/agent/events", headers=cookie)).status == 401


async def test_verify_caller_progress_as_counts_and_the_outcome(hq):
    client, api, node, _ = hq
    cookie = await ready_agent(client)
    assert (await client.post("/agent/verify", json={}, headers=cookie)).status == 409  # not talking
    ev = await events(client, cookie)
    await answered(client, api, cookie)
    r = await client.post("/agent/verify", json={"fields": ["pin", "iban"]}, headers=cookie)
    assert r.status == 400 and "fields" in (await r.json())["error"]
    r = await client.post("/agent/verify", json={}, headers=cookie)
    cap = (await r.json())["capture"]
    assert r.status == 200 and cap["fields"] == ["account", "pin"] and cap["outcome"] is None
    assert node.asked[-1] == ("verify", "c1", "alice", cap["id"], ("account", "pin"))
    assert (await client.post("/agent/verify", json={}, headers=cookie)).status == 409  # one at a time
    for keyed in (1, 2, 3):
        api.notify_call("c1", {"type": "verify_progress", "capture": cap["id"], "field": "account", "keyed": keyed,
                               "state": "keying"})
    assert (await ev.wait("verify_progress", 3))["keyed"] == 3
    r = await client.post("/agent/verify/again", json={"field": "iban"}, headers=cookie)
    assert r.status == 400
    r = await client.post("/agent/verify/again", json={"field": "account"}, headers=cookie)
    assert (await r.json())["capture"]["progress"]["account"] == {"keyed": 0, "state": "asked_again"}
    assert node.asked[-1] == ("verify_again", "c1", cap["id"], "account")
    api.notify_call("c1", {"type": "verify_progress", "capture": cap["id"], "field": "pin", "keyed": 4,
                           "state": "done"})
    api.notify_call("c1", {"type": "verify_result", "capture": cap["id"], "outcome": "verified",
                           "account": "ACC-77"})
    result = await ev.wait("verify_result")
    assert result == {"type": "verify_result", "capture": cap["id"], "outcome": "verified", "account": "ACC-77"}
    me = await (await client.get("/agent/me", headers=cookie)).json()
    assert me["talking"]["auth"] == "verified" and me["talking"]["account"] == "ACC-77"
    assert me["capture"]["progress"]["pin"] == {"keyed": 4, "state": "done"}
    # a second capture, cancelled: the node is told, the console sees it at once, the late result is dropped
    cap2 = (await (await client.post("/agent/verify", json={"fields": ["pin"]}, headers=cookie)).json())["capture"]
    r = await client.post("/agent/verify/cancel", json={}, headers=cookie)
    assert (await r.json())["capture"]["outcome"] == "cancelled"
    assert node.asked[-1] == ("verify_cancel", "c1", cap2["id"])
    api.notify_call("c1", {"type": "verify_result", "capture": cap2["id"], "outcome": "failed"})
    await ev.wait("verify_result", 2)
    assert [e["outcome"] for e in ev.of("verify_result")] == ["verified", "cancelled"]
    assert (await client.post("/agent/verify/cancel", json={}, headers=cookie)).status == 409  # none running


@pytest.mark.parametrize("bad", [
    {"type": "verify_progress", "field": "pin", "keyed": 4, "state": "keying", "digits": "4321"},
    {"type": "verify_progress", "field": "pin", "keyed": "4321", "state": "keying"},
    {"type": "verify_progress", "field": "pin", "keyed": 2, "state": "got 4321"},
    {"type": "verify_result", "outcome": "failed", "account": "4321"},
    {"type": "verify_result", "outcome": "4321"},
    {"type": "offer", "pin": "4321"},
    {"type": "pin4321"},
])
async def test_nothing_a_node_reports_with_digits_reaches_the_agent(hq, bad, caplog):
    """Only the fields the console shows pass, each checked: an extra field is dropped, a value that
    could carry keyed digits drops the whole event, an unverified account is never shown."""
    client, api, _, _ = hq
    cookie = await ready_agent(client)
    ev = await events(client, cookie)
    await answered(client, api, cookie)
    await client.post("/agent/verify", json={}, headers=cookie)
    api.notify_call("c1", bad)
    api.notify_call("c1", {"type": "verify_progress", "field": "account", "keyed": 1, "state": "keying"})
    # the good one after it arrived (or the bad one, cleaned, ended the capture): the bad one had its chance
    await wait_for(lambda: ev.of("verify_progress") or ev.of("verify_result"), WAIT, "an event after it")
    assert "4321" not in json.dumps(ev.got)
    me = await (await client.get("/agent/me", headers=cookie)).text()
    assert "4321" not in me
    assert "4321" not in caplog.text  # nor in the hub's log


async def test_a_caller_verified_in_the_ivr_shows_the_account_in_the_pop(hq):
    client, api, _, _ = hq
    cookie = await ready_agent(client)
    ev = await events(client, cookie)
    queue_call(api, "c9", auth=Auth.VERIFIED, account="ACC-12", account_class="vip")
    offer = await ev.wait("offer")
    assert (offer["pop"]["auth"], offer["pop"]["account"]) == ("verified", "ACC-12")


async def test_the_event_socket_closes_when_its_session_ends(hq, monkeypatch):
    """A session that expires or is ended (a logout in another browser, an admin) closes the socket
    at its next check; the page then shows its login form."""
    client, api, _, _ = hq
    monkeypatch.setattr("central_link.hq.web.SESSION_CHECK_S", 0.05)
    cookie = await ready_agent(client)
    ev = await events(client, cookie)
    api.store.end_sessions("alice")
    await wait_for(lambda: ev.closed == 4002, WAIT, "the socket closed for its ended session")


@pytest.mark.parametrize("path", ["/agent/logout", "/agent/hangup", "/agent/wrapup-done", "/agent/answer",
                                  "/agent/verify", "/agent/verify/cancel", "/agent/verify/again"])
async def test_every_state_changing_route_takes_json_only(hq, path):
    client, api, _, _ = hq
    cookie = await ready_agent(client)
    r = await client.post(path, data="x=1", headers=cookie | {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 415 and api.router.agent("alice").status == "ready"
