"""The caller -> agent filter (node_agent.dtmf_mask): no tone a caller keys reaches the agent, speech
passes bit-exact behind a delay line of the documented length, and a capture mutes from the next frame."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.audiofile import speak
from drivers.dsp import DtmfReceiver
from drivers.dsp.levels import dbm0
from node_agent.dtmf_mask import DtmfMask, delay_samples
from tests.conftest import ROOT
from tests.dsp.dtmf_signals import DIGITS, ENGLISH, MANDARIN, music, ours, speech_text, stream, tone
from tests.dsp.test_dtmf import ACCEPT

FRAME = 160
ALIGNMENTS = range(0, 160, 5)  # every 5th start against the frames and the detector's windows


def through(mask: DtmfMask, pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pcm`` (padded to whole frames and run out of the delay line) through ``mask``: what the agent
    gets, and which of its samples were comfort noise."""
    pcm = np.concatenate([pcm, np.zeros((-len(pcm)) % FRAME + 2 * FRAME, np.int16)])
    out, replaced = [], []
    for i in range(0, len(pcm), FRAME):
        out.append(mask.process(pcm[i:i + FRAME]))
        replaced.append(mask.last_replaced if mask.last_replaced is not None else np.zeros(FRAME, bool))
    return np.concatenate(out), np.concatenate(replaced)


def aligned(mask: DtmfMask, pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input, output, replaced), the output shifted back by the mask's delay: sample i of each is the same instant."""
    out, replaced = through(mask, pcm)
    d = mask.delay
    return pcm, out[d:d + len(pcm)], replaced[d:d + len(pcm)]


@pytest.mark.parametrize("case", ACCEPT)
def test_no_digit_reaches_the_agent_at_every_alignment_within_the_limits(case):
    kw = ACCEPT[case]
    on, off = kw.get("on", 40), kw.get("off", 40)
    problems = {}
    for lead in ALIGNMENTS:
        mask = DtmfMask()
        pcm, out, replaced = aligned(mask, stream(lead, **kw))
        tones = np.zeros(len(pcm), bool)
        for k in range(len(DIGITS)):
            start = lead + k * (on + off) * 8
            tones[start:start + on * 8] = True
        heard = "".join(d.digit for d in ours(out))
        kept = ~replaced
        if (heard or (tones & kept).any() or not np.array_equal(out[kept], pcm[kept])
                or mask.stats.tones_removed != len(DIGITS) or mask.stats.late_onsets):
            problems[lead] = (heard, int((tones & kept).sum()), mask.stats)
    assert problems == {}, f"{len(problems)} of {len(ALIGNMENTS)} starts, e.g. {list(problems.items())[:3]}"


def test_a_whole_pin_keyed_unprompted_between_words_leaves_no_digit():
    words = speak("My account number is", "en")
    pin = np.concatenate([tone(d, level=-20, on=45, off=45) for d in "4829137#"])
    pcm = np.concatenate([words, pin, words])
    mask = DtmfMask()
    _, out, replaced = aligned(mask, pcm)
    assert ours(pcm) and [d.digit for d in ours(pcm)] == list("4829137#")  # the caller did key them
    assert ours(out) == []
    # only the tones (and a few ms either side) were replaced: the words around them are whole
    n_words = len(words)
    assert not replaced[:n_words - 160].any() and not replaced[n_words + len(pin) + 160:].any()
    assert replaced[n_words:n_words + len(pin)].sum() >= 8 * 45 * 8


def test_speech_and_music_pass_bit_exact_only_delayed():
    en = speak(speech_text(ENGLISH, 60, "en"), "en")
    zh = speak(speech_text(MANDARIN, 60, "cmn"), "cmn")
    for name, pcm in (("English", en), ("Mandarin", zh), ("music", music(30))):
        mask = DtmfMask()
        pcm, out, replaced = aligned(mask, pcm)
        assert not replaced.any(), f"{name}: {replaced.sum()} samples of it were taken for a tone"
        assert np.array_equal(out, pcm), name
        assert mask.stats.tones_removed == 0


def test_the_delay_is_the_documented_30_ms():
    mask = DtmfMask()
    assert mask.delay == delay_samples() == 240 and mask.delay_ms == 30.0
    click = np.zeros(FRAME * 6, np.int16)
    click[333] = 12000
    out, _ = through(mask, click)
    assert np.flatnonzero(out).tolist() == [333 + 240]
    assert "30 ms" in (ROOT / "docs" / "node.md").read_text()
    off = DtmfMask(flatten=False)
    assert off.delay == 0 and np.array_equal(off.process(click[:FRAME]), click[:FRAME])


def test_comfort_noise_is_at_the_line_s_noise_level():
    rng = np.random.default_rng(3)
    rms = 22624 / np.sqrt(2) * 10 ** (-55 / 20)
    pcm = np.concatenate([np.zeros(8000, np.int16), stream(0, "1234")]).astype(np.float64)
    pcm = np.clip(pcm + rng.standard_normal(len(pcm)) * rms, -32768, 32767).astype(np.int16)
    mask = DtmfMask()
    _, out, replaced = aligned(mask, pcm)
    assert mask.stats.tones_removed == 4
    assert abs(dbm0(out[replaced]) - (-55)) < 3, dbm0(out[replaced])


def test_a_capture_mutes_from_the_very_next_frame_and_keeps_what_it_covered():
    speech = speak(speech_text(ENGLISH, 3, "en"), "en")[:8000 * 3]
    frames = [speech[i:i + FRAME] for i in range(0, len(speech) - FRAME + 1, FRAME)]
    mask = DtmfMask()
    for f in frames[:40]:
        mask.process(f)
    mask.capture_start()
    assert mask.capturing
    # the caller keys during the capture, right up to its end
    keyed = np.concatenate([tone(d, on=60, off=40) for d in "48291"])
    during = [keyed[i:i + FRAME] for i in range(0, len(keyed), FRAME)]
    outs, whole = [], []
    for f in during:
        outs.append(mask.process(f))
        whole.append(mask.last_replaced is not None and mask.last_replaced.all())
    mask.capture_end()
    after = [mask.process(f) for f in frames[40:80]]
    replaced_after = mask.last_replaced
    # every frame of the capture was comfort noise from the first one (delay-line content included)
    assert all(whole) and max(dbm0(f) for f in outs) < -60
    assert ours(np.concatenate(outs + after)) == []
    # after the capture: what the delay line still held from it (240 samples) is noise, then speech again
    tail = np.concatenate(after)
    assert dbm0(tail[:240]) < -60
    assert np.array_equal(tail[240:], np.concatenate(frames[40:80])[:len(tail) - 240])
    assert replaced_after is None and mask.stats.capture_frames == len(during)


def test_a_capture_with_flatten_off_mutes_the_next_frame_too():
    mask = DtmfMask(flatten=False)
    loud = tone("5", on=200, off=0)[:FRAME]
    assert np.array_equal(mask.process(loud), loud)
    mask.capture_start()
    out = mask.process(loud)
    assert mask.last_replaced.all() and dbm0(out) < -60
    mask.capture_end()
    assert np.array_equal(mask.process(loud), loud)


def test_the_node_s_prompts_are_mixed_in_for_the_agent_during_a_capture():
    mask = DtmfMask()
    prompt = (np.sin(np.arange(FRAME * 5) * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)
    mask.capture_start()
    mask.play(prompt)
    keyed = tone("7", on=100, off=0)
    outs = [mask.process(keyed[i:i + FRAME]) for i in range(0, FRAME * 5, FRAME)]
    got = np.concatenate(outs).astype(np.int32)
    assert dbm0((got - prompt).astype(np.int16)) < -60  # the prompt, plus comfort noise: no tone
    assert not mask.prompt_playing
    mask.play(prompt)
    mask.stop_prompt()  # barge-in on the line: the agent stops hearing it too
    assert dbm0(mask.process(keyed[:FRAME])) < -60
    explicit = mask.process(keyed[:FRAME], prompt=prompt[:FRAME])
    assert dbm0((explicit.astype(np.int32) - prompt[:FRAME]).astype(np.int16)) < -60


def test_bad_input_is_refused_with_what_is_expected():
    with pytest.raises(ValueError, match="160 samples"):
        DtmfMask().process(np.zeros(80, np.int16))
    with pytest.raises(ValueError, match="hits must be 2 to 10"):
        DtmfMask(hits=11)


def test_window_verdicts_come_with_the_same_digits_as_feed():
    pcm = stream(37)
    a, b = DtmfReceiver(), DtmfReceiver()
    plain = [d for i in range(0, len(pcm) - FRAME + 1, FRAME) for d in a.feed(pcm[i:i + FRAME])]
    windows = []
    with_verdicts = []
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        got, v = b.feed_windows(pcm[i:i + FRAME])
        with_verdicts += got
        windows += v
    assert with_verdicts == plain and len(windows) == (len(pcm) // FRAME) * 8
    assert {"123A456B789C*0#D"[i] for i in windows if i >= 0} == set(DIGITS)


def test_the_line_tap_s_frames_come_back_filtered_and_without_their_digits():
    from drivers.dsp import G711, ULAW
    from drivers.dsp.receive import ReceiveChain
    from hal import RxFrame

    chain, mask, codec = ReceiveChain(ULAW, echo_cancel=False), DtmfMask(), G711(ULAW)
    pcm = stream(0, "4829")
    sent = []
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        rx = chain.receive(codec.encode(pcm[i:i + FRAME]))
        out = mask.process(rx)
        assert isinstance(out, RxFrame) and out.digits == () and out.t_ms == rx.t_ms
        sent.append(out.pcm)
    assert ours(np.concatenate(sent)) == [] and mask.stats.tones_removed == 4
