"""Agents: a role, a **status** (what the agent chose) and a **state** (what the agent is doing).

Kept apart as FreeSWITCH mod_callcenter and Cisco Finesse do: status is logged out / ready / not
ready with a reason code; state is idle / offered / talking / wrap-up. Only an agent that is ready
AND idle is offered a call. The transitions that need the queue or a clock are in ``routing``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"  # and may change other agents' status
    ADMIN = "admin"  # and everything a supervisor may

    def may_supervise(self) -> bool:
        return self in (Role.SUPERVISOR, Role.ADMIN)


class Status(StrEnum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    NOT_READY = "not_ready"


class State(StrEnum):
    IDLE = "idle"
    OFFERED = "offered"
    TALKING = "talking"
    WRAP_UP = "wrap_up"


LOGIN = "login"  # the reason code of an agent who just logged in (not ready until it says so)
NO_ANSWER = "no answer"  # set by the hub after max_no_answer ring-outs in a row
REASON_MAX = 40


class AgentError(ValueError):
    pass


@dataclass
class Agent:
    name: str
    role: Role = Role.AGENT
    status: Status = Status.LOGGED_OUT
    reason: str | None = None  # only while not ready
    state: State = State.IDLE
    call: str | None = None  # the call offered to it, or being talked or wrapped up
    idle_since: float = 0.0  # the end of its last wrap-up (or its login): longest idle is served first
    offered_at: float = 0.0
    wrap_up_until: float = 0.0
    no_answer: int = 0  # ring-outs in a row
    logout_pending: bool = False  # asked during a call: takes effect at hang-up

    @property
    def available(self) -> bool:
        return self.status == Status.READY and self.state == State.IDLE

    def view(self) -> dict:
        return {"name": self.name, "role": str(self.role), "status": str(self.status), "reason": self.reason,
                "state": str(self.state), "call": self.call, "logout_pending": self.logout_pending,
                "no_answer": self.no_answer}


def check_reason(reason: str) -> str:
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > REASON_MAX or not reason.isprintable():
        raise AgentError(f"a not-ready reason code is 1 to {REASON_MAX} printable characters (e.g. \"break\")")
    return reason
