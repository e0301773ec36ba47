"""Scripted calls through the simulated card: what the caller heard, and what the node recorded."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from hal import events as ev
from tests.ivr.harness import HOLIDAY_10AM, SUNDAY_10AM, WEEKDAY_10AM, branch, records, script, wait_idle


@pytest.fixture
def sim(sim_factory):
    return sim_factory("--channels", "2")


async def test_menu_navigation_and_an_invalid_key(sim, tmp_path):
    """An invalid key is told so and the menu asked again; a key pressed while "invalid choice"
    plays does not answer the menu (else the caller would hear the information without the menu)."""
    async with branch(sim, tmp_path) as (node, client, refs):
        heard, _ = await script(client, refs, [
            {"op": "ring", "cadence": [500, 500]},
            {"op": "listen", "until": "lang.en", "ms": 5000},
            {"op": "dtmf", "digits": "3"},
            {"op": "listen", "until": "main.en", "ms": 5000},
            # 9 is not an option; the 2 keyed 300 ms later, while "invalid" plays, is dropped
            # (one keying, so the gap does not depend on how soon an answer comes back)
            {"op": "dtmf", "digits": "92", "on_ms": 60, "off_ms": 300},
            {"op": "listen", "until": "main.en", "ms": 8000},
            {"op": "dtmf", "digits": "2"},
            {"op": "listen", "until": "main.en", "ms": 8000},
            {"op": "hangup"},
        ])
        await wait_idle(node)
    assert heard == ["lang.cmn", "lang.en", "main.en", "invalid.en", "main.en", "info.en", "main.en"]
    rec = records(node)[-1]
    assert json.loads(rec["ivr_path"])[:5] == ["language", "hours", "menu", "info", "hours"]
    assert rec["disposition"] == "caller_hangup"


async def test_timeouts_retries_and_the_after_last_retry_path(sim, tmp_path):
    async with branch(sim, tmp_path) as (node, client, refs):
        heard, res = await script(client, refs, [
            {"op": "ring", "cadence": [500, 500]},
            {"op": "listen", "ms": 20000},  # press nothing at all
            {"op": "wait_onhook", "timeout_ms": 5000},
        ])
        await wait_idle(node)
    # the language question, asked in each language on offer, times out once (retries = 1) and
    # the call goes on in English;
    # the menu asks twice, says nothing was pressed each time, then says goodbye and hangs up
    assert heard == ["lang.cmn", "lang.en", "main.en", "noinput.en", "main.en", "noinput.en", "bye.en"]
    assert res[-1]["onhook"] is True
    rec = records(node)[-1]
    assert json.loads(rec["ivr_path"]) == ["language", "hours", "menu", "bye"]
    assert rec["disposition"] == "completed"


async def test_barge_in_and_keys_typed_ahead(sim, tmp_path):
    async with branch(sim, tmp_path) as (node, client, refs):
        heard, res = await script(client, refs, [
            {"op": "ring", "cadence": [500, 500]},
            {"op": "listen", "ms": 600},
            {"op": "dtmf", "digits": "32", "on_ms": 60, "off_ms": 60},  # English, then "2" before the menu
            {"op": "listen", "ms": 5000},
            {"op": "hangup"},
        ])
        await wait_idle(node)
    lang = res[-2]["prompts"][0]
    assert lang["prompt"] == "lang.cmn" and lang["ms"] < lang["full_ms"] - 300  # cut short by the key
    # the question was not asked again in English; the typed-ahead 2 answered the menu before
    # its prompt was played: straight to the information
    assert heard[:2] == ["lang.cmn", "info.en"]
    assert json.loads(records(node)[-1]["ivr_path"])[:4] == ["language", "hours", "menu", "info"]


async def test_language_switch(sim, tmp_path):
    async with branch(sim, tmp_path) as (node, client, refs):
        heard, _ = await script(client, refs, [
            {"op": "ring", "cadence": [500, 500]},
            {"op": "listen", "until": "lang.en", "ms": 5000},
            {"op": "dtmf", "digits": "1"},  # 普通话
            {"op": "listen", "until": "main.cmn", "ms": 6000},
            {"op": "dtmf", "digits": "2"},
            {"op": "listen", "until": "info.cmn", "ms": 8000},
            {"op": "hangup"},
        ])
        await wait_idle(node)
    assert heard == ["lang.cmn", "lang.en", "main.cmn", "info.cmn"]


@pytest.mark.parametrize("when,menu", [(SUNDAY_10AM, "night.en"), (HOLIDAY_10AM, "night.en"),
                                       (WEEKDAY_10AM, "main.en")])
async def test_night_mode_by_a_fixed_clock(sim, tmp_path, when, menu):
    async with branch(sim, tmp_path, clock=when) as (node, client, refs):
        heard, _ = await script(client, refs, [
            {"op": "ring", "cadence": [500, 500]},
            {"op": "listen", "until": "lang.en", "ms": 5000},
            {"op": "dtmf", "digits": "3"},
            {"op": "listen", "until": menu, "ms": 5000},
            {"op": "hangup"},
        ])
        await wait_idle(node)
    assert heard[2] == menu
    assert json.loads(records(node)[-1]["ivr_path"])[2] == ("menu" if menu == "main.en" else "night")


class ReleaseClock:
    """When line 1's HAL reported the caller gone (HungUp or LineDown, as the HAL emits it) and
    when the node then sent the hang-up command and had it confirmed by the card."""

    def __init__(self, node) -> None:
        line = node.runners[0].line
        self.gone: float | None = None
        self.sent: float | None = None
        self.confirmed: float | None = None
        emit, hangup = line._emit, line.hangup

        def timed_emit(event):
            if isinstance(event, (ev.HungUp, ev.LineDown)) and self.gone is None:
                self.gone = time.monotonic()
            emit(event)

        async def timed_hangup():
            self.sent = time.monotonic()
            await hangup()
            self.confirmed = time.monotonic()
        line._emit, line.hangup = timed_emit, timed_hangup

    def reset(self) -> None:
        self.gone = self.sent = self.confirmed = None


# the node type -> the keys that lead there, the prompt it plays, and whether the caller hangs up
# while that prompt plays or while the node then waits for a key (or records); the node it is in
INSIDE = {
    "language": ("", "lang", "keys", "language"),
    "menu": ("3", "main", "prompt", "menu"),
    "play": ("32", "info", "prompt", "info"),
    "authenticate": ("31", "account", "keys", "auth"),
    "record": ("33", "beep", "recording", "message"),
    "callback": ("34", "cbnum", "keys", "callback"),
    "collect": ("35", "code", "keys", "code"),
    "hangup": ("30", "bye", "prompt", "bye"),  # via the agent's transfer (no prompt here) and its fallback
}
SENT_WITHIN_S = 0.2  # the promise: from the HAL event to the hang-up command
CONFIRMED_WITHIN_S = 0.4  # plus the command's round trip over the serial link to the card and back


async def _until_in(node, where: str, doing: str, prompt: str, timeout: float = 8.0) -> None:
    """Until line 1's IVR is in node ``where`` doing ``doing``, past (or at) ``prompt``."""
    runner = node.runners[0]
    end = time.monotonic() + timeout
    seen = None
    while True:
        call = runner.current
        if call:
            seen = (call.path, call.heard, call.doing)
            if call.path[-1:] == [where] and call.heard[-1:] == [prompt] and call.doing == doing:
                return
        if time.monotonic() > end:
            raise AssertionError(f"never in {where} ({doing} after {prompt}); last seen (path, heard, doing) {seen}")
        await asyncio.sleep(0.01)


async def test_hang_up_in_every_node_type_is_released_within_200_ms(sim, tmp_path):
    async with branch(sim, tmp_path) as (node, client, refs):
        clock = ReleaseClock(node)
        for kind, (keys, prompt, doing, where) in INSIDE.items():
            clock.reset()
            steps = [{"op": "ring", "cadence": [500, 500]}, {"op": "listen", "until": "lang.en", "ms": 5000}]
            for k in keys:
                steps += [{"op": "dtmf", "digits": k}, {"op": "listen", "ms": 300}]
            await script(client, refs, steps)
            await _until_in(node, where, doing, prompt)
            if doing == "recording":
                await client.call("speak", line=1, text="hello")
            await client.call("hangup", line=1)
            await wait_idle(node)
            assert clock.gone is not None and clock.sent is not None and clock.confirmed is not None, kind
            sent, confirmed = clock.sent - clock.gone, clock.confirmed - clock.gone
            assert sent < SENT_WITHIN_S, f"{kind}: hang-up command {sent * 1000:.0f} ms after the HAL event"
            assert confirmed < CONFIRMED_WITHIN_S, f"{kind}: released {confirmed * 1000:.0f} ms after the HAL event"
            rec = records(node)[-1]
            assert (rec["disposition"], rec["ended_in"]) == ("caller_hangup", where), (kind, rec)
            assert json.loads(rec["ivr_path"])[-1] == where
        rec = records(node)
        assert len(rec) == len(INSIDE)
        # the message left before hanging up is kept
        recorded = rec[list(INSIDE).index("record")]["id"]
        kept = {r["call_id"]: r for r in node.store.db["recordings"].rows}
        assert recorded in kept and kept[recorded]["ms"] > 300, kept
