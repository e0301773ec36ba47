"""A caller cannot tell a real account from an unknown one: a property test over the IVR's
authenticate node and the real Authenticator, on a line that plays prompts instantly.

Random sequences of calls (each a few attempts: wrong PIN, wrong PIN without '#', nothing keyed),
new days and an admin clearing alarms run once against a real account and once against an
unknown id, each on a fresh node: what the caller hears, prompt by prompt, and how each call
ends must be identical. The real account's right PIN is the one allowed difference, checked at
the end: it verifies unless the account is locked, and locked exactly when the unknown id is.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from node_agent.auth import Authenticator
from node_agent.config import FlowNode
from node_agent.ivr import Call, CallEnded, Ivr
from node_agent.store import Store

ACCOUNT, PIN, UNKNOWN = "6222001234", "482913", "6222009999"
CHEAP_KDF = "scrypt:n=2,r=1,p=1"  # the rules are under test here, not the hash's cost
AUTH_NODE = FlowNode("auth", "authenticate", {
    "account_prompt": "account", "pin_prompt": "pin", "wrong_prompt": "wrong", "blacklisted_prompt": "locked",
    "goodbye_prompt": "bye", "first_digit_timeout_ms": 5, "inter_digit_timeout_ms": 5,
    "next": "ok", "on_fail": "end"})


class Prompts:
    def get(self, name: str, language: str) -> str:
        return name


@dataclass
class Caller:
    """Keys an account and a PIN when asked; hangs up when asked again after its last attempt."""

    account: str
    attempts: list[str]  # the PIN keys of each attempt
    call: Call | None = None

    def prompt_played(self, name: str) -> None:
        call = self.call
        if name == "account":
            if not self.attempts:
                call.ended.set()  # the caller hangs up
                return
            for k in self.account + "#":
                call.keys.push(k)
        elif name == "pin":
            for k in self.attempts.pop(0):
                call.keys.push(k)


@dataclass
class Audio:
    caller: Caller
    playing: list[str] = field(default_factory=list)

    def write(self, prompt: str) -> None:
        self.playing.append(prompt)

    def clear(self) -> None:
        self.playing.clear()

    def reset(self) -> None:
        self.playing.clear()

    async def drained(self) -> None:
        await asyncio.sleep(0)
        if self.playing:  # the caller answers once the prompt has played to its end
            self.caller.prompt_played(self.playing.pop())


@dataclass
class Line:
    audio: Audio
    number: int = 1


@dataclass
class Node:
    """One fresh branch: its store, authenticator and IVR (the real ones), on its own clock."""

    dir: Path
    max_daily_failures: int
    day: int = 0

    def __post_init__(self) -> None:
        self.store = Store(self.dir / "node.db")
        self.auth = Authenticator(self.store, max_daily_failures=self.max_daily_failures, kdf=CHEAP_KDF,
                                  today=lambda: f"2026-11-{1 + self.day:02d}")
        self.auth.add_account(ACCOUNT, PIN)
        self.ivr = Ivr(config=SimpleNamespace(data_dir=self.dir), prompts=Prompts(), auth=self.auth, store=self.store)
        self.calls = 0

    async def call(self, account: str, attempts: list[str]) -> tuple[list[str], str]:
        """One call into the authenticate node: the prompts heard, in order, and how it ended."""
        self.calls += 1
        caller = Caller(account, list(attempts))
        call = Call(call_id=f"c{self.calls}", line=Line(Audio(caller)), language="en")
        caller.call = call
        try:
            end = await asyncio.wait_for(self.ivr._authenticate(call, AUTH_NODE), 30)
        except CallEnded:
            end = "caller hung up"
        return call.heard, end


PIN_KEYS = {"wrong": "000000#", "wrong_no_hash": "1234567", "nothing": ""}
calls = st.lists(st.sampled_from(sorted(PIN_KEYS)), max_size=4).map(lambda kinds: ("call", kinds))
steps = st.lists(st.one_of(calls, st.just(("next_day", None)), st.just(("clear_alarms", None))), max_size=10)


async def run(node: Node, account: str, plan: list) -> list:
    heard = []
    for op, kinds in plan:
        if op == "call":
            heard.append(await node.call(account, [PIN_KEYS[k] for k in kinds]))
        elif op == "next_day":
            node.day += 1
        else:
            for alarm in node.auth.alarms():
                node.auth.clear_alarm(alarm["id"], by="admin")
    return heard


LOCKED = (["account", "pin", "locked", "bye"], "end")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps, max_daily_failures=st.integers(1, 4))
def test_a_caller_hears_the_same_from_a_real_account_and_an_unknown_one(plan, max_daily_failures):
    async def both() -> tuple[list, list, tuple, tuple]:
        with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
            real, unknown = Node(Path(tmp, "real"), max_daily_failures), Node(Path(tmp, "unknown"), max_daily_failures)
            try:
                heard_real, heard_unknown = await run(real, ACCOUNT, plan), await run(unknown, UNKNOWN, plan)
                # the right PIN, once, at the end (the unknown id keys the same digits)
                final = await real.call(ACCOUNT, [PIN + "#"]), await unknown.call(UNKNOWN, [PIN + "#"])
                return heard_real, heard_unknown, *final
            finally:
                real.store.close()
                unknown.store.close()

    heard_real, heard_unknown, final_real, final_unknown = asyncio.run(both())
    assert heard_unknown == heard_real
    event("locked at the end" if final_real == LOCKED else "not locked at the end")
    event(f"{sum('locked' in heard for heard, _ in heard_real)} calls heard 'locked'")
    assert (final_real == LOCKED) == (final_unknown == LOCKED)
    if final_real != LOCKED:
        assert final_real == (["account", "pin"], "ok")  # verified: on to the next node
        assert final_unknown == (["account", "pin", "wrong", "account"], "caller hung up")


def test_the_property_test_sees_a_lockout():
    """The comparison above is only worth something if the sequences reach the locked state."""
    async def go() -> tuple[list, list]:
        with tempfile.TemporaryDirectory() as tmp:
            real, unknown = Node(Path(tmp, "real"), 1), Node(Path(tmp, "unknown"), 1)
            plan = [("call", ["wrong", "nothing", "wrong"])]
            try:
                return await run(real, ACCOUNT, plan), await run(unknown, UNKNOWN, plan)
            finally:
                real.store.close()
                unknown.store.close()

    heard_real, heard_unknown = asyncio.run(go())
    assert heard_real == heard_unknown == [(["account", "pin", "wrong"] * 2 + ["account", "pin", "locked", "bye"],
                                            "end")]
