"""End to end: simulated caller -> card firmware -> serial -> driver -> DSP -> HAL, and back."""

from __future__ import annotations

import asyncio

import pytest

import hal
from drivers.audiofile import speak, write_wav
from drivers.dsp import ToneGenerator, ToneSpec, dbm0
from hal import events as ev
from tests.helpers import answered_call, collect_digits, connected, until_heard, until_played, wait_for

DIGITS = "1234567890*#ABCD"


@pytest.fixture
def sim(sim_factory):
    return sim_factory("--channels", "2")


@pytest.mark.parametrize("mode", ["bell202", "v23", "dtmf"])
async def test_ring_caller_id_answer_and_exact_digits(sim, mode):
    # the node listens for the caller ID its exchange sends: V.23 (ETSI) or Bell 202, and DTMF
    modes = ("v23", "dtmf") if mode == "v23" else ("bell202", "dtmf")
    async with connected(sim, hal.BoardConfig(cid_modes=modes)) as (board, client):
        line = board.lines[0]
        ring = asyncio.create_task(client.call("ring", line=1, cid={"number": "13912345678", "name": "CHEN JIE",
                                                                      "mode": mode}))
        seen: list = []
        cid = await wait_for(line, ev.CallerIdReceived, timeout=15, seen=seen)
        rings = [e for e in seen if isinstance(e, ev.Ring)]
        # FSK caller ID comes between the first and second ring; DTMF caller ID before the first
        assert len(rings) == (0 if mode == "dtmf" else 1)
        assert cid.number == "13912345678"
        assert cid.name == ("CHEN JIE" if mode != "dtmf" else "")
        assert cid.mode == mode
        await wait_for(line, ev.Ring, timeout=15, seen=seen)  # answer on the next ring, as a node does
        await line.answer()
        assert (await ring)["answered"]
        await wait_for(line, ev.Answered, timeout=5)
        await client.call("dtmf", line=1, digits=DIGITS, on_ms=50, off_ms=50)
        assert await collect_digits(line, quiet_s=1.0, max_s=10) == DIGITS


async def test_tone_and_speech_from_the_host_are_heard_by_the_caller(sim):
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        tone = ToneGenerator(ToneSpec(1000, 0, -12, 0, 0)).read(8000 * 2)
        line.audio.write(tone)
        await until_heard(client, 1)  # through the link and the card's playout buffer
        heard = await client.call("listen", line=1, ms=1000)
        assert heard["peak_hz"] and abs(heard["peak_hz"][0] - 1000) < 5
        assert abs(heard["level_dbm0"] - dbm0(tone)) < 1.5
        line.audio.clear()
        words = speak("Good morning. Your call is important to us. Please hold.", "en")
        line.audio.write(words)
        heard = await client.call("listen", line=1, ms=len(words) // 8)
        assert heard["active_fraction"] > 0.4
        assert -35 < heard["level_dbm0"] < -5
        assert all(80 < f < 3400 for f in heard["peak_hz"])
        assert heard["digits"] == ""


async def test_caller_hangs_up_by_loop_break(sim):
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        await client.call("hangup", line=1, mode="loop_break")
        h = await wait_for(line, ev.HungUp, timeout=5)
        assert h.reason == "loop_drop"
        await line.hangup()
        await wait_for(line, ev.OnHook, timeout=5)
        assert (await client.call("wait_onhook", line=1))["onhook"]


async def test_caller_hangs_up_and_the_exchange_plays_busy_tone(sim):
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 2)
        await client.call("hangup", line=2, mode="busy_tone")
        h = await wait_for(line, ev.HungUp, timeout=8)
        assert h.reason == "busy_tone"


async def test_speech_is_not_taken_for_busy_tone_or_digits(sim):
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        await client.call("speak", line=1, text="I would like to ask about my account balance and a transfer.")
        got: list = []
        while (e := await line.next_event(1.0)) is not None:
            got.append(e)
        assert not [e for e in got if isinstance(e, (ev.HungUp, ev.DigitReceived))]


async def test_pulse_dialling_and_hook_flash_reach_the_line(sim):
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        await line.dial("5071", mode="pulse")
        await line.flash(150)
        st = await client.call("status")
        assert st["lines"][0]["pulses"] == "5071"
        assert st["lines"][0]["flashes"] == 1
        with pytest.raises(ValueError, match="pulse dialling takes"):
            await line.dial("12#", mode="pulse")


async def test_a_caller_who_gives_up_is_a_missed_call(sim):
    async with connected(sim) as (board, client):
        line = board.lines[1]
        await client.call("ring", line=2, cadence=[400, 600], max_rings=2, wait_answer=False)
        rings = []
        e = None
        while not isinstance(e, ev.RingingStopped):
            e = await line.next_event(15)
            assert e is not None, "no RingingStopped"
            if isinstance(e, ev.Ring):
                rings.append(e.count)
        assert rings == [1, 2]


async def test_gains_are_applied_by_the_card(sim):
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        tone = ToneGenerator(ToneSpec(800, 0, -10, 0, 0)).read(8000 * 3)
        line.audio.write(tone)
        await until_heard(client, 1)
        before = (await client.call("listen", line=1, ms=400))["level_dbm0"]
        await line.set_gains(0, -6)  # the card applies it as it plays, from its acknowledgement on
        after = (await client.call("listen", line=1, ms=400))["level_dbm0"]
        assert 5 < before - after < 7


async def test_listen_until_counts_a_prompt_that_played_while_the_caller_was_busy(sim, tmp_path):
    # a scripted caller's next listen can start late (it was keying, or the previous answer took a
    # while on a loaded machine): a prompt that played in between, even to its end, was still heard
    pcm = {"first": speak("Please enter your account number.", "en"), "second": speak("Wrong PIN.", "en")}
    refs = {name: str(write_wav(tmp_path / f"{name}.wav", samples)) for name, samples in pcm.items()}
    first, second = pcm["first"], pcm["second"]
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        line.audio.write(first)
        line.audio.write(second)
        got = await client.call("listen", line=1, ms=8000, prompts=refs, until="first")
        assert got["until_heard"]
        await until_played(line, timeout=len(second) / 8000 + 10)  # busy: the second prompt plays out unheeded
        got = await client.call("listen", line=1, ms=3000, prompts=refs, until="second")
        assert got["until_heard"], got["prompts"]
        assert [p["prompt"] for p in got["prompts"]] == ["first", "second"]
        # a prompt heard before the previous listen stopped is not heard again
        got = await client.call("listen", line=1, ms=1000, prompts=refs, until="first")
        assert not got["until_heard"]
