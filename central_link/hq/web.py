"""The agents' HTTP API (JSON): login and sessions, an agent's status and calls, secure capture
(verify caller), a supervisor action, and the push channel (``GET /agent/events``, a WebSocket).

A session is an HttpOnly, SameSite=Strict, Secure cookie holding a random token; the database keeps
only the token's hash. Every request but login is checked for a live session (else 401), and the
supervisor routes for the role (else 403). A state-changing request must be JSON (a form post from
another site cannot be one). The calls themselves are the nodes': this API reaches them through a
:class:`~central_link.hq.call_control.CallControl` and hears back through :class:`AgentApi` as
its ``AgentEvents``. Routes, answers and events: docs/central-link.md, "The agent console".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .agents import NO_ANSWER, AgentError, Role, State, Status
from .call_control import EVENT_TYPES, FIELDS, CallControl, CallGone
from .push import (
    HUB_STOPPING,
    LOGGED_OUT,
    SESSION_ENDED,
    AgentSockets,
    Close,
    Subscriber,
    clean_node_event,
    clean_reason,
)
from .queue import QueuedCall
from .routing import Offer, Router
from .store import HubStore

log = logging.getLogger("central_link.hq.agents")
COOKIE = "hq_session"
SESSION_S = 12 * 3600.0  # one shift
CONNECT_TIMEOUT_S = 10.0  # the node's answer to the browser's offer (it gathers on its own LAN: ~50 ms)
NODE_TIMEOUT_S = 5.0  # a hang-up or a capture command reaching the node
SESSION_CHECK_S = 30.0  # an open event socket re-checks its session this often (expiry, logout elsewhere)
MAX_SDP = 64 * 1024
Db = Callable[..., Awaitable[Any]]


def _json_error(status: int, text: str) -> web.HTTPException:
    kind = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
            409: web.HTTPConflict, 415: web.HTTPUnsupportedMediaType, 502: web.HTTPBadGateway,
            504: web.HTTPGatewayTimeout}[status]
    return kind(text=json.dumps({"error": text}), content_type="application/json")


class NoNodeLink:
    """The CallControl of an API with no hub behind it: every call is gone."""

    async def connect(self, call: QueuedCall, agent: str, offer_sdp: str) -> str:
        raise CallGone("no node link")

    async def hang_up(self, call: QueuedCall, agent: str) -> None:
        raise CallGone("no node link")

    async def verify(self, call: QueuedCall, agent: str, capture: str, fields: tuple[str, ...]) -> None:
        raise CallGone("no node link")

    async def verify_cancel(self, call: QueuedCall, capture: str) -> None:
        raise CallGone("no node link")

    async def verify_again(self, call: QueuedCall, capture: str, field: str) -> None:
        raise CallGone("no node link")


@dataclass
class Capture:
    """A secure capture as the agent sees it: per field a count of digits keyed, never the digits."""
    id: str
    fields: tuple[str, ...]
    progress: dict[str, dict] = field(default_factory=dict)
    outcome: str | None = None  # None while it runs
    account: str | None = None  # only with "verified"

    def view(self) -> dict:
        return {"id": self.id, "fields": list(self.fields), "outcome": self.outcome, "account": self.account,
                "progress": {f: self.progress.get(f, {"keyed": 0, "state": "waiting"}) for f in self.fields}}


@dataclass
class Talk:
    """An answered call while its agent holds it (talking, then wrap-up): the screen pop as of the
    answer, updated when a capture verifies the caller."""
    call: QueuedCall
    agent: str
    pop: dict
    capture: Capture | None = None


class AgentApi:
    """``db(fn, *args)`` runs a store call (the hub's database thread); ``calls`` reaches the nodes;
    ``on_offers`` gets every offer made. After each router event (:meth:`changed`) every agent whose
    status or state moved is sent its view, and the router's timers are armed on the running loop."""

    def __init__(self, store: HubStore, router: Router, db: Db,
                 on_offers: Callable[[list[Offer]], None] = lambda offers: None,
                 calls: CallControl | None = None) -> None:
        self.store, self.router, self.db, self.on_offers = store, router, db, on_offers
        self.calls: CallControl = calls or NoNodeLink()
        self.sockets = AgentSockets()
        self.connect_timeout_s = CONNECT_TIMEOUT_S
        self._talks: dict[str, Talk] = {}  # by call id
        self._seen: dict[str, tuple] = {}  # each agent's status and state as last pushed
        # every view is numbered: an HTTP answer and a pushed event can reach the page in either
        # order, and the page keeps the newest (starting from the clock, so a restarted hub's
        # numbers are higher than the last ones a page saw)
        self._rev = time.time_ns() // 1_000_000
        self._timer: asyncio.TimerHandle | None = None

    def changed(self, offers: list[Offer]) -> None:
        """After every router event: pass its offers on, push what moved, and wake up at the router's
        next deadline."""
        for o in offers:
            log.info("call %s offered to agent %s", o.call.id, o.agent)
        if offers:
            self.on_offers(offers)
        self._publish()
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
        self.sockets.close_all(HUB_STOPPING)

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/agent/login", self.login)
        r.add_post("/agent/logout", self.logout)
        r.add_get("/agent/me", self.me)
        r.add_get("/agent/events", self.events)
        r.add_post("/agent/status", self.status)
        r.add_post("/agent/answer", self.answer)
        r.add_post("/agent/hangup", self.hang_up)
        r.add_post("/agent/wrapup-done", self.wrap_up_done)
        r.add_post("/agent/verify", self.verify)
        r.add_post("/agent/verify/cancel", self.verify_cancel)
        r.add_post("/agent/verify/again", self.verify_again)
        r.add_post("/agent/supervisor/not-ready", self.supervisor_not_ready)

    # -- AgentEvents: what the nodes report ------------------------------------------------------
    def node_ended(self, call_id: str, by: str, reason: str) -> None:
        """The call's node ended the call (the caller hung up, or the node did): wrap-up starts."""
        talk = self._talks.get(call_id)
        a = self.router.agents.get(talk.agent) if talk else None
        if talk is None or a is None or a.state != State.TALKING or a.call != call_id:
            log.info("node ended call %s, which no agent is talking on", call_id)
            return
        by = by if by in ("caller", "node") else "node"
        why = clean_reason(reason, "the caller hung up" if by == "caller" else "the branch ended the call")
        self._end_capture(talk, "unavailable")
        self.sockets.send(talk.agent, {"type": "call_ended", "call": call_id, "by": by, "reason": why})
        log.info("call %s ended by the %s (%s): agent %s to wrap-up", call_id, by, why, talk.agent)
        self.changed(self.router.call_ended(call_id))

    def notify_call(self, call_id: str, event: dict[str, Any]) -> None:
        """A capture's progress or outcome from the node, passed to the agent holding the call."""
        talk = self._talks.get(call_id)
        clean = clean_node_event(event)
        if clean is None:
            kind = event.get("type") if isinstance(event, dict) else None
            log.warning("call %s: dropped a malformed event from the node (type %s)", call_id,
                        kind if kind in EVENT_TYPES else "not one of the event types")  # never its values
            return
        cap = talk.capture if talk else None
        if talk is None or cap is None or cap.outcome is not None or clean["capture"] not in (None, cap.id):
            log.info("call %s: a %s for no running capture: dropped", call_id, clean["type"])
            return
        clean["capture"] = cap.id
        if clean["type"] == "verify_progress":
            cap.progress[clean["field"]] = {"keyed": clean["keyed"], "state": clean["state"]}
        else:
            cap.outcome, cap.account = clean["outcome"], clean["account"]
            if cap.outcome == "verified":
                talk.pop |= {"auth": "verified", "account": cap.account}
            log.info("call %s: capture %s ended: %s", call_id, cap.id, cap.outcome)
        self.sockets.send(talk.agent, clean)

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
        now = self.router.clock()
        view = a.view()
        self._rev += 1
        view["rev"] = self._rev
        if a.state == State.OFFERED and a.call is not None and a.call in self.router.queue:
            view["offered"] = self.router.queue.get(a.call).pop(now)
        talk = self._talks.get(a.call) if a.call else None
        if talk is not None and a.state in (State.TALKING, State.WRAP_UP):
            view["talking"] = dict(talk.pop)
            view["capture"] = talk.capture.view() if talk.capture else None
        if a.state == State.WRAP_UP:
            view["wrap_up_remaining_s"] = round(max(0.0, a.wrap_up_until - now), 1)
        return view

    def _talk(self, name: str) -> Talk:
        a = self.router.agent(name)
        talk = self._talks.get(a.call) if a.call else None
        if a.state != State.TALKING or talk is None:
            raise _json_error(409, f"you are not talking on a call (you are {a.state})")
        return talk

    # -- the push channel ----------------------------------------------------------------------
    def _publish(self) -> None:
        """Send each agent whose status or state moved its view, after the offer news that explains it."""
        for name, a in list(self.router.agents.items()):
            offer = (a.call, a.offered_at) if a.state == State.OFFERED else None  # a new one each time it rings
            key = (a.status, a.reason, a.state, a.call, a.logout_pending, a.no_answer, offer)
            before = self._seen.get(name)
            if key == before:
                continue
            self._seen[name] = key
            was = before[6] if before is not None else None
            if was is not None and was != offer and not (a.state == State.TALKING and a.call == was[0]):
                self.sockets.send(name, {"type": "offer_withdrawn", "call": was[0],
                                         "reason": self._why_withdrawn(a, before)})
            view = self._me(name)
            self.sockets.send(name, {"type": "status"} | view)
            if offer is not None and offer != was:
                self.sockets.send(name, {"type": "offer", "call": a.call, "pop": view.get("offered")})
            if a.status == Status.LOGGED_OUT:
                self.sockets.close(name, LOGGED_OUT)
        held = {a.call for a in self.router.agents.values() if a.state in (State.TALKING, State.WRAP_UP)}
        for call_id in [c for c in self._talks if c not in held]:
            del self._talks[call_id]  # wrap-up is over: the call is the node's records' now

    def _why_withdrawn(self, a, before: tuple) -> str:
        if before[6][0] not in self.router.queue:
            return "the caller left the queue"
        if a.no_answer > before[5] or (a.reason == NO_ANSWER and before[1] != NO_ANSWER):
            return "rang out: not answered in time"
        if a.status == Status.LOGGED_OUT:
            return "you logged out"
        if a.status == Status.NOT_READY:
            return "you are not ready"
        return "withdrawn"

    async def events(self, request: web.Request) -> web.StreamResponse:
        """``GET /agent/events``: the agent's events as JSON text frames, the first its current view."""
        s = await self._session(request)
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            log.warning("agent %s: refused an event socket opened from %s", s["agent"], origin[:80])
            raise _json_error(403, "the event socket is for the console's own page")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
        await ws.prepare(request)
        sub = self.sockets.add(s["agent"], s["token"])
        sub.queue.put_nowait({"type": "status"} | self._me(s["agent"]))
        closing = asyncio.Event()  # set once the hub closes the socket (then the close handshake is let finish)
        sender = asyncio.ensure_future(self._send_events(ws, sub, closing))
        try:
            while not ws.closed:
                try:
                    msg = await ws.receive(timeout=SESSION_CHECK_S)
                except TimeoutError:
                    if await self.db(self.store.session, s["token"], time.time()) is None:
                        self.sockets.close_one(sub, SESSION_ENDED)
                    continue
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                # the page sends nothing that matters: every change is an HTTP request, checked there
        finally:
            self.sockets.remove(sub)
            if not closing.is_set():
                sender.cancel()  # the page went away: nothing more to send
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(sender, 12.0)
        return ws

    @staticmethod
    async def _send_events(ws: web.WebSocketResponse, sub: Subscriber, closing: asyncio.Event) -> None:
        while True:
            event = await sub.queue.get()
            if isinstance(event, Close):
                closing.set()
                await ws.close(code=event.code, message=event.reason.encode())
                return
            try:
                await ws.send_str(json.dumps(event))
            except ConnectionError:
                return

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
        await self._body(request)  # JSON only: a form from another site changes nothing
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
        """Take the offered call and connect it: the browser's offer to the node, the node's answer back."""
        s = await self._session(request)
        body = await self._body(request)
        sdp = body.get("sdp")
        if not isinstance(sdp, str) or "m=audio" not in sdp or len(sdp) > MAX_SDP:
            raise _json_error(400, "send {\"sdp\": ...}: the browser's WebRTC offer (with audio and its ICE "
                                   f"candidates, at most {MAX_SDP // 1024} KiB)")
        name = s["agent"]
        try:
            call = self.router.answer(name)
        except AgentError as exc:
            raise _json_error(409, str(exc)) from None
        talk = self._talks[call.id] = Talk(call, name, call.pop(self.router.clock()))
        self.changed([])  # pushed with its screen pop: the agent's other tabs see it talking
        try:
            answer = await asyncio.wait_for(self.calls.connect(call, name, sdp), self.connect_timeout_s)
        except CallGone as exc:
            self._not_connected(name, call.id)
            raise _json_error(409, f"the call could not be connected: {exc}") from None
        except TimeoutError:
            self._not_connected(name, call.id)
            log.warning("call %s: the node did not answer agent %s's offer within %.0f s", call.id, name,
                        self.connect_timeout_s)
            await self._tell_node(self.calls.hang_up(call, name), call.id, "hang-up")  # end the caller's leg too
            raise _json_error(504, f"the branch did not answer within {self.connect_timeout_s:.0f} s: "
                                   "the call was ended") from None
        except Exception as exc:  # the node's side failed: the agent must still get its console back
            log.exception("call %s: connecting agent %s failed", call.id, name)
            self._not_connected(name, call.id)
            raise _json_error(502, f"the call could not be connected ({type(exc).__name__}): "
                                   "it was ended") from None
        a = self.router.agents.get(name)
        if a is None or a.state != State.TALKING or a.call != call.id:
            raise _json_error(409, "the call ended while it was being connected")
        if not isinstance(answer, str) or "m=audio" not in answer:
            self._not_connected(name, call.id)
            await self._tell_node(self.calls.hang_up(call, name), call.id, "hang-up")
            raise _json_error(502, "the branch's answer was not an SDP with audio: the call was ended")
        log.info("call %s answered by agent %s", call.id, name)
        return web.json_response(self._me(name) | {"sdp": answer, "talking": dict(talk.pop)})

    def _not_connected(self, name: str, call_id: str) -> None:
        """A call taken but never connected: the agent is free again at once (there was no talk to wrap up)."""
        a = self.router.agents.get(name)
        if a is None or a.state != State.TALKING or a.call != call_id:
            return
        self.changed(self.router.hang_up(name))
        if a.state == State.WRAP_UP:
            self.changed(self.router.wrap_up_done(name))

    async def _tell_node(self, command: Awaitable[None], call_id: str, what: str) -> str | None:
        """Run a command on the call's node; why it failed (the call or node gone, no answer), or None."""
        try:
            await asyncio.wait_for(command, NODE_TIMEOUT_S)
        except CallGone as exc:
            log.info("call %s: %s not sent: %s", call_id, what, exc)
            return str(exc)
        except TimeoutError:
            log.warning("call %s: the node did not take the %s within %.0f s", call_id, what, NODE_TIMEOUT_S)
            return f"the branch did not answer within {NODE_TIMEOUT_S:.0f} s"
        return None

    async def hang_up(self, request: web.Request) -> web.Response:
        s = await self._session(request)
        await self._body(request)  # JSON only: a form from another site changes nothing
        name = s["agent"]
        a = self.router.agent(name)
        talk = self._talks.get(a.call) if a.state == State.TALKING and a.call else None
        self._do(self.router.hang_up, name)  # the agent is free whatever the node says
        if talk is not None:
            self._end_capture(talk, "cancelled")
            await self._tell_node(self.calls.hang_up(talk.call, name), talk.call.id, "hang-up")
        return web.json_response(self._me(name))

    async def wrap_up_done(self, request: web.Request) -> web.Response:
        s = await self._session(request)
        await self._body(request)  # JSON only: a form from another site changes nothing
        self._do(self.router.wrap_up_done, s["agent"])
        return web.json_response(self._me(s["agent"]))

    # -- secure capture: the node collects and checks; the agent sees counts and the outcome ----
    async def verify(self, request: web.Request) -> web.Response:
        s = await self._session(request)
        body = await self._body(request)
        fields = body.get("fields", list(FIELDS))
        if (not isinstance(fields, list) or not fields or len(set(fields)) != len(fields)
                or not all(f in FIELDS for f in fields)):
            raise _json_error(400, f"fields is a list of distinct fields from {list(FIELDS)} (or leave it out)")
        talk = self._talk(s["agent"])
        if talk.capture is not None and talk.capture.outcome is None:
            raise _json_error(409, "a capture is running: cancel it or wait for its outcome")
        cap = talk.capture = Capture("cap-" + secrets.token_hex(6), tuple(fields))
        failed = await self._tell_node(self.calls.verify(talk.call, s["agent"], cap.id, cap.fields), talk.call.id,
                                       "capture")
        if failed is not None:
            cap.outcome = "unavailable"
            raise _json_error(409 if "within" not in failed else 504, f"the capture could not start: {failed}")
        log.info("call %s: agent %s started capture %s of %s", talk.call.id, s["agent"], cap.id, ",".join(fields))
        return web.json_response(self._me(s["agent"]))

    def _running(self, name: str) -> tuple[Talk, Capture]:
        talk = self._talk(name)
        if talk.capture is None or talk.capture.outcome is not None:
            raise _json_error(409, "no capture is running: start one with Verify caller")
        return talk, talk.capture

    async def verify_cancel(self, request: web.Request) -> web.Response:
        s = await self._session(request)
        await self._body(request)
        talk, cap = self._running(s["agent"])
        self._end_capture(talk, "cancelled")  # at once for the agent; the node's late result is dropped
        await self._tell_node(self.calls.verify_cancel(talk.call, cap.id), talk.call.id, "capture cancel")
        return web.json_response(self._me(s["agent"]))

    async def verify_again(self, request: web.Request) -> web.Response:
        s = await self._session(request)
        body = await self._body(request)
        talk, cap = self._running(s["agent"])
        f = body.get("field")
        if f not in cap.fields:
            raise _json_error(400, f"field is one this capture collects: {list(cap.fields)}")
        failed = await self._tell_node(self.calls.verify_again(talk.call, cap.id, f), talk.call.id, "ask again")
        if failed is not None:
            raise _json_error(409, f"could not ask again: {failed}")
        cap.progress[f] = {"keyed": 0, "state": "asked_again"}
        return web.json_response(self._me(s["agent"]))

    def _end_capture(self, talk: Talk, outcome: str) -> None:
        cap = talk.capture
        if cap is None or cap.outcome is not None:
            return
        cap.outcome = outcome
        self.sockets.send(talk.agent, {"type": "verify_result", "capture": cap.id, "outcome": outcome,
                                       "account": None})

    async def supervisor_not_ready(self, request: web.Request) -> web.Response:
        s = await self._session(request, supervisor=True)
        body = await self._body(request)
        target = body.get("agent")
        if not isinstance(target, str):
            raise _json_error(400, "name the agent: {\"agent\": ..., \"reason\": ...}")
        self._do(self.router.not_ready, target, body.get("reason", ""))
        log.info("supervisor %s set agent %s not ready", s["agent"], target)
        return web.json_response(self._me(target))
