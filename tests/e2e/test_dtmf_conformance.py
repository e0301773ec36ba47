"""DTMF conformance through the whole path: simulated line -> card firmware -> serial -> driver -> DSP.

Limits as in ITU-T Q.24 / Bellcore, every digit: accept 8 dB normal and 4 dB reverse twist,
±1.5 % frequency error on either tone or on both the same way (a drifting oscillator), 15 dB
signal to noise, -26 dBm0 per tone, all with the shortest tones and gaps the standards allow
(40 ms); reject ±3.5 % and 20 ms tones; no false digit in 5 minutes of speech (English and
Mandarin) and a minute of music-like tones. This is a representative subset: the full sweep,
every digit at every alignment, is tests/dsp/test_dtmf.py, on the receiver directly.

Alignment: the simulated caller starts each burst on a frame boundary; a 41 ms gap after each
40 ms tone moves every next digit 8 samples further against the 20 ms frames (and the
receiver's 20-sample grid), so the 16 digits of a burst start at 16 different positions.
The card runs 8x faster than real time (its clock is the media clock of the whole path, so
nothing else changes) to keep the suite short.
"""

from __future__ import annotations

import pytest

import hal
from drivers.audiofile import speak, write_wav
from hal import events as ev
from tests.dsp.dtmf_signals import DIGITS, ENGLISH, MANDARIN, music, speech_text
from tests.helpers import answered_call, collect_digits, connected

SPEED = "8"
SHORTEST = {"on_ms": 40, "off_ms": 41}  # see the module docstring: 16 alignments per burst


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from tests.conftest import start_sim, stop_sim

    s = start_sim(tmp_path_factory.mktemp("sim"), "--channels", "1", "--speed", SPEED)
    yield s
    stop_sim(s)


async def keyed(client, line, **tone) -> str:
    await client.call("dtmf", line=1, **tone)
    return await collect_digits(line, quiet_s=0.6, max_s=20)


async def test_accepts_within_the_limits(sim):
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        for twist in (8, -4):
            assert await keyed(client, line, digits=DIGITS, twist_db=twist, **SHORTEST) == DIGITS, twist
        for off in (0.015, -0.015):
            for where in ("row_offset", "col_offset", "freq_offset"):  # freq_offset: both tones
                assert await keyed(client, line, digits=DIGITS, **{where: off}, **SHORTEST) == DIGITS, (where, off)
        assert await keyed(client, line, digits=DIGITS, level_dbm0=-26, **SHORTEST) == DIGITS
        await client.call("impair", line=1, noise_dbm0=-25)  # 15 dB below each tone
        assert await keyed(client, line, digits=DIGITS, level_dbm0=-10, **SHORTEST) == DIGITS
        await client.call("impair", line=1, noise_dbm0=None)


async def test_rejects_outside_the_limits(sim):
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        for off in (0.035, -0.035):
            assert await keyed(client, line, digits=DIGITS, row_offset=off, on_ms=60, off_ms=60) == ""
            assert await keyed(client, line, digits=DIGITS, col_offset=off, on_ms=60, off_ms=60) == ""
            assert await keyed(client, line, digits=DIGITS, freq_offset=off, on_ms=60, off_ms=60) == ""
        assert await keyed(client, line, digits=DIGITS, on_ms=20, off_ms=60) == ""
        # and the line still works afterwards
        assert await keyed(client, line, digits="159#", on_ms=60, off_ms=60) == "159#"


async def test_no_false_digits_in_five_minutes_of_speech_and_a_minute_of_music(sim, tmp_path):
    en = speech_text(ENGLISH, 150, "en")
    zh = speech_text(MANDARIN, 150, "cmn")
    played_ms = len(speak(en, "en")) // 8 + len(speak(zh, "cmn")) // 8
    assert played_ms >= 300_000
    tune = write_wav(tmp_path / "music.wav", music(60))
    async with connected(sim) as (board, client):
        line = await answered_call(board, client, 1)
        await client.call("speak", line=1, text=en, voice="en", timeout_ms=400_000)
        await client.call("speak", line=1, text=zh, voice="cmn", timeout_ms=400_000)
        await client.call("play", line=1, wav=str(tune), timeout_ms=100_000)
        got = []
        while (e := await line.next_event(1.0)) is not None:
            got.append(e)
        false = [e for e in got if isinstance(e, ev.DigitReceived)]
        assert false == []
        assert not [e for e in got if isinstance(e, ev.HungUp)]  # nor a busy tone
        stats = await board.stats()
        assert stats["lines"][1]["frames"] >= (played_ms + 60_000) // 20 * 0.98  # it all went through
        assert await keyed(client, line, digits="42", on_ms=60, off_ms=60) == "42"  # detector still alive


async def test_reverse_twist_beyond_the_card_tolerance_is_rejected(sim):
    async with connected(sim, hal.BoardConfig()) as (board, client):
        line = await answered_call(board, client, 1)
        assert await keyed(client, line, digits="123", twist_db=-12, on_ms=60, off_ms=60) == ""
