"""Eight lines in real time at 921,600 baud for 60 s: every caller's digits arrive on its own
line, exactly and in order, and no underrun or overrun anywhere. Lines 5-8 send DTMF caller ID
before their first ring and are answered on the second, as the demo branch answers: their
on-hook streaming must not disturb the four calls already up."""

from __future__ import annotations

import asyncio
import time

import numpy as np

import hal
from drivers.dsp import ToneGenerator, ToneSpec
from hal import events as ev
from tests.helpers import answered_call, connected, wait_for

SECONDS = 60
KEYS = "1234567890*#ABCD"
CALLER_ID = {n: f"07558888000{n}" for n in range(5, 9)}
# what each line plays to its caller: clear of the DTMF frequencies (697 Hz and up), whose echo
# the receiver would hear as a second tone of the caller's digit (a 700 Hz one split 5s in two)
PLAYED_HZ = [300 + 40 * i for i in range(8)]


def keyed_on(n: int) -> str:
    """What the caller on line ``n`` keys: a digit every 2 s, in an order of its own."""
    return (KEYS * 3)[n:n + SECONDS // 2]


async def digits_on(line: hal.Line, count: int, timeout: float) -> str:
    """The digits ``line`` reports until ``count`` came (or ``timeout`` passed)."""
    got = ""
    end = time.monotonic() + timeout
    while len(got) < count and (left := end - time.monotonic()) > 0:
        e = await line.next_event(left)
        if isinstance(e, ev.DigitReceived):
            got += e.digit
    return got


async def answered_on_the_second_ring(board: hal.Board, client, n: int) -> hal.Line:
    """Ring line ``n`` with DTMF caller ID before the first ring; answer on the second ring."""
    line = board.lines[n - 1]
    ringing = asyncio.create_task(client.call("ring", line=n, cid={"number": CALLER_ID[n], "mode": "dtmf"},
                                              cadence=[400, 400]))
    seen: list = []
    try:
        while (await wait_for(line, ev.Ring, timeout=15, seen=seen)).count < 2:
            pass
    except BaseException:
        ringing.cancel()
        raise
    await line.answer()
    assert (await ringing)["answered"]
    await wait_for(line, ev.Answered, timeout=5)
    assert [(e.number, e.mode) for e in seen if isinstance(e, ev.CallerIdReceived)] == [(CALLER_ID[n], "dtmf")]
    return line


def tone(i: int) -> np.ndarray:
    return ToneGenerator(ToneSpec(PLAYED_HZ[i], 0, -15, 0, 0)).read(8000 * (SECONDS + 30))


async def test_eight_busy_lines_for_a_minute(sim_factory):
    sim = sim_factory("--channels", "8", "--baud", "921600")
    async with connected(sim) as (board, client):
        lines = []
        for n in range(1, 5):
            lines.append(await answered_call(board, client, n, cadence=[400, 400]))
            lines[-1].audio.write(tone(n - 1))
        assert board.copies == 2
        calls_up = await board.stats()
        lines += await asyncio.gather(*(answered_on_the_second_ring(board, client, n) for n in range(5, 9)))
        ringing_done = await board.stats()
        for n in range(1, 5):  # the caller ID windows took no room from the calls' audio
            a, b = ringing_done["card"][f"line{n}"], calls_up["card"][f"line{n}"]
            assert {k: a[k] - b[k] for k in ("late", "underruns", "overruns", "lost")} == dict.fromkeys(
                ("late", "underruns", "overruns", "lost"), 0), (n, a, b)
            assert ringing_done["lines"][n]["lost"] == 0, (n, ringing_done["lines"][n])
        for i, line in enumerate(lines[4:], start=4):
            line.audio.write(tone(i))
        assert board.copies == 1  # eight lines fill the link: no room for redundant copies
        before = await board.stats()
        t0 = time.monotonic()
        # the callers talk all along, each with a tone of its own, and key over it
        for n in range(1, 9):
            await client.call("dtmf", line=n, digits=keyed_on(n), on_ms=1000, off_ms=1000, level_dbm0=-20, wait=False)
        got = await asyncio.gather(*(digits_on(line, len(keyed_on(n)), SECONDS + 20)
                                     for n, line in enumerate(lines, start=1)))
        wall = time.monotonic() - t0
        after = await board.stats()
        sim_st = await client.call("status")
        extra = []
        for line in lines:  # nothing more was heard on any line (what is already queued)
            while (e := await line.next_event(0.05)) is not None:
                if isinstance(e, ev.DigitReceived):
                    extra.append((line.number, e.digit))
    wrong = {n: (got[n - 1], keyed_on(n)) for n in range(1, 9) if got[n - 1] != keyed_on(n)}
    assert not wrong, f"lines whose digits did not all arrive (heard, keyed), after {wall:.0f} s: {wrong}; {after}"
    assert not extra, f"digits nobody keyed: {extra}"
    for n in range(1, 9):
        card = after["card"][f"line{n}"]
        prev = before["card"][f"line{n}"]
        assert card["underruns"] == 0, (n, card)
        assert card["overruns"] == 0, (n, card)
        assert card["lost"] == 0, (n, card)
        host = after["lines"][n]
        assert host["lost"] == 0, (n, host)
        # the card clock ran in real time and every frame crossed the link both ways
        sent_up = card["audio_up"] - prev["audio_up"]
        assert wall * 50 * 0.97 <= sent_up <= wall * 50 * 1.05 + 10, (n, sent_up, wall)
        assert card["audio_down"] - prev["audio_down"] >= sent_up - 5
    assert sim_st["port"]["tx_refused"] == 0 and sim_st["port"]["rx_overflow"] == 0
    assert sum(after["link"]["bad_frames"].values()) == 0
