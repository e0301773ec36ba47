"""The spandsp wrappers: each class does its one job on real signals.

DTMF receive at the standard's limits: test_dtmf.py; the echo canceller: test_echo.py; what the
libraries get wrong: test_dependency_quirks.py."""

from __future__ import annotations

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
    LossConcealer,
    Noise,
    ToneDetector,
    ToneGenerator,
    call_progress,
    dbm0,
    encode_callerid,
)

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


def test_package_docstring_example_runs():
    import doctest

    import drivers.dsp

    result = doctest.testmod(drivers.dsp)
    assert result.attempted >= 3, "the package docstring's example is gone (doctest found no example to run)"
    assert result.failed == 0
