"""The hub's call queue: calls the nodes queued at HQ, waiting for an agent.

Pure and synchronous (no clock of its own: every time is passed in). Order: higher priority first,
FIFO within a priority (by the order calls arrived). An offered call leaves the waiting line; if it
is not taken it comes back with its arrival number, so it is again ahead of every call of its
priority that arrived after it: the head of the queue, unless a higher-priority call came meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class QueueError(LookupError):
    pass


class Auth(StrEnum):
    NONE = "none"  # the caller did not authenticate in the IVR
    VERIFIED = "verified"
    FAILED = "failed"


class CallState(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"


@dataclass
class QueuedCall:
    """What the screen pop shows. ``account`` and ``account_class`` only when the caller is verified."""

    id: str
    node: str
    line: int
    caller_id: str
    ivr_path: tuple[str, ...] = ()
    language: str = ""
    auth: Auth = Auth.NONE
    account: str | None = None
    account_class: str | None = None
    queued_at: float = 0.0
    priority: int = 0
    seq: int = 0
    state: CallState = CallState.WAITING

    def __post_init__(self) -> None:
        if self.auth != Auth.VERIFIED and (self.account is not None or self.account_class is not None):
            raise ValueError(f"call {self.id}: an account is only shown for a verified caller (auth={self.auth})")

    def pop(self, now: float) -> dict:
        """The screen pop: everything an agent is shown, with the time in queue so far."""
        return {"id": self.id, "node": self.node, "line": self.line, "caller_id": self.caller_id,
                "ivr_path": list(self.ivr_path), "language": self.language, "auth": str(self.auth),
                "account": self.account, "account_class": self.account_class, "priority": self.priority,
                "waited_s": round(max(0.0, now - self.queued_at), 3)}


@dataclass(frozen=True)
class Priorities:
    """Priority by node, by (node, line) and by a verified caller's account class; the highest that
    applies wins, ``default`` when none does. Higher numbers are served first (e.g. VIP = 10)."""

    default: int = 0
    nodes: dict[str, int] = field(default_factory=dict)
    lines: dict[tuple[str, int], int] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)

    def of(self, call: QueuedCall) -> int:
        found = [p for p in (self.nodes.get(call.node), self.lines.get((call.node, call.line)),
                             self.classes.get(call.account_class) if call.auth == Auth.VERIFIED else None)
                 if p is not None]
        return max(found) if found else self.default


class CallQueue:
    def __init__(self, priorities: Priorities | None = None) -> None:
        self.priorities = priorities or Priorities()
        self._calls: dict[str, QueuedCall] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._calls

    def get(self, call_id: str) -> QueuedCall:
        try:
            return self._calls[call_id]
        except KeyError:
            raise QueueError(f"no call {call_id!r} in the queue (answered, abandoned or never queued)") from None

    def enqueue(self, call: QueuedCall, now: float) -> QueuedCall:
        if call.id in self._calls:
            raise QueueError(f"call {call.id!r} is queued already")
        self._seq += 1
        call.seq, call.queued_at, call.state = self._seq, now, CallState.WAITING
        call.priority = self.priorities.of(call)
        self._calls[call.id] = call
        return call

    def waiting(self) -> list[QueuedCall]:
        """The waiting line, head first."""
        return sorted((c for c in self._calls.values() if c.state == CallState.WAITING),
                      key=lambda c: (-c.priority, c.seq))

    def head(self) -> QueuedCall | None:
        line = self.waiting()
        return line[0] if line else None

    def position(self, call_id: str) -> int:
        """1 for the next call to be offered ("you are number 1 in line"); 0 while it is being offered."""
        call = self.get(call_id)
        if call.state != CallState.WAITING:
            return 0
        return self.waiting().index(call) + 1

    def positions(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.waiting(), 1)}

    def offer(self, call_id: str) -> QueuedCall:
        call = self.get(call_id)
        if call.state != CallState.WAITING:
            raise QueueError(f"call {call_id!r} is being offered already")
        call.state = CallState.OFFERED
        return call

    def back(self, call_id: str) -> QueuedCall:
        """An offer not taken: the call waits again, at the head of its priority."""
        call = self.get(call_id)
        call.state = CallState.WAITING
        return call

    def take(self, call_id: str) -> QueuedCall:
        """Answered: the call leaves the queue."""
        call = self.get(call_id)
        if call.state != CallState.OFFERED:
            raise QueueError(f"call {call_id!r} was not offered: only an offered call can be answered")
        return self._calls.pop(call_id)

    def abandon(self, call_id: str) -> QueuedCall:
        """The caller hung up (or left a callback number) before an agent took the call."""
        return self._calls.pop(self.get(call_id).id)
