"""A caller who hangs up is let go at once: from every node type, during a prompt and during
each kind of wait, the line is released within 200 ms of the HAL's HungUp (or freed for the
next call after LineDown), with the final record committed first and saying where the caller
left. On a fake ``hal.Line``: no card, no simulator; every wait in the flow is 20 s long."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from hal import events as ev
from node_agent.auth import Outcome
from node_agent.config import NODE_TYPES
from node_agent.store import Store
from tests.node.fakeline import TIMEOUT_MS, OneLineNode, until

BOUND_S = 0.2

# (keys typed once answered, the node the caller is in, what the IVR is doing, the prompt heard
# last: None where keys typed ahead may cut it before it starts)
CASES = {
    "language-prompt": ("", "lang", "prompt", "lang"),
    "language-key": ("", "lang", "keys", "lang"),
    "menu-prompt": ("3", "menu", "prompt", "main"),
    "menu-key": ("3", "menu", "keys", "main"),
    "play-prompt": ("32", "info", "prompt", "info"),
    "authenticate-account-prompt": ("31", "auth", "prompt", "account"),
    "authenticate-account-first-digit": ("31", "auth", "keys", "account"),
    "authenticate-account-inter-digit": ("3162", "auth", "keys", None),
    "authenticate-pin-prompt": ("316222001234#", "auth", "prompt", "pin"),
    "authenticate-pin-inter-digit": ("316222001234#48", "auth", "keys", None),
    "authenticate-pin-check": ("316222001234#482913#", "auth", "check", None),
    "record-prompt": ("33", "message", "prompt", "beep"),
    "record-recording": ("33", "message", "recording", "beep"),
    "callback-prompt": ("34", "callback", "prompt", "cbnum"),
    "callback-first-digit": ("34", "callback", "keys", "cbnum"),
    "callback-inter-digit": ("34138", "callback", "keys", None),
    "collect-prompt": ("35", "code", "prompt", "code"),
    "collect-first-digit": ("35", "code", "keys", "code"),
    "collect-inter-digit": ("351", "code", "keys", None),
    "transfer-prompt": ("36", "agent", "prompt", "busy"),
    "hangup-prompt": ("37", "bye", "prompt", "bye"),
}
TYPES = {"lang": "language", "menu": "menu", "info": "play", "auth": "authenticate", "message": "record",
         "callback": "callback", "code": "collect", "agent": "transfer", "bye": "hangup"}


class SlowAuth:
    """A PIN check that takes 20 s: a hang-up during it must not wait for it."""

    def __init__(self) -> None:
        self.checking = False

    async def verify(self, account: str, pin: str, *, call_id: str, line: int = 0) -> Outcome:
        self.checking = True
        await asyncio.sleep(TIMEOUT_MS / 1000)
        return Outcome("wrong", account, 1, end_call=False)


def test_every_node_type_that_can_wait_is_covered():
    # a schedule decides on the clock alone: there is nothing in it to hang up during
    assert {TYPES[c[1]] for c in CASES.values()} | {"schedule"} == set(NODE_TYPES)


@pytest.mark.parametrize("event", ["HungUp", "LineDown"])
@pytest.mark.parametrize("case", list(CASES))
async def test_hang_up_releases_the_line_within_200_ms(tmp_path, case, event):
    keys, where, doing, heard = CASES[case]
    auth = SlowAuth() if doing == "check" else None
    # a prompt lasts 20 s when the hang-up comes during one, else one frame
    node = OneLineNode(tmp_path, prompt_ms=20000 if doing == "prompt" else 20, auth=auth)
    committed: list[dict] = []
    node.line.on_hangup = lambda: committed.extend(node.records())  # what is on disk as the line is released
    node.start()
    try:
        node.line.emit(ev.Ring(1, 1))
        await until(lambda: node.runner.current is not None, 5, "the call was answered")
        call = node.runner.current
        pushed = []  # the keys the runner handed to the IVR: all of them, before we look
        push = call.keys.push
        call.keys.push = lambda key: (pushed.append(key), push(key))
        node.keys(keys)

        def there() -> bool:
            if len(pushed) < len(keys) or call.path[-1:] != [where]:
                return False
            if heard is not None and call.heard[-1:] != [heard]:
                return False
            if doing == "check":
                return auth.checking
            return call.doing == doing and (doing != "keys" or not len(call.keys))
        await until(there, 5, f"the caller reached {where} ({doing})")
        if doing == "recording":  # some of the message, to be kept
            frames = node.line.audio.frames_in
            await until(lambda: node.line.audio.frames_in >= frames + 10, 5, "200 ms of message")
        t0 = node.line.emit(ev.HungUp(1, "loop_drop") if event == "HungUp" else ev.LineDown(1, "card reset"))
        if event == "HungUp":
            await until(lambda: node.line.released_at is not None, 5, "the line was released")
            released = node.line.released_at - t0
        else:  # the line is gone with the call: nothing to release, but the line is free again
            await until(lambda: node.line.idle_at is not None and node.line.idle_at > t0, 5, "the line was freed")
            released = node.line.idle_at - t0
        assert released < BOUND_S, f"{case}: released {released * 1000:.0f} ms after {event}"
    finally:
        await node.stop()
    [rec] = node.records()
    if event == "HungUp":
        # the final record was committed before the hang-up command, and it is the final one
        assert [r["disposition"] for r in committed] == ["caller_hangup"]
    assert rec["disposition"] == ("caller_hangup" if event == "HungUp" else "line_down")
    assert rec["ended_in"] == where and json.loads(rec["ivr_path"])[-1] == where
    store = Store(node.store.path)
    try:
        assert [i.key for i in store.outbox_pending() if i.kind == "call_record"] == [f"call-{rec['id']}"]
        if doing == "recording":  # the message as far as it got
            [msg] = list(store.db["recordings"].rows)
            assert msg["call_id"] == rec["id"] and msg["ms"] >= 200, msg
    finally:
        store.close()


async def test_the_release_does_not_queue_behind_busy_worker_threads(tmp_path):
    """Eight PIN checks at once fill the default worker threads for a few hundred ms: the final
    record's commit, which the release waits for, has a thread of its own."""
    node = OneLineNode(tmp_path)
    node.start()
    loop = asyncio.get_running_loop()
    busy: list[asyncio.Future] = []
    try:
        node.line.emit(ev.Ring(1, 1))
        await until(lambda: node.runner.current is not None, 5, "the call was answered")
        call = node.runner.current
        node.keys("3")
        await until(lambda: call.path[-1:] == ["menu"] and call.doing == "keys", 5, "the menu waits for a key")
        # every default worker thread busy, and more waiting (as with many PINs checked at once)
        busy = [loop.run_in_executor(None, time.sleep, 0.5) for _ in range(16)]
        t0 = node.line.emit(ev.HungUp(1, "loop_drop"))
        await until(lambda: node.line.released_at is not None, 5, "the line was released")
        assert node.line.released_at - t0 < BOUND_S, f"released {(node.line.released_at - t0) * 1000:.0f} ms after"
    finally:
        await asyncio.gather(*busy)
        await node.stop()
    assert node.records()[0]["disposition"] == "caller_hangup"
