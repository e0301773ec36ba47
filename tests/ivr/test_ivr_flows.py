"""Scripted calls through the simulated card: what the caller heard, and what the node recorded."""

from __future__ import annotations

import json

import pytest

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
