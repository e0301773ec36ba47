"""The spandsp/speexdsp wrappers: each class does its one job on real signals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from drivers.dsp import (
    ALAW,
    G711,
    ULAW,
    CallerId,
    CallerIdReceiver,
    DtmfGenerator,
    DtmfReceiver,
    EchoCanceller,
    LossConcealer,
    Noise,
    ToneDetector,
    ToneGenerator,
    call_progress,
    dbm0,
    encode_callerid,
    two_tone,
)
from drivers.dsp.dtmf import digit_frequencies

DIGITS = "1234567890*#ABCD"


def frames(pcm: np.ndarray):
    for i in range(0, len(pcm) - 159, 160):
        yield pcm[i:i + 160]


def detect(pcm: np.ndarray, rx: DtmfReceiver | None = None):
    rx = rx or DtmfReceiver()
    out = []
    for f in frames(pcm):
        out += rx.feed(f)
    out += rx.feed(np.zeros(800, dtype=np.int16))
    return out


@pytest.mark.parametrize("law", [ULAW, ALAW])
def test_g711_round_trip_is_within_quantisation(law):
    c = G711(law)
    x = (np.sin(np.arange(1600) * 2 * np.pi * 1000 / 8000) * 10000).astype(np.int16)
    octets = c.encode(x)
    assert len(octets) == 1600
    y = c.decode(octets)
    assert np.max(np.abs(y.astype(int) - x)) <= 10000 / 16  # segment step at that amplitude
    assert dbm0(c.decode(c.silence())) < -60


def test_g711_rejects_unknown_law():
    with pytest.raises(ValueError, match="unknown G.711 law"):
        G711(7)


def test_dtmf_generator_and_receiver_agree_with_duration_and_level():
    gen = DtmfGenerator(level_dbm0=-10, on_ms=100, off_ms=100)
    gen.put(DIGITS)
    pcm = gen.read(16 * 1600 + 800)
    got = detect(pcm)
    assert "".join(d.digit for d in got) == DIGITS
    for d in got:
        assert 60 <= d.duration_ms <= 140, d
        assert -12 <= d.level_dbm0 <= -4, d  # two tones at -10 dBm0 each: about -7 dBm0 together


def _tone(digit, *, twist=0.0, row_offset=0.0, col_offset=0.0, level=-10.0, on=60, off=60) -> np.ndarray:
    """One digit as a caller's phone might send it: twist is row minus column level."""
    fr, fc = digit_frequencies(digit)
    return two_tone(fr * (1 + row_offset), level + twist / 2, fc * (1 + col_offset), level - twist / 2, on, off)


def _keyed(digits, freq_offset=0.0, **tone):
    """Each digit on its own, from the start of spandsp's first block."""
    return "".join(d.digit for dg in digits
                   for d in detect(_tone(dg, row_offset=freq_offset, col_offset=freq_offset, **tone)))


def test_dtmf_receiver_meets_the_standard_limits():
    assert _keyed(DIGITS) == DIGITS
    assert _keyed(DIGITS, twist=8) == DIGITS  # normal twist: row tone 8 dB louder (at one start: all starts below)
    assert _keyed(DIGITS, twist=-4) == DIGITS  # reverse twist
    assert _keyed(DIGITS, level=-26) == DIGITS
    assert _keyed(DIGITS, on=40, off=40) == DIGITS
    assert _keyed(DIGITS, level=-40) == ""
    assert _keyed(DIGITS, on=20) == ""
    for off in (0.035, -0.035):
        assert _keyed(DIGITS, freq_offset=off) == ""


def test_dtmf_frequency_tolerance_and_spandsps_limit_on_d():
    """±1.5 % is accepted on every digit but D; spandsp detects D up to 1.4 % when both of its
    tones (941 + 1633 Hz) are off the same way, and at 1.5 % when either tone alone is."""
    for off in (0.015, -0.015):
        assert _keyed(DIGITS[:-1], freq_offset=off) == DIGITS[:-1]
        assert _keyed("D", freq_offset=off * 14 / 15) == "D"
        assert _keyed("D", freq_offset=off) == ""  # the known limit: this fails when spandsp improves
        fr, fc = digit_frequencies("D")
        assert "".join(d.digit for d in detect(two_tone(fr, -10, fc * (1 + off), -10, 60, 60))) == "D"
        assert "".join(d.digit for d in detect(two_tone(fr * (1 + off), -10, fc, -10, 60, 60))) == "D"


def _streamed(lead: int, **tone) -> str:
    """All digits in one stream after ``lead`` samples, through μ-law as on the line."""
    ulaw = G711(ULAW)
    tone = {"on": 50, "off": 50} | tone
    parts = [np.zeros(lead, dtype=np.int16)] + [_tone(dg, **tone) for dg in DIGITS]
    pcm = ulaw.decode(ulaw.encode(np.concatenate(parts + [np.zeros(800, dtype=np.int16)])))
    return "".join(d.digit for d in detect(pcm))


@pytest.mark.parametrize("limit, unreliable", [
    ({"twist": 8}, "0*"), ({"twist": 6}, ""), ({"twist": -4}, ""),
    ({"row_offset": 0.015}, ""), ({"row_offset": -0.015}, ""),
    ({"col_offset": 0.015}, "*"), ({"col_offset": -0.015}, ""),
    ({"on": 40, "off": 40}, ""), ({"level": -26}, ""),
])
def test_dtmf_limits_hold_at_every_alignment_but_spandsps_known_misses(limit, unreliable):
    """A digit's tone can start anywhere against spandsp's 102-sample blocks: try every start.

    spandsp misses 0 at 8 dB normal twist at 14 of the 102 starts, and * at 2 (there, and at
    +1.5 % on its column tone): the 941 Hz row tone leaks into the neighbouring column filter
    and fails the library's fixed 8 dB relative-peak check (docs/dsp.md, "DTMF limits").
    Every other digit is taken at every start, as is every digit at 6 dB of twist."""
    reliable = "".join(d for d in DIGITS if d not in unreliable)
    missed = dict.fromkeys(unreliable, 0)
    for lead in range(102):
        got = _streamed(lead, **limit)
        assert "".join(d for d in got if d not in unreliable) == reliable, (lead, got)
        for d in unreliable:
            missed[d] += d not in got
    for d, n in missed.items():
        # the known limit, measured: this fails when spandsp improves (then widen the tests)
        assert 0 < n <= 102 // 5, (d, n)


def test_dtmf_generator_rejects_bad_digits():
    with pytest.raises(ValueError, match="not a DTMF digit"):
        DtmfGenerator().put("12X")


@pytest.mark.parametrize("country", ["cn", "na"])
def test_busy_tone_detected_after_two_cycles_but_not_dial_tone(country):
    busy = call_progress("busy", country)
    det = ToneDetector({"busy": busy})
    gen = ToneGenerator(busy)
    events = [e for _ in range(150) for e in det.feed(gen.read())]
    assert events and events[0].name == "busy"
    first_ms = events[0].at_ms
    assert first_ms >= 2 * (busy.on_ms + busy.off_ms) * 0.8
    det2 = ToneDetector({"busy": busy})
    dial = ToneGenerator(call_progress("dial", country))
    assert not [e for _ in range(150) for e in det2.feed(dial.read()) if e.name]


def test_call_progress_tones_have_the_specified_frequencies():
    from simulator.analysis import peaks

    for name, country, want in [("dial", "cn", [450]), ("ringback", "na", [440, 480]), ("busy", "na", [480, 620])]:
        pcm = ToneGenerator(call_progress(name, country)).read(8000)
        got = sorted(peaks(pcm, n=len(want)))
        assert all(abs(g - w) < 10 for g, w in zip(got, sorted(want))), (name, got)
    with pytest.raises(ValueError, match="no 'howler' tone"):
        call_progress("howler", "cn")


@pytest.mark.parametrize("mode", ["bell202", "v23", "dtmf"])
def test_caller_id_round_trip(mode):
    cid = CallerId(number="075512345678", name="WANG FANG" if mode != "dtmf" else "", datetime="11231015" if mode != "dtmf" else "")
    audio = np.concatenate([np.zeros(1600, np.int16), encode_callerid(cid, mode), np.zeros(1600, np.int16)])
    rx = CallerIdReceiver(mode)
    got = [c for f in frames(audio) for c in rx.feed(f)]
    assert len(got) == 1
    assert got[0].number == cid.number
    assert got[0].name == cid.name
    assert got[0].mode == mode


def test_caller_id_rejects_unknown_mode():
    with pytest.raises(ValueError, match="unknown caller ID mode"):
        CallerIdReceiver("morse")


def test_loss_concealment_continues_a_tone_instead_of_silence():
    tone = ToneGenerator(call_progress("dial", "cn"))
    plc = LossConcealer()
    for _ in range(10):
        plc.good(tone.read())
    filled = plc.lost()
    assert dbm0(filled) > -20  # continues the tone (a zero frame would be -inf)


def test_noise_level():
    assert abs(dbm0(Noise(-30).read(16000)) - (-30)) < 1.0


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
    assert "".join(d.digit for d in detect(out)) == DIGITS


def test_echo_canceller_wants_whole_frames():
    with pytest.raises(ValueError, match="160-sample frames"):
        EchoCanceller().process(np.zeros(80, np.int16), np.zeros(80, np.int16))


def test_debian_spandsp_g168_canceller_still_prints_per_sample():
    """Why drivers/dsp/echo.py uses speexdsp: if this fails, Debian fixed spandsp; switch back."""
    code = ("import sys; sys.path.insert(0, '.');"
            "from drivers.dsp._spandsp import lib;"
            "s = lib.echo_can_init(256, 1);"
            "[lib.echo_can_update(s, (i * 37) % 2000 - 1000, 0) for i in range(400)]")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.count("\n") >= 400


def test_package_docstring_example_runs():
    import doctest

    import drivers.dsp

    assert doctest.testmod(drivers.dsp).failed == 0
