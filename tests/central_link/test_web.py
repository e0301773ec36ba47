"""The agents' HTTP API through aiohttp's test client: sessions in HttpOnly SameSite=Strict cookies,
401 without a session, 403 for an agent doing a supervisor action, passwords and tokens never stored
in clear; the `agents add` command; and the hub serving it on the console's own listener.
(The console's call, capture and event routes: test_console_api.py.)"""

from __future__ import annotations

import io
import sqlite3
import ssl
from http.cookies import SimpleCookie

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from central_link.hq.__main__ import main
from central_link.hq.config import load
from central_link.hq.hub import Hub
from central_link.hq.queue import CallQueue, QueuedCall
from central_link.hq.routing import Router, RoutingConfig
from central_link.hq.store import HubStore
from central_link.hq.web import COOKIE, AgentApi
from tests.central_link.harness import hub_config, node_context, wait_for

PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22", "sue": "sue-secret-333"}


class Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(tmp_path):
    s = HubStore(tmp_path / "hq.db")
    s.add_agent("alice", "agent", PASSWORDS["alice"])
    s.add_agent("bob", "agent", PASSWORDS["bob"])
    s.add_agent("sue", "supervisor", PASSWORDS["sue"])
    yield s
    s.close()


@pytest.fixture
async def hub(store):
    clock = Clock()
    router = Router(CallQueue(), clock, RoutingConfig(offer_timeout_s=60, wrap_up_s=60))

    async def db(fn, *args):
        return fn(*args)

    api = AgentApi(store, router, db, calls=Answers())
    app = web.Application()
    api.add_routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, router, clock
    api.close()
    await client.close()


OFFER = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"  # what the browser sends (its content is the node's business)


class Answers:
    """A node that answers every offer and takes every hang-up."""

    async def connect(self, call, agent, offer_sdp):
        return "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=answer\r\n"

    async def hang_up(self, call, agent):
        pass


async def login(client, name: str, password: str | None = None) -> dict[str, str]:
    """The session cookie as a header (the cookie is Secure: a jar would not send it over test HTTP)."""
    r = await client.post("/agent/login", json={"name": name, "password": password or PASSWORDS[name]})
    assert r.status == 200, await r.text()
    return {"Cookie": f"{COOKIE}={r.cookies[COOKIE].value}"}


async def test_the_session_cookie_flags_and_what_is_stored(hub, store):
    client, _, _ = hub
    r = await client.post("/agent/login", json={"name": "alice", "password": PASSWORDS["alice"]})
    assert r.status == 200 and (await r.json())["status"] == "not_ready"
    morsel = SimpleCookie(r.headers["Set-Cookie"])[COOKIE]
    assert morsel["httponly"] is True and morsel["samesite"] == "Strict" and morsel["secure"] is True
    assert morsel["path"] == "/agent" and len(morsel.value) >= 40
    dump = "\n".join(store.db.conn.iterdump())
    assert PASSWORDS["alice"] not in dump and morsel.value not in dump  # neither in clear anywhere
    row = next(store.db.query("SELECT salt, hash FROM agents WHERE name = 'alice'"))
    other = next(store.db.query("SELECT salt FROM agents WHERE name = 'bob'"))
    assert len(row["hash"]) == 32 and row["salt"] != other["salt"]  # a salt per agent


async def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(hub):
    client, _, _ = hub
    wrong = await client.post("/agent/login", json={"name": "alice", "password": "guess-guess"})
    nobody = await client.post("/agent/login", json={"name": "mallory", "password": "guess-guess"})
    assert (wrong.status, await wrong.json()) == (nobody.status, await nobody.json()) == (
        401, {"error": "wrong name or password"})
    assert COOKIE not in wrong.cookies


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/agent/me"), ("POST", "/agent/status"), ("POST", "/agent/answer"), ("POST", "/agent/hangup"),
    ("POST", "/agent/wrapup-done"), ("POST", "/agent/logout"), ("POST", "/agent/supervisor/not-ready"),
    ("GET", "/agent/events"), ("POST", "/agent/verify"), ("POST", "/agent/verify/cancel"),
    ("POST", "/agent/verify/again")])
async def test_a_request_without_a_session_is_refused(hub, method, path):
    client, router, _ = hub
    await login(client, "sue")  # logged in at the router: only the cookie can say who asks
    for headers in ({}, {"Cookie": f"{COOKIE}=made-up-token"}):
        r = await client.request(method, path, json={"agent": "sue", "reason": "x", "status": "ready"},
                                 headers=headers)
        assert r.status == 401 and (await r.json())["error"] == "no session: log in at POST /agent/login"
    assert router.agent("sue").status == "not_ready" and router.agent("sue").reason == "login"


async def test_an_agent_cannot_do_a_supervisor_action_and_a_supervisor_can(hub):
    client, router, _ = hub
    alice, sue = await login(client, "alice"), await login(client, "sue")
    await client.post("/agent/status", json={"status": "ready"}, headers=alice)
    r = await client.post("/agent/supervisor/not-ready", json={"agent": "alice", "reason": "coaching"}, headers=alice)
    assert r.status == 403 and router.agent("alice").status == "ready"
    r = await client.post("/agent/supervisor/not-ready", json={"agent": "alice", "reason": "coaching"}, headers=sue)
    assert r.status == 200 and (router.agent("alice").status, router.agent("alice").reason) == ("not_ready", "coaching")


async def test_an_agent_takes_a_call_through_the_api(hub):
    client, router, clock = hub
    alice = await login(client, "alice")
    r = await client.post("/agent/status", json={"status": "not_ready", "reason": "break"}, headers=alice)
    assert (await r.json())["reason"] == "break"
    router.enqueue(QueuedCall("c1", "node-a", 3, "+8675512345", ("main", "2"), "zh"))
    assert (await (await client.get("/agent/me", headers=alice)).json())["state"] == "idle"  # not ready: nothing
    await client.post("/agent/status", json={"status": "ready"}, headers=alice)
    clock.t += 4
    me = await (await client.get("/agent/me", headers=alice)).json()
    assert me["state"] == "offered" and me["offered"]["caller_id"] == "+8675512345" and me["offered"]["line"] == 3
    assert me["offered"]["waited_s"] == 4.0
    r = await client.post("/agent/answer", json={"sdp": OFFER}, headers=alice)
    assert r.status == 200 and (await r.json())["talking"]["id"] == "c1"
    assert (await client.post("/agent/answer", json={"sdp": OFFER}, headers=alice)).status == 409  # nothing offered
    r = await client.post("/agent/logout", json={}, headers=alice)
    assert (await r.json())["logout"] == "at hang-up"  # during a call the session stays until hang-up
    r = await client.post("/agent/hangup", json={}, headers=alice)
    assert r.status == 200 and (await r.json())["status"] == "logged_out"
    assert (await client.get("/agent/me", headers=alice)).status == 401


async def test_bad_bodies_are_named(hub):
    client, _, _ = hub
    alice = await login(client, "alice")
    r = await client.post("/agent/status", data="status=ready", headers=alice | {
        "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 415  # a cross-site form cannot change anything
    r = await client.post("/agent/status", json={"status": "away"}, headers=alice)
    assert r.status == 400 and "ready" in (await r.json())["error"]
    r = await client.post("/agent/status", json={"status": "not_ready"}, headers=alice)
    assert r.status == 409 and "reason code" in (await r.json())["error"]


def test_agents_add_reads_the_password_from_stdin(capsys, monkeypatch, tmp_path, pki):
    cfg = hub_config(tmp_path, pki, ("a",))
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pw\n"))
    assert main(["agents", "-c", str(cfg), "add", "carol", "--role", "supervisor"]) == 0
    assert "agent carol added as supervisor" in capsys.readouterr().out
    store = HubStore(tmp_path / "hqdata" / "hq.db")
    try:
        assert store.check_password("carol", "long-enough-pw") == "supervisor"
        assert store.check_password("carol", "long-enough-px") is None
    finally:
        store.close()
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["agents", "-c", str(cfg), "add", "dave"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pw\n"))
    assert main(["agents", "-c", str(cfg), "add", "carol"]) == 2
    assert "exists already" in capsys.readouterr().err
    with sqlite3.connect(tmp_path / "hqdata" / "hq.db") as conn:
        assert conn.execute("SELECT count(*) FROM agents").fetchone() == (1,)


async def test_the_hub_serves_the_console_on_its_own_listener_and_runs_the_ring_out_timer(tmp_path, pki):
    """The console's listener: HTTPS with the hub's certificate and no client certificate asked for
    (an agent's browser has none); the nodes' listener serves no agent route. The router's timer runs
    on the hub's loop: a short offer times out by itself and the call is offered again."""
    hub = Hub(load(hub_config(tmp_path, pki, ("node-a",))))
    hub.router.config = RoutingConfig(offer_timeout_s=0.05, wrap_up_s=60, max_no_answer=1)
    hub.store.add_agent("alice", "agent", PASSWORDS["alice"])
    await hub.start()
    try:
        assert hub.console_port not in (0, hub.port)
        browser = ssl.create_default_context(cafile=str(pki.ca[0]))  # trusts the hub; presents nothing
        async with aiohttp.ClientSession() as session:
            url = f"https://127.0.0.1:{hub.console_port}/agent"
            r = await session.post(f"{url}/login", json={"name": "alice", "password": PASSWORDS["alice"]},
                                   ssl=browser)
            assert r.status == 200
            headers = {"Cookie": f"{COOKIE}={r.cookies[COOKIE].value}"}
            r = await session.post(f"{url}/status", json={"status": "ready"}, headers=headers, ssl=browser)
            assert r.status == 200
            page = await session.get(f"{url}/", ssl=browser)
            assert page.status == 200 and "Agent console" in await page.text()
            r = await session.post(f"https://127.0.0.1:{hub.port}/agent/login", ssl=node_context(pki, "node-a"),
                                   json={"name": "alice", "password": PASSWORDS["alice"]})
            assert r.status == 404  # a node reaches /node and nothing else
            hub.agent_api.changed(hub.router.enqueue(QueuedCall("c1", "node-a", 1, "100")))
            assert hub.router.agent("alice").state == "offered"
            await wait_for(lambda: hub.router.agent("alice").reason == "no answer", 5.0,
                           "the ring-out timer on the hub's loop")
            assert hub.router.queue.positions() == {"c1": 1}
    finally:
        await hub.close()


def test_a_session_ends_when_it_expires_or_is_ended(store):
    token = store.new_session("alice", 10.0, 100.0)
    assert store.session(token, 109.9) == {"agent": "alice", "role": "agent"}
    assert store.session(token, 110.0) is None
    token = store.new_session("alice", 10.0, 100.0)
    store.end_session(token)
    assert store.session(token, 101.0) is None
