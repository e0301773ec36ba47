"""docs/central-link.md says what the agent console serves: the HTTP API table is every route of
the console's application (method and path, both ways), the events table is call_control's event
types, and the hub's settings snippet has the console's port."""

from __future__ import annotations

from central_link.hq.call_control import EVENT_TYPES
from central_link.hq.config import KEYS
from central_link.hq.console_site import console_app
from central_link.hq.queue import CallQueue
from central_link.hq.routing import Router
from central_link.hq.web import AgentApi
from tests.docs.markdown import DOCS, code, table

DOC = (DOCS / "central-link.md").read_text(encoding="utf-8")


def test_the_route_table_is_what_the_console_serves():
    app = console_app(AgentApi(None, Router(CallQueue(), lambda: 0.0), None))
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    served -= {("GET", "/"), ("GET", "/agent"), ("GET", "/agent/console.js"), ("GET", "/agent/console.css")}
    documented = {tuple(code(r["route"]).split(" ", 1)) for r in table(DOC, "Agent accounts, sessions and the HTTP API",
                                                                     "route")}
    assert documented == served


def test_the_event_table_is_the_event_types():
    rows = table(DOC, "Events: `GET /agent/events`", "type")
    assert sorted(code(r["type"]) for r in rows) == sorted(EVENT_TYPES)


def test_every_hub_setting_is_in_the_snippet():
    snippet = DOC[DOC.index("[hub]\nport"):DOC.index("[queue]")]
    assert [line.split("=")[0].strip() for line in snippet.splitlines()[1:] if "=" in line] == list(KEYS)
