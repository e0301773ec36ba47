"""The agents' HTTP API (JSON): login and sessions, an agent's status and calls, a supervisor action.

A session is an HttpOnly, SameSite=Strict, Secure cookie holding a random token; the database keeps
only the token's hash. Every request but login is checked for a live session (else 401), and the
supervisor routes for the role (else 403). A state-changing request must be JSON (a form post from
another site cannot be one). Routes and answers: docs/central-link.md, "The queue and the agents".
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .agents import AgentError, Role, Status
from .routing import Offer, Router
from .store import HubStore

log = logging.getLogger("central_link.hq.agents")
COOKIE = "hq_session"
SESSION_S = 12 * 3600.0  # one shift
Db = Callable[..., Awaitable[Any]]


def _json_error(status: int, text: str) -> web.HTTPException:
    kind = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
            409: web.HTTPConflict, 415: web.HTTPUnsupportedMediaType}[status]
    return kind(text=json.dumps({"error": text}), content_type="application/json")


class AgentApi:
    """``db(fn, *args)`` runs a store call (the hub's database thread); ``on_offers`` gets every offer
    made (the hub sends them on); the router's timers are armed on the running loop after each event."""

    def __init__(self, store: HubStore, router: Router, db: Db,
                 on_offers: Callable[[list[Offer]], None] = lambda offers: None) -> None:
        self.store, self.router, self.db, self.on_offers = store, router, db, on_offers
        self._timer: asyncio.TimerHandle | None = None

    def changed(self, offers: list[Offer]) -> None:
        """After every router event: pass its offers on and wake up at the router's next deadline."""
        for o in offers:
            log.info("call %s offered to agent %s", o.call.id, o.agent)
        if offers:
            self.on_offers(offers)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.router.next_deadline()
        if when is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, when - self.router.clock()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.changed(self.router.tick())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/agent/login", self.login)
        r.add_post("/agent/logout", self.logout)
        r.add_get("/agent/me", self.me)
        r.add_post("/agent/status", self.status)
        r.add_post("/agent/answer", self.answer)
        r.add_post("/agent/hangup", self.hang_up)
        r.add_post("/agent/wrapup-done", self.wrap_up_done)
        r.add_post("/agent/supervisor/not-ready", self.supervisor_not_ready)

    # -- checks --------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> dict:
        if request.content_type != "application/json":
            raise _json_error(415, "send JSON (Content-Type: application/json)")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise _json_error(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _json_error(400, "the body must be a JSON object")
        return body

    async def _session(self, request: web.Request, supervisor: bool = False) -> dict:
        token = request.cookies.get(COOKIE, "")
        s = await self.db(self.store.session, token, time.time()) if token else None
        if s is None:
            raise _json_error(401, "no session: log in at POST /agent/login")
        a = self.router.agents.get(s["agent"])
        if a is None or a.status == Status.LOGGED_OUT:  # logged out (at hang-up, say) or the hub restarted
            await self.db(self.store.end_session, token)
            raise _json_error(401, "logged out: log in again at POST /agent/login")
        if supervisor and not Role(s["role"]).may_supervise():
            log.warning("agent %s (role %s) refused a supervisor action: %s", s["agent"], s["role"], request.path)
            raise _json_error(403, "a supervisor action: your role is " + s["role"])
        return s | {"token": token}

    def _do(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            result = fn(*args)
        except AgentError as exc:
            raise _json_error(409, str(exc)) from None
        self.changed(result if isinstance(result, list) else [])
        return result

    def _me(self, name: str) -> dict:
        a = self.router.agent(name)
        view = a.view()
        if a.call is not None and a.call in self.router.queue:
            view["offered"] = self.router.queue.get(a.call).pop(self.router.clock())
        return view

    # -- routes --------------------------------------------------------------------------------
    async def login(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise _json_error(400, "send {\"name\": ..., \"password\": ...}")
        role = await self.db(self.store.check_password, name, password)
        if role is None:
            log.warning("failed agent login as %r", name[:40])
            raise _json_error(401, "wrong name or password")  # the same for an unknown name
        token = await self.db(self.store.new_session, name, SESSION_S, time.time())  # wall time: it outlives the process
        self._do(self.router.login, name, Role(role))
        resp = web.json_response(self._me(name))
        resp.set_cookie(COOKIE, token, max_age=int(SESSION_S), path="/agent", httponly=True, secure=True,
                        samesite="Strict")
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        s = await self._session(request)
        now = self._do(self.router.logout, s["agent"])
        if not now:
            return web.json_response({"logout": "at hang-up"} | self._me(s["agent"]))
        await self.db(self.store.end_session, s["token"])
        resp = web.json_response({"logout": "done"})
        resp.del_cookie(COOKIE, path="/agent")
        return resp

    async def me(self, request: web.Request) -> web.Response:
        s = await self._session(request)
        return web.json_response(self._me(s["agent"]))

    async def status(self, request: web.Request) -> web.Response:
        s = await self._session(request)
        body = await self._body(request)
        if body.get("status") == "ready":
            self._do(self.router.ready, s["agent"])
        elif body.get("status") == "not_ready":
            self._do(self.router.not_ready, s["agent"], body.get("reason", ""))
        else:
            raise _json_error(400, "status is \"ready\" or \"not_ready\" (with a \"reason\")")
        return web.json_response(self._me(s["agent"]))

    async def answer(self, request: web.Request) -> web.Response:
        s = await self._session(request)
        call = self._do(self.router.answer, s["agent"])
        return web.json_response(self._me(s["agent"]) | {"talking": call.pop(self.router.clock())})

    async def hang_up(self, request: web.Request) -> web.Response:
        s = await self._session(request)
        self._do(self.router.hang_up, s["agent"])
        return web.json_response(self._me(s["agent"]))

    async def wrap_up_done(self, request: web.Request) -> web.Response:
        s = await self._session(request)
        self._do(self.router.wrap_up_done, s["agent"])
        return web.json_response(self._me(s["agent"]))

    async def supervisor_not_ready(self, request: web.Request) -> web.Response:
        s = await self._session(request, supervisor=True)
        body = await self._body(request)
        target = body.get("agent")
        if not isinstance(target, str):
            raise _json_error(400, "name the agent: {\"agent\": ..., \"reason\": ...}")
        self._do(self.router.not_ready, target, body.get("reason", ""))
        log.info("supervisor %s set agent %s not ready", s["agent"], target)
        return web.json_response(self._me(target))
