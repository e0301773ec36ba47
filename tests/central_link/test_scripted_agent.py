"""The scripted agent takes a call through the agent HTTP API: logs in, goes ready, answers the
offered call with its aiortc offer, speaks (a tone the node's line hears at its frequency), asks for
verification and hangs up when the outcome comes. The API here is a minimal stand-in with the
agent console's routes and answers, over the real hub's CallControl and a real node uplink whose
call is a node MediaSession on a ticking line."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
from aiohttp import web

from central_link import protocol as p
from central_link.hq.agents import Role
from central_link.hq.scripted_agent import ScriptedAgent
from central_link.media.ice import IceConfig
from central_link.media.session import MediaSession

from .harness import MemoryOutbox, node_context, start_hub, uplink, wait_for
from .peers import Line, dominant

ICE = IceConfig.loopback()
WAIT = 20


class Console:
    """The agent API's routes as the console serves them, reduced to one agent and no checks."""

    def __init__(self, hub) -> None:
        self.hub, self.capture, self.call = hub, None, None
        hub.calls.events = self

    def node_ended(self, call_id, by, reason):
        self.hub.agent_api.changed(self.hub.router.call_ended(call_id))

    def notify_call(self, call_id, event):
        if event["type"] == "verify_result":
            self.capture |= {"outcome": event["outcome"], "account": event["account"]}

    def app(self) -> web.Application:
        app = web.Application()
        r = self.hub.router

        async def login(req):
            body = await req.json()
            self.hub.agent_api.changed(r.login(body["name"], Role.AGENT))
            resp = web.json_response({"name": body["name"]})
            resp.set_cookie("s", body["name"])
            return resp

        async def status(req):
            self.hub.agent_api.changed(r.ready(req.cookies["s"]))
            return web.json_response({})

        async def me(req):
            a = r.agent(req.cookies["s"])
            view = a.view() | {"capture": self.capture}
            if a.state == "offered":
                view["offered"] = r.queue.get(a.call).pop(r.clock())
            return web.json_response(view)

        async def answer(req):
            name = req.cookies["s"]
            self.call = r.answer(name)
            sdp = await self.hub.connect(self.call, name, (await req.json())["sdp"])
            return web.json_response({"sdp": sdp, "call": self.call.id})

        async def verify(req):
            self.capture = {"id": "cap-1", "outcome": None}
            await self.hub.verify(self.call, req.cookies["s"], "cap-1", tuple((await req.json())["fields"]))
            return web.json_response({})

        async def hangup(req):
            self.hub.agent_api.changed(r.hang_up(req.cookies["s"]))
            await self.hub.hang_up(self.call, req.cookies["s"])
            return web.json_response({})

        app.router.add_post("/agent/login", login)
        app.router.add_post("/agent/status", status)
        app.router.add_get("/agent/me", me)
        app.router.add_post("/agent/answer", answer)
        app.router.add_post("/agent/verify", verify)
        app.router.add_post("/agent/hangup", hangup)
        return app


class Branch:
    """A node's live side: a call answered with a MediaSession on a line sending 600 Hz; a capture
    that verifies account 1000001."""

    def __init__(self) -> None:
        self.up = None
        self.line = Line(600)
        self.session: MediaSession | None = None
        self.ended: list[p.CallEnded] = []

    def received(self, msg) -> None:
        asyncio.ensure_future(self._handle(msg))

    async def _handle(self, msg) -> None:
        if isinstance(msg, p.Connect):
            self.session = MediaSession(self.line.port, ice=ICE)
            self.line.start(self.session)
            await self.up.send(p.MediaAnswer(msg.call, await self.session.answer(msg.sdp)))
        elif isinstance(msg, p.Verify):
            await self.up.send(p.VerifyProgress(msg.call, msg.capture, "account", 0, "started"))
            await self.up.send(p.VerifyResult(msg.call, msg.capture, "verified", "1000001"))
        elif isinstance(msg, p.HangUp):
            self.ended.append(p.CallEnded(msg.call, "agent", "the agent hung up"))
            await self.up.send(self.ended[-1])

    def link_changed(self, up: bool) -> None:
        pass


async def test_the_scripted_agent_takes_a_call_speaks_verifies_and_hangs_up(tmp_path, pki):
    hub = await start_hub(tmp_path, pki, ("node-a",))
    console = Console(hub)
    runner = web.AppRunner(console.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    branch = Branch()
    branch.up = uplink(f"wss://127.0.0.1:{hub.port}/node", node_context(pki, "node-a"), "node-a", MemoryOutbox(),
                       handler=branch)
    link = asyncio.create_task(branch.up.run())
    lines: list[str] = []
    agent = ScriptedAgent(f"http://127.0.0.1:{port}", "demo", "secret-pw", ice=ICE, say_hz=440, say_s=1.5,
                          say=lines.append)
    try:
        await wait_for(lambda: branch.up.up, WAIT, "the node's link")
        task = asyncio.create_task(agent.take_one_call(WAIT, WAIT))
        await wait_for(lambda: "demo" in hub.router.agents and hub.router.agent("demo").status == "ready", WAIT,
                       "the scripted agent to be ready")
        assert await branch.up.queue_call(p.QueueCall("c1", 1, "13800138000", ["menu", "agent"], "en"), WAIT) \
            == p.Queued("c1", 0)
        result = await asyncio.wait_for(task, 3 * WAIT)
        assert (result.outcome, result.account, result.call) == ("verified", "1000001", "node-a:c1")
        assert result.pop["caller_id"] == "13800138000"
        assert [s.split(" ")[0] for s in result.steps] == ["logged", "offered", "answered", "speaking", "asked",
                                                          "verification:", "hung"]
        assert lines[-1] == "scripted agent demo: hung up" and branch.ended
        # what it said reached the branch's line at its frequency; it heard the line's tone
        loud = [f for f in branch.line.played if np.sqrt(np.mean(f.astype(float) ** 2)) > 500]
        assert len(loud) >= 40, "the scripted agent's voice did not reach the line"
        freq, purity = dominant(loud[-30:])
        assert abs(freq - 440) <= 10 and purity > 0.5, (freq, purity)
        assert len(agent.heard) >= 40
        freq, _ = dominant(agent.heard[-40:])
        assert abs(freq - 600) <= 10, freq
    finally:
        link.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await link
        await branch.line.stop()
        if branch.session is not None:
            await branch.session.close()
        await runner.cleanup()
        await hub.close()
