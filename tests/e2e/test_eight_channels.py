"""Eight lines in real time at 921,600 baud for 60 s: no underrun or overrun anywhere."""

from __future__ import annotations

import asyncio

from drivers.dsp import ToneGenerator, ToneSpec
from tests.helpers import answered_call, connected

SECONDS = 60


async def test_eight_busy_lines_for_a_minute(sim_factory):
    sim = sim_factory("--channels", "8", "--baud", "921600")
    async with connected(sim) as (board, client):
        lines = []
        for n in range(1, 9):
            lines.append(await answered_call(board, client, n, cadence=[400, 400]))
        assert board.copies == 1  # eight lines fill the link: no room for redundant copies
        for i, line in enumerate(lines):
            line.audio.write(ToneGenerator(ToneSpec(400 + 100 * i, 0, -15, 0, 0)).read(8000 * (SECONDS + 5)))
        before = await board.stats()
        # the callers talk all along, each with a tone of its own
        for n in range(1, 9):
            await client.call("dtmf", line=n, digits="5" * (SECONDS // 2), on_ms=1000, off_ms=1000,
                              level_dbm0=-20, wait=False)
        await asyncio.sleep(SECONDS)
        after = await board.stats()
        sim_st = await client.call("status")
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
        assert SECONDS * 50 * 0.97 <= sent_up <= SECONDS * 50 * 1.05, (n, sent_up)
        assert card["audio_down"] - prev["audio_down"] >= sent_up - 5
    assert sim_st["port"]["tx_refused"] == 0 and sim_st["port"]["rx_overflow"] == 0
    assert sum(after["link"]["bad_frames"].values()) == 0
