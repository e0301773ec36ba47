"""The hub's call queue: priorities by node, line and verified account class; FIFO within a
priority; an offer not taken back at the head; positions; abandon; the [queue] settings."""

from __future__ import annotations

import pytest

from central_link.hq.config import HubConfigError, load
from central_link.hq.queue import Auth, CallQueue, Priorities, QueuedCall, QueueError
from central_link.hq.routing import RoutingConfig
from tests.central_link.harness import hub_config


def call(cid: str, node: str = "n1", line: int = 1, auth: Auth = Auth.NONE, cls: str | None = None) -> QueuedCall:
    return QueuedCall(cid, node, line, f"+86755{cid}", ("main", "2"), "zh", auth,
                      "acct-" + cid if auth == Auth.VERIFIED else None, cls)


RULES = Priorities(default=0, nodes={"vip-branch": 5}, lines={("n1", 3): 2}, classes={"vip": 10})


def test_priority_by_node_line_and_verified_class_highest_wins():
    q = CallQueue(RULES)
    assert q.enqueue(call("a"), 0).priority == 0
    assert q.enqueue(call("b", line=3), 0).priority == 2
    assert q.enqueue(call("c", node="vip-branch"), 0).priority == 5
    assert q.enqueue(call("d", line=3, auth=Auth.VERIFIED, cls="vip"), 0).priority == 10
    assert q.enqueue(call("e", node="vip-branch", auth=Auth.VERIFIED, cls="gold"), 0).priority == 5


def test_an_unverified_caller_has_no_account_to_rank_by():
    with pytest.raises(ValueError, match="only shown for a verified caller"):
        QueuedCall("x", "n1", 1, "123", auth=Auth.FAILED, account="42", account_class="vip")


def test_fifo_within_a_priority_and_positions():
    q = CallQueue(RULES)
    for i, c in enumerate([call("a"), call("b"), call("v1", auth=Auth.VERIFIED, cls="vip"), call("c"),
                           call("v2", auth=Auth.VERIFIED, cls="vip")]):
        q.enqueue(c, float(i))
    assert [c.id for c in q.waiting()] == ["v1", "v2", "a", "b", "c"]
    assert q.positions() == {"v1": 1, "v2": 2, "a": 3, "b": 4, "c": 5}
    assert q.position("b") == 4


def test_an_offer_not_taken_goes_back_to_the_head():
    q = CallQueue()
    for i, cid in enumerate("abc"):
        q.enqueue(call(cid), float(i))
    q.offer("a")
    assert q.position("a") == 0 and q.positions() == {"b": 1, "c": 2}
    q.enqueue(call("d"), 5.0)
    q.back("a")
    assert [c.id for c in q.waiting()] == ["a", "b", "c", "d"]


def test_abandon_and_take():
    q = CallQueue()
    for i, cid in enumerate("abc"):
        q.enqueue(call(cid), float(i))
    assert q.abandon("b").id == "b"
    assert q.positions() == {"a": 1, "c": 2}
    with pytest.raises(QueueError, match="was not offered"):
        q.take("a")
    q.offer("a")
    assert q.take("a").id == "a" and "a" not in q and len(q) == 1
    with pytest.raises(QueueError, match="no call 'b' in the queue"):
        q.position("b")


def test_screen_pop_carries_what_the_agent_is_shown():
    q = CallQueue()
    c = q.enqueue(call("a", auth=Auth.VERIFIED, cls="gold"), 100.0)
    assert c.pop(112.5) == {"id": "a", "node": "n1", "line": 1, "caller_id": "+86755a", "ivr_path": ["main", "2"],
                            "language": "zh", "auth": "verified", "account": "acct-a",
                            "account_class": "gold", "priority": 0, "waited_s": 12.5}


QUEUE_TOML = """
[queue]
offer_timeout_s = 12
wrap_up_s = 20
max_no_answer = 2
[queue.priorities]
default = 1
nodes = { "node-b" = 5 }
lines = { "node-a:3" = 2 }
classes = { vip = 10 }
"""


def test_the_queue_settings_from_the_hub_configuration(tmp_path, pki):
    path = hub_config(tmp_path, pki, ("node-a", "node-b"))
    path.write_text(path.read_text() + QUEUE_TOML)
    cfg = load(path)
    assert cfg.routing == RoutingConfig(offer_timeout_s=12, wrap_up_s=20, max_no_answer=2)
    assert cfg.priorities == Priorities(1, {"node-b": 5}, {("node-a", 3): 2}, {"vip": 10})
    assert cfg.priorities.of(call("x", node="node-a", line=3)) == 2


@pytest.mark.parametrize(("text", "want"), [
    ("[queue]\noffer_timeout_s = 0\n", "[queue] offer_timeout_s must be a number of seconds from 1 to 600, not 0"),
    ("[queue]\nmax_no_answer = true\n", "[queue] max_no_answer must be a whole number from 1 to 100, not True"),
    ("[queue]\nring = 3\n", "[queue] unknown setting 'ring'"),
    ("[queue.priorities]\nlines = { \"node-a\" = 2 }\n", "lines: 'node-a' is not NODE:LINE"),
    ("[queue.priorities]\nclasses = { vip = \"high\" }\n", "classes must be a table of whole numbers"),
])
def test_bad_queue_settings_are_named(tmp_path, pki, text, want):
    path = hub_config(tmp_path, pki, ("node-a",))
    path.write_text(path.read_text() + text)
    with pytest.raises(HubConfigError) as exc:
        load(path)
    assert want in str(exc.value)
