"""The agents' push channel: the open event WebSockets of each agent, and what may travel on them.

Each console tab holds one WebSocket (``GET /agent/events``); the agent API puts events on every
socket of an agent, in order, through a queue per socket (the socket's own task sends them), and
closes them all when the agent logs out. :func:`clean_node_event` is the one gate for what a node
reported: only known event types with known fields pass, every value checked, so nothing but a
count of keyed digits (and, with a verified outcome, the account id) can reach an agent's page.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from ..protocol import CAPTURE_STATES
from .call_control import FIELDS, OUTCOMES

log = logging.getLogger("central_link.hq.agents")
QUEUE_MAX = 500  # events waiting for one socket; a page that stops reading is closed and reconnects
KEYED_MAX = 64
_ACCOUNT = re.compile(r"[A-Za-z0-9._-]{1,40}")
_TEXT = re.compile(r"[A-Za-z ,.'()_-]{1,80}")  # a reason the node gives: words, never digits


@dataclass(frozen=True)
class Close:
    """Put on a socket's queue to close it: the code and the reason the page is given."""
    code: int
    reason: str


LOGGED_OUT = Close(4001, "logged out")
SESSION_ENDED = Close(4002, "session ended: log in again")
TOO_SLOW = Close(4003, "too many events unread: reconnect")
HUB_STOPPING = Close(1001, "the hub is stopping")


@dataclass(eq=False)
class Subscriber:
    agent: str
    token: str
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))


class AgentSockets:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscriber]] = {}

    def add(self, agent: str, token: str) -> Subscriber:
        sub = Subscriber(agent, token)
        self._subs.setdefault(agent, set()).add(sub)
        return sub

    def remove(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.agent, set())
        subs.discard(sub)
        if not subs:
            self._subs.pop(sub.agent, None)

    def count(self, agent: str) -> int:
        return len(self._subs.get(agent, ()))

    def send(self, agent: str, event: dict[str, Any]) -> None:
        for sub in list(self._subs.get(agent, ())):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("agent %s: a console socket left %d events unread: closing it", agent, QUEUE_MAX)
                self.close_one(sub, TOO_SLOW)

    def close(self, agent: str, why: Close) -> None:
        for sub in list(self._subs.get(agent, ())):
            self.close_one(sub, why)

    def close_all(self, why: Close) -> None:
        for agent in list(self._subs):
            self.close(agent, why)

    def close_one(self, sub: Subscriber, why: Close) -> None:
        while True:  # the close goes first: nothing queued matters to a socket being closed
            try:
                sub.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
        sub.queue.put_nowait(why)
        self.remove(sub)


def clean_node_event(event: Any) -> dict[str, Any] | None:
    """What a node reported about a capture, reduced to what an agent may see; None when it is not
    a well-formed ``verify_progress`` or ``verify_result`` (the caller logs it)."""
    if not isinstance(event, dict):
        return None
    kind = event.get("type")
    capture = event.get("capture")
    if capture is not None and not (isinstance(capture, str) and _ACCOUNT.fullmatch(capture)):
        return None
    if kind == "verify_progress":
        f, keyed, state = event.get("field"), event.get("keyed"), event.get("state")
        if (f not in FIELDS or not isinstance(keyed, int) or isinstance(keyed, bool)
                or not 0 <= keyed <= KEYED_MAX or state not in CAPTURE_STATES):
            return None
        return {"type": kind, "capture": capture, "field": f, "keyed": keyed, "state": state}
    if kind == "verify_result":
        outcome, account = event.get("outcome"), event.get("account")
        if outcome not in OUTCOMES:
            return None
        if outcome == "verified":
            if not (isinstance(account, str) and _ACCOUNT.fullmatch(account)):
                return None
        else:
            account = None  # an account the caller keyed but did not prove is never shown
        return {"type": kind, "capture": capture, "outcome": outcome, "account": account}
    return None


def clean_reason(reason: Any, default: str) -> str:
    """A node's words for why a call ended, when they are plain words; ``default`` otherwise."""
    return reason if isinstance(reason, str) and _TEXT.fullmatch(reason) else default
