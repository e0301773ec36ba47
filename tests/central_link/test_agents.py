"""Agents and routing on a fake clock: priorities and longest-idle routing, not ready means offered
nothing, ring-out back to the head, max_no_answer, logout at hang-up, the wrap-up timer."""

from __future__ import annotations

import pytest

from central_link.hq.agents import AgentError, Role, State, Status
from central_link.hq.queue import Auth, CallQueue, Priorities, QueuedCall
from central_link.hq.routing import Offer, Router, RoutingConfig


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def call(cid: str, vip: bool = False) -> QueuedCall:
    if vip:
        return QueuedCall(cid, "n1", 1, "100", ("main",), "en", Auth.VERIFIED, "acct-" + cid, "vip")
    return QueuedCall(cid, "n1", 2, "200", ("main",), "en")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def router(clock: Clock) -> Router:
    cfg = RoutingConfig(offer_timeout_s=10, wrap_up_s=30, max_no_answer=2)
    return Router(CallQueue(Priorities(classes={"vip": 10})), clock, cfg)


def pairs(offers: list[Offer]) -> list[tuple[str, str]]:
    return [(o.call.id, o.agent) for o in offers]


def at(clock: Clock, t: float) -> Clock:
    clock.t = t
    return clock


def test_three_agents_five_calls_two_priorities(router, clock):
    """Acceptance 3: the first calls go to the agents longest idle first; the calls left waiting are
    then offered VIP first (though a normal call waited longer), FIFO within each priority."""
    for t, name in ((0, "a2"), (1, "a3"), (2, "a1")):  # idle since 0, 1, 2
        at(clock, t)
        router.login(name, Role.AGENT)
    at(clock, 3)
    for name in ("a1", "a2", "a3"):  # ready in another order than idle: idle time decides
        router.ready(name)
    offers: list[Offer] = []
    for t, c in ((10, call("n1")), (11, call("n2")), (12, call("n3")), (13, call("n4")), (14, call("v1", vip=True))):
        at(clock, t)
        offers += router.enqueue(c)
    assert pairs(offers) == [("n1", "a2"), ("n2", "a3"), ("n3", "a1")]
    assert router.queue.positions() == {"v1": 1, "n4": 2}
    for name in ("a1", "a2", "a3"):
        router.answer(name)
    at(clock, 20)
    router.hang_up("a1")
    router.hang_up("a2")
    at(clock, 21)
    offers = router.wrap_up_done("a1")
    at(clock, 22)
    offers += router.wrap_up_done("a2")
    assert pairs(offers) == [("v1", "a1"), ("n4", "a2")]
    assert router.queue.positions() == {}


def test_longest_idle_counts_from_the_end_of_wrap_up(router, clock):
    for name in ("a", "b"):
        router.login(name, Role.AGENT)
        router.ready(name)
    assert pairs(router.enqueue(call("c1")) + router.enqueue(call("c2"))) == [("c1", "a"), ("c2", "b")]
    router.answer("a")
    router.answer("b")
    at(clock, 5)
    router.hang_up("a")
    router.hang_up("b")
    at(clock, 6)
    router.wrap_up_done("b")  # b idle since 6
    at(clock, 9)
    router.wrap_up_done("a")  # a idle since 9, though a was idle longer before
    at(clock, 12)
    assert pairs(router.enqueue(call("c3"))) == [("c3", "b")]


def test_a_not_ready_agent_is_offered_nothing(router, clock):
    router.login("a", Role.AGENT)  # logged in = not ready ("login")
    assert router.agent("a").status == Status.NOT_READY and router.agent("a").reason == "login"
    assert router.enqueue(call("c1")) == [] and router.enqueue(call("c2", vip=True)) == []
    for t in (10, 100, 1000):
        at(clock, t)
        assert router.tick() == []
    assert router.agent("a").state == State.IDLE and router.queue.positions() == {"c2": 1, "c1": 2}
    assert pairs(router.ready("a")) == [("c2", "a")]
    assert router.not_ready("a", "break") == []  # set not ready while ringing: the offer is withdrawn
    a = router.agent("a")
    assert (a.status, a.reason, a.state, a.call) == (Status.NOT_READY, "break", State.IDLE, None)
    assert router.queue.positions() == {"c2": 1, "c1": 2}
    with pytest.raises(AgentError, match="reason code"):
        router.not_ready("a", "")


def test_ring_out_back_to_the_head_and_max_no_answer(router, clock):
    for name in ("a", "b"):
        router.login(name, Role.AGENT)
    router.ready("a")
    assert pairs(router.enqueue(call("c1"))) == [("c1", "a")]
    at(clock, 1)
    router.enqueue(call("c2"))
    router.ready("b")  # b takes c2 at once: c1 is offered to a
    assert router.agent("b").call == "c2"
    router.answer("b")
    at(clock, 2)
    router.enqueue(call("c3"))
    assert router.next_deadline() == 10
    at(clock, 9.999)
    assert router.tick() == [] and router.agent("a").state == State.OFFERED
    at(clock, 10)
    assert pairs(router.tick()) == [("c1", "a")]  # back at the head (before c3); a is the only one free
    assert router.agent("a").no_answer == 1 and router.agent("a").status == Status.READY
    at(clock, 20)
    assert router.tick() == []  # second ring-out in a row: max_no_answer = 2
    a = router.agent("a")
    assert (a.status, a.reason, a.state) == (Status.NOT_READY, "no answer", State.IDLE)
    assert router.queue.positions() == {"c1": 1, "c3": 2}
    assert pairs(router.ready("a")) == [("c1", "a")] and router.agent("a").no_answer == 0


def test_an_answer_resets_the_ring_out_count(router, clock):
    router.login("a", Role.AGENT)
    router.ready("a")
    router.enqueue(call("c1"))
    at(clock, 10)
    router.tick()  # one ring-out, then c1 again
    router.answer("a")
    assert router.agent("a").no_answer == 0


def test_abandon_while_offered_frees_the_agent_without_a_ring_out(router, clock):
    router.login("a", Role.AGENT)
    router.ready("a")
    router.enqueue(call("c1"))
    router.enqueue(call("c2"))
    assert pairs(router.abandon("c1")) == [("c2", "a")] and router.agent("a").no_answer == 0


def test_logout_during_a_call_takes_effect_at_hang_up(router, clock):
    router.login("a", Role.AGENT)
    router.ready("a")
    router.enqueue(call("c1"))
    router.answer("a")
    assert router.logout("a") is False
    a = router.agent("a")
    assert (a.status, a.state, a.logout_pending) == (Status.READY, State.TALKING, True)
    router.enqueue(call("c2"))
    at(clock, 5)
    assert router.call_ended("c1") == []  # the caller hung up: logged out, no wrap-up, nothing offered
    assert (a.status, a.state, a.call) == (Status.LOGGED_OUT, State.IDLE, None)
    assert router.queue.positions() == {"c2": 1}
    with pytest.raises(AgentError, match="logged out"):
        router.ready("a")


def test_logout_while_idle_is_at_once(router, clock):
    router.login("a", Role.AGENT)
    assert router.logout("a") is True and router.agent("a").status == Status.LOGGED_OUT


def test_wrap_up_timer(router, clock):
    router.login("a", Role.AGENT)
    router.ready("a")
    router.enqueue(call("c1"))
    router.answer("a")
    at(clock, 40)
    router.hang_up("a")
    router.enqueue(call("c2"))  # waits: a is in wrap-up
    assert router.agent("a").state == State.WRAP_UP and router.next_deadline() == 70
    at(clock, 69.9)
    assert router.tick() == []
    at(clock, 70.5)
    assert pairs(router.tick()) == [("c2", "a")]
    assert router.agent("a").idle_since == 70  # the wrap-up's end, not when the tick came


def test_wrong_moves_are_named(router, clock):
    router.login("a", Role.AGENT)
    with pytest.raises(AgentError, match="no call offered to answer"):
        router.answer("a")
    with pytest.raises(AgentError, match="not talking"):
        router.hang_up("a")
    with pytest.raises(AgentError, match="not in wrap-up"):
        router.wrap_up_done("a")
    with pytest.raises(AgentError, match="'zz' is not logged in"):
        router.ready("zz")
