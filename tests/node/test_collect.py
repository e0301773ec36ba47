"""A collect node keeps an entry only if it has min_digits to max_digits digits (fast: a fake line)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from node_agent.config import FlowNode
from node_agent.ivr import Call, Ivr


class Audio:
    """A line's audio port that plays every prompt at once."""

    def write(self, pcm) -> None:
        pass

    async def drained(self) -> None:
        await asyncio.sleep(0)

    def clear(self) -> None:
        pass


NODE = FlowNode("code", "collect", {"prompt": "code", "min_digits": 3, "max_digits": 4, "store_as": "branch_code",
                                    "invalid_prompt": "invalid", "first_digit_timeout_ms": 100,
                                    "inter_digit_timeout_ms": 100, "retries": 2, "next": "ok", "on_fail": "fail"})


async def collect(tries: list[str]) -> tuple[str | None, Call]:
    """Run the node; the caller keys each of ``tries`` when asked (the prompt plays)."""
    ivr = Ivr(SimpleNamespace(data_dir=Path("/nonexistent")),
              SimpleNamespace(get=lambda name, language: np.zeros(160, np.int16)), None, None)
    call = Call("call-1", SimpleNamespace(audio=Audio(), number=1), "en")
    answers = iter(tries)
    play = ivr.play

    async def caller_answers(call, names, **kw):
        if names == [NODE["prompt"]]:
            for key in next(answers, ""):
                call.keys.push(key)
        return await play(call, names, **kw)

    ivr.play = caller_answers
    return await asyncio.wait_for(ivr._collect(call, NODE), 10), call


@pytest.mark.parametrize("tries, result, stored", [
    (["12#", "345#"], "ok", "345"),  # two digits and # is too short: asked again
    (["12", "3456"], "ok", "3456"),  # two digits and a pause: too short; four fill it up
    (["12#", "1#"], "fail", None),  # never long enough
    (["123#"], "ok", "123"),
])
def test_min_digits_is_honoured(tries, result, stored):
    outcome, call = asyncio.run(collect(tries))
    assert outcome == result
    assert call.values.get("branch_code") == stored
    assert call.heard.count("invalid") == sum(1 for t in tries if len(t.rstrip("#")) < 3)
