"""The echo canceller (speexdsp's, ``drivers/dsp/echo.py``) and its guard against a diverging filter."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.dsp import G711, ULAW, DtmfGenerator, EchoCanceller, ToneGenerator, ToneSpec, dbm0
from tests.dsp.dtmf_signals import DIGITS, frames, ours

_ULAW = G711(ULAW)


def _speechlike(seconds: float, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    env = np.repeat(rng.uniform(0, 1, n // 800 + 1) > 0.3, 800)[:n]
    x = np.convolve(rng.standard_normal(n), np.ones(6) / 6, mode="same") * 6000 * env
    return x.astype(np.int16)


def test_echo_canceller_removes_echo_and_keeps_near_end_digits():
    tx = _speechlike(6)
    echo = np.zeros_like(tx)
    echo[40:] = (tx[:-40] * 0.2).astype(np.int16)  # 14 dB return loss, 5 ms
    gen = DtmfGenerator(level_dbm0=-12, on_ms=60, off_ms=60)
    gen.put(DIGITS)
    near = np.zeros_like(tx)
    keyed = gen.read(16 * 960)
    near[24000:24000 + len(keyed)] = keyed  # keys pressed while we talk (double talk)
    rx = np.clip(echo.astype(int) + near, -32768, 32767).astype(np.int16)
    ec = EchoCanceller()
    out = np.concatenate([ec.process(t, r) for t, r in zip(frames(tx), frames(rx))])
    residual = dbm0(out[8000:24000])
    assert dbm0(echo[8000:24000]) - residual > 20  # > 20 dB of echo return loss enhancement
    assert "".join(d.digit for d in ours(out)) == DIGITS
    assert ec.resets == 0  # a converging canceller is left alone


def test_echo_canceller_wants_whole_frames():
    with pytest.raises(ValueError, match="160-sample frames"):
        EchoCanceller().process(np.zeros(80, np.int16), np.zeros(80, np.int16))


def _pure_tone_call(ec: EchoCanceller, seconds: int = 70, wrong_ref: float = 0.05, seed: int = 0):
    """The bit-error test's call offline: we send a pure 600 Hz tone (-15 dBm0), the line returns
    its echo (14 dB return loss, 5 ms) and the caller keys 32-digit bursts over it. On ``wrong_ref``
    of the frames the canceller is given silence as the reference although the tone was played
    (what a lost frame's unknown echo reference does), which makes speexdsp's filter drift."""
    rng = np.random.default_rng(seed)
    n = seconds * 8000
    tx = _ULAW.decode(_ULAW.encode(ToneGenerator(ToneSpec(600, 0, -15, 0, 0)).read(n)))
    echo = np.zeros(n)
    echo[40:] = tx[:-40] * 0.2
    near = np.zeros(n)
    gen = DtmfGenerator(level_dbm0=-10, on_ms=60, off_ms=60)
    pos, sent = 8000, ""
    while pos < n - 5 * 8000:
        gen.put(DIGITS * 2)
        burst = gen.read(32 * 960)
        near[pos:pos + len(burst)] = burst
        pos += len(burst) + int(rng.integers(1000, 8000))
        sent += DIGITS * 2
    rx = _ULAW.decode(_ULAW.encode(np.clip(echo + near, -32768, 32767).astype(np.int16)))
    silence = np.zeros(160, np.int16)
    outs = [ec.process(silence if rng.random() < wrong_ref else tx[i:i + 160], rx[i:i + 160])
            for i in range(0, n, 160)]
    louder_db = [dbm0(o) - dbm0(rx[i * 160:i * 160 + 160]) for i, o in enumerate(outs)]
    quiet_after = [dbm0(o) for i, o in enumerate(outs) if i > 100 and not near[i * 160:i * 160 + 160].any()]
    got = "".join(d.digit for d in ours(np.concatenate(outs)))
    return sent, got, max(louder_db), max(quiet_after), dbm0(echo[-8000:])


def test_without_the_guard_a_drifting_canceller_loses_digits():
    """What the guard is for, measured on the scenario below with the guard off."""
    sent, got, louder_db, quiet_max, echo_db = _pure_tone_call(EchoCanceller(guard=False))
    assert got != sent  # digits lost
    assert louder_db > 10  # frames came out far louder than they went in
    assert quiet_max > echo_db + 10  # the residual between bursts: far above the echo itself


def test_the_guard_never_returns_more_than_it_was_given_and_no_digit_is_lost():
    ec = EchoCanceller()
    sent, got, louder_db, quiet_max, echo_db = _pure_tone_call(ec)
    assert got == sent
    assert louder_db <= 0.01  # never louder than the input (μ-law-quantised levels, float noise)
    assert quiet_max <= echo_db + 1  # at worst the echo itself, never a diverged filter's residual
    assert ec.passed_through > 0 and ec.resets > 0  # it did have to step in


def test_the_guard_passes_a_louder_frame_through_unchanged_and_resets_a_diverged_filter():
    """A reference that has nothing to do with the line forces the filter wrong: each louder frame
    comes back as it went in, and after three much louder frames in a row the filter restarts."""
    ec = EchoCanceller()
    tone = ToneGenerator(ToneSpec(600, 0, -10, 0, 0)).read(160 * 400)
    line = np.roll(tone, 20) // 3
    for i in range(0, 160 * 200, 160):  # converge on a real echo path
        ec.process(tone[i:i + 160], line[i:i + 160])
    mute = np.zeros(160, np.int16)
    for i in range(160 * 200, 160 * 400, 160):  # the echo vanishes (the far end hung up its hybrid)
        rx = mute + (i // 160 % 7)  # a little DC: not digital silence
        out = ec.process(tone[i:i + 160], rx)
        assert dbm0(out) <= dbm0(rx) + 1e-9
    assert ec.passed_through >= 3 and ec.resets >= 1
