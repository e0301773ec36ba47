"""Matching the queue with the agents: event-driven, on a clock passed in.

Every event (a call queued or abandoned, an agent's status, answer, hang-up, wrap-up done) and
``tick()`` (the hub calls it at ``next_deadline()``) first applies itself, then offers waiting calls,
head of the queue first, each to the ready idle agent idle the longest (since the end of its last
wrap-up; ties by name). Each method returns the offers it made, for the hub to send.

Timers: an offer not answered within ``offer_timeout_s`` rings out (the call goes back to the head
of the queue, the agent to the end of the idle line; ``max_no_answer`` ring-outs in a row set it not
ready with the reason "no answer"); wrap-up ends by itself after ``wrap_up_s``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .agents import LOGIN, NO_ANSWER, Agent, AgentError, Role, State, Status, check_reason
from .queue import CallQueue, QueuedCall


@dataclass(frozen=True)
class RoutingConfig:
    offer_timeout_s: float = 15.0
    wrap_up_s: float = 30.0
    max_no_answer: int = 3


@dataclass(frozen=True)
class Offer:
    call: QueuedCall
    agent: str


class Router:
    def __init__(self, queue: CallQueue, clock: Callable[[], float], config: RoutingConfig | None = None) -> None:
        self.queue, self.clock, self.config = queue, clock, config or RoutingConfig()
        self.agents: dict[str, Agent] = {}

    # -- agents --------------------------------------------------------------------------------
    def agent(self, name: str) -> Agent:
        try:
            return self.agents[name]
        except KeyError:
            raise AgentError(f"agent {name!r} is not logged in") from None

    def login(self, name: str, role: Role) -> list[Offer]:
        a = self.agents.get(name)
        if a is None or a.status == Status.LOGGED_OUT:
            self.agents[name] = Agent(name, role, Status.NOT_READY, LOGIN, idle_since=self.clock())
        else:
            a.logout_pending = False  # logged in again (another tab, or before the call ended)
        return []

    def ready(self, name: str) -> list[Offer]:
        a = self._in(name)
        a.status, a.reason, a.no_answer = Status.READY, None, 0
        return self._dispatch()

    def not_ready(self, name: str, reason: str) -> list[Offer]:
        a = self._in(name)
        a.status, a.reason = Status.NOT_READY, check_reason(reason)
        if a.state == State.OFFERED:  # nothing is offered to a not-ready agent, not even what rings now
            self._withdraw(a)
        return self._dispatch()

    def logout(self, name: str) -> bool:
        """True when the agent is logged out now; False when it will be at hang-up (during a call)."""
        a = self._in(name)
        if a.state == State.TALKING:
            a.logout_pending = True
            return False
        if a.state == State.OFFERED:
            self._withdraw(a)
        self._logged_out(a)
        self._dispatch()
        return True

    # -- calls ---------------------------------------------------------------------------------
    def enqueue(self, call: QueuedCall) -> list[Offer]:
        self.queue.enqueue(call, self.clock())
        return self._dispatch()

    def abandon(self, call_id: str) -> list[Offer]:
        self.queue.abandon(call_id)
        for a in self.agents.values():
            if a.state == State.OFFERED and a.call == call_id:
                a.state, a.call = State.IDLE, None  # not its fault: idle_since and no_answer unchanged
        return self._dispatch()

    def answer(self, name: str) -> QueuedCall:
        a = self._in(name)
        if a.state != State.OFFERED or a.call is None:
            raise AgentError(f"agent {name!r} has no call offered to answer (it is {a.state})")
        call = self.queue.take(a.call)
        a.state, a.no_answer = State.TALKING, 0
        return call

    def hang_up(self, name: str) -> list[Offer]:
        """The agent or the caller ended the talk: wrap-up starts (or the asked-for logout happens)."""
        a = self._in(name)
        if a.state != State.TALKING:
            raise AgentError(f"agent {name!r} is not talking (it is {a.state}): nothing to hang up")
        if a.logout_pending:
            self._logged_out(a)
            return self._dispatch()
        now = self.clock()
        a.state, a.wrap_up_until = State.WRAP_UP, now + self.config.wrap_up_s
        return []

    def call_ended(self, call_id: str) -> list[Offer]:
        """The caller hung up while talking to an agent."""
        for a in self.agents.values():
            if a.state == State.TALKING and a.call == call_id:
                return self.hang_up(a.name)
        raise AgentError(f"no agent is talking on call {call_id!r}")

    def wrap_up_done(self, name: str) -> list[Offer]:
        a = self._in(name)
        if a.state != State.WRAP_UP:
            raise AgentError(f"agent {name!r} is not in wrap-up (it is {a.state})")
        self._idle(a, self.clock())
        return self._dispatch()

    # -- time ----------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        times = [a.offered_at + self.config.offer_timeout_s for a in self.agents.values() if a.state == State.OFFERED]
        times += [a.wrap_up_until for a in self.agents.values() if a.state == State.WRAP_UP]
        return min(times) if times else None

    def tick(self) -> list[Offer]:
        now = self.clock()
        for a in sorted(self.agents.values(), key=lambda a: a.name):
            if a.state == State.OFFERED and now >= a.offered_at + self.config.offer_timeout_s:
                self._withdraw(a)
                a.idle_since = now  # to the end of the idle line, so the call goes to someone else first
                a.no_answer += 1
                if a.no_answer >= self.config.max_no_answer:
                    a.status, a.reason = Status.NOT_READY, NO_ANSWER
            elif a.state == State.WRAP_UP and now >= a.wrap_up_until:
                self._idle(a, a.wrap_up_until)
        return self._dispatch()

    # -- inside --------------------------------------------------------------------------------
    def _in(self, name: str) -> Agent:
        a = self.agent(name)
        if a.status == Status.LOGGED_OUT:
            raise AgentError(f"agent {name!r} is logged out: log in first")
        return a

    def _idle(self, a: Agent, since: float) -> None:
        a.state, a.call, a.idle_since = State.IDLE, None, since

    def _withdraw(self, a: Agent) -> None:
        assert a.call is not None
        self.queue.back(a.call)
        a.state, a.call = State.IDLE, None

    def _logged_out(self, a: Agent) -> None:
        a.status, a.reason, a.state, a.call, a.logout_pending = Status.LOGGED_OUT, None, State.IDLE, None, False

    def _dispatch(self) -> list[Offer]:
        offers: list[Offer] = []
        now = self.clock()
        while (call := self.queue.head()) is not None:
            free = [a for a in self.agents.values() if a.available]
            if not free:
                break
            a = min(free, key=lambda a: (a.idle_since, a.name))
            self.queue.offer(call.id)
            a.state, a.call, a.offered_at = State.OFFERED, call.id, now
            offers.append(Offer(call, a.name))
        return offers
