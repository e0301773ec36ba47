"""DTMF receive at the standard's limits (ITU-T Q.24 / Bellcore), every digit at every alignment.

"Every alignment": our receiver analyses the stream every 20 samples (its hop), whatever the
frames, so what can change its verdict is where a tone starts against that grid. Each case steps
the start sample by sample over 160 samples: every phase of the grid 8 times over, and every
position against the 20 ms frames the card delivers (and against spandsp's 102-sample blocks,
for the comparisons). Tones are the shortest the standards allow to be accepted (40 ms on, 40 ms
off) unless a case says otherwise, and go through μ-law.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.audiofile import speak
from drivers.dsp import DtmfGenerator, DtmfReceiver
from tests.dsp.dtmf_signals import DIGITS, ENGLISH, MANDARIN, music, ours, spandsps, speech_text, stream, tone

ALIGNMENTS = range(160)

_OFFSETS = {"nominal": {}, "row +1.5%": {"row_offset": 0.015}, "row -1.5%": {"row_offset": -0.015},
            "column +1.5%": {"col_offset": 0.015}, "column -1.5%": {"col_offset": -0.015},
            "both +1.5%": {"row_offset": 0.015, "col_offset": 0.015},
            "both -1.5%": {"row_offset": -0.015, "col_offset": -0.015}}
ACCEPT = {f"twist {tw:+d} dB, {name}": dict(twist=tw, **off) for tw in (0, 8, -4) for name, off in _OFFSETS.items()}
ACCEPT |= {
    "-26 dBm0 per tone": dict(level=-26),
    "15 dB signal to noise": dict(noise_dbm0=-25),
    "15 dB signal to noise, twist +8 dB, both +1.5%": dict(noise_dbm0=-25, twist=8, row_offset=0.015, col_offset=0.015),
    "15 dB signal to noise, twist -4 dB, both -1.5%": dict(noise_dbm0=-25, twist=-4, row_offset=-0.015, col_offset=-0.015),
    "600 Hz at -17 dBm0 (a drifted echo canceller's residual)": dict(hum_dbm0=-17),
    "100 ms on, 100 ms off": dict(on=100, off=100),
}
REJECT = {f"{where} {off:+.1%}": dict(on=60, off=60, **{key: off for key in keys})
          for off in (0.035, -0.035)
          for where, keys in (("row", ["row_offset"]), ("column", ["col_offset"]), ("both", ["row_offset", "col_offset"]))}
REJECT |= {
    "20 ms tones": dict(on=20, off=60),
    "23 ms tones (Bellcore's must-reject)": dict(on=23, off=60),
    "23 ms tones, 8 dB twist": dict(on=23, off=60, twist=8),
    "-40 dBm0 per tone": dict(level=-40, on=60, off=60),
    "reverse twist 12 dB": dict(twist=-12, on=60, off=60),
    "normal twist 14 dB": dict(twist=14, on=60, off=60),
}


def heard(pcm: np.ndarray) -> str:
    return "".join(d.digit for d in ours(pcm))


@pytest.mark.parametrize("case", ACCEPT)
def test_every_digit_is_accepted_at_every_alignment_within_the_limits(case):
    missed = {lead: got for lead in ALIGNMENTS if (got := heard(stream(lead, **ACCEPT[case]))) != DIGITS}
    assert missed == {}, f"{len(missed)} of {len(ALIGNMENTS)} starts, e.g. {list(missed.items())[:3]}"


@pytest.mark.parametrize("case", REJECT)
def test_every_digit_is_rejected_at_every_alignment_outside_the_limits(case):
    taken = {lead: got for lead in ALIGNMENTS if (got := heard(stream(lead, **REJECT[case])))}
    assert taken == {}, f"{len(taken)} of {len(ALIGNMENTS)} starts, e.g. {list(taken.items())[:3]}"


def test_no_digit_in_five_minutes_of_speech_and_a_minute_of_music():
    """The talk-off material of the end-to-end test, straight into the receiver; spandsp's receiver
    finds none in it either (same signals)."""
    en = speak(speech_text(ENGLISH, 150, "en"), "en")
    zh = speak(speech_text(MANDARIN, 150, "cmn"), "cmn")
    tune = music(60)
    assert (len(en) + len(zh)) / 8000 >= 300
    for name, pcm in (("English", en), ("Mandarin", zh), ("music", tune)):
        assert ours(pcm) == [], name
        assert spandsps(pcm) == "", name


def test_duration_level_and_start_are_those_of_the_tone():
    gen = DtmfGenerator(level_dbm0=-10, on_ms=100, off_ms=100)  # spandsp's generator: nominal tones
    gen.put(DIGITS)
    pcm = np.concatenate([np.zeros(333, np.int16), gen.read(16 * 1600)])
    got = ours(pcm)
    assert "".join(d.digit for d in got) == DIGITS == spandsps(pcm)
    for i, d in enumerate(got):
        assert abs(d.start_ms - (333 // 8 + 200 * i)) <= 5, d
        assert 95 <= d.duration_ms <= 105, d
        assert -8 <= d.level_dbm0 <= -6, d  # two tones at -10 dBm0 each: -7 dBm0 together
    quiet = ours(stream(0, level=-26, on=60, off=60))
    assert [d.level_dbm0 for d in quiet] == [-23] * 16


def test_repeated_digits_with_40_ms_gaps_are_each_reported():
    for lead in range(0, 160, 7):
        assert heard(stream(lead, "5555##")) == "5555##"


def test_a_lost_frame_inside_a_tone_does_not_split_or_drop_the_digit():
    pcm = stream(0, "7", on=60, off=60)
    for lost_at in range(0, len(pcm) - 160, 160):
        rx, got = DtmfReceiver(), []
        for i in range(0, len(pcm) - 159, 160):
            got += rx.fill_in(160) if i == lost_at else rx.feed(pcm[i:i + 160])
        got += rx.feed(np.zeros(800, np.int16))
        assert [d.digit for d in got] == ["7"], lost_at
    # lost audio alone makes no digit, and the receiver keeps working after a long loss
    rx = DtmfReceiver()
    assert rx.fill_in(8000) == []
    assert heard(tone("9", on=60)) == "9"


def test_digits_come_out_whatever_the_chunking():
    pcm = np.concatenate([stream(13), stream(77, on=50, off=50)])
    rx, got = DtmfReceiver(), []
    sizes = np.random.default_rng(5).integers(1, 3000, size=200)
    pos = 0
    for n in sizes:
        got += rx.feed(pcm[pos:pos + n])
        pos += n
    assert pos >= len(pcm)
    assert "".join(d.digit for d in got) == DIGITS * 2


def test_bad_settings_are_refused_with_what_is_allowed():
    with pytest.raises(ValueError, match="max_freq_error"):
        DtmfReceiver(max_freq_error=0.2)
    with pytest.raises(ValueError, match="min_hits"):
        DtmfReceiver(min_hits=0)


def test_the_frequency_boundary_is_the_setting():
    """The tolerance is max_freq_error itself: 2 % passes at 2.25 %, fails at 1.75 %."""
    pcm = stream(3, row_offset=0.02, col_offset=0.02)
    assert heard(pcm) == DIGITS
    assert "".join(d.digit for d in ours(pcm, DtmfReceiver(max_freq_error=0.0175))) == ""
