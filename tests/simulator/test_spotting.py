"""The simulated caller's prompt spotting, which every scripted IVR call relies on."""

from __future__ import annotations

import numpy as np

from drivers.audiofile import speak
from simulator.analysis import Spotter, spot

TEXTS = {"welcome": "Welcome to the branch.", "menu": "For account services press one.",
         "hours": "We are open from nine to five.", "bye": "Thank you for calling. Goodbye."}


def a_call() -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    refs = {name: speak(text) for name, text in TEXTS.items()}
    order = ["welcome", "menu", "hours", "menu", "hours", "menu", "bye"]
    rng = np.random.default_rng(7)
    parts = []
    for name in order:  # pauses of varying length and some line noise between prompts
        parts += [refs[name], (rng.standard_normal(int(rng.integers(800, 12000))) * 30).astype(np.int16)]
    return refs, np.concatenate(parts), order


def test_spot_finds_the_prompts_in_order_and_a_cut_one_as_cut():
    refs, call, order = a_call()
    hits = spot(call, refs)
    assert [h["prompt"] for h in hits] == order
    cut = np.concatenate([refs["menu"][: len(refs["menu"]) // 2], refs["bye"]])  # barge-in
    hits = spot(cut, refs)
    assert [h["prompt"] for h in hits] == ["menu", "bye"]
    assert hits[0]["ms"] < hits[0]["full_ms"] * 0.6 and hits[1]["ms"] == hits[1]["full_ms"]


def test_a_spotter_fed_a_growing_call_answers_as_spotting_the_whole_call():
    refs, call, _ = a_call()
    spotter = Spotter(refs)
    # listens stop anywhere: in a prompt's opening, mid-prompt, in a pause
    for upto in list(range(4000, len(call), 5111)) + [len(call)]:
        assert spotter.update(call[:upto]) == spot(call[:upto], refs), f"after {upto} samples"
    # a new call (the recording starts again) is not mixed with the last one
    assert spotter.update(call[:30000]) == spot(call[:30000], refs)
