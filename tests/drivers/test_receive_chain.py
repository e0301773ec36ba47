"""The receive DSP chain on recorded G.711 frames, without a card: digits, echo, busy tone,
caller ID, and the tap the forwarding to HQ takes its audio from."""

from __future__ import annotations

import numpy as np

from drivers.dsp import ALAW, G711, ULAW, CallerId, DtmfGenerator, ToneGenerator, call_progress, dbm0, encode_callerid
from drivers.dsp.receive import ReceiveChain, RxFrame

DIGITS = "1234567890*#ABCD"


def frames(pcm: np.ndarray, law: int = ULAW) -> list[bytes]:
    """``pcm`` as the card sends it: 20 ms G.711 frames (the last one padded)."""
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % 160, dtype=np.int16)])
    codec = G711(law)
    return [codec.encode(pcm[i:i + 160]) for i in range(0, len(pcm), 160)]


def keyed(digits: str, on_ms: int = 60, off_ms: int = 60) -> np.ndarray:
    gen = DtmfGenerator(level_dbm0=-10, on_ms=on_ms, off_ms=off_ms)
    gen.put(digits)
    return gen.read(len(digits) * (on_ms + off_ms) * 8 + 1600)


def test_digits_are_found_in_either_law():
    for law in (ULAW, ALAW):
        chain = ReceiveChain(law)
        got = "".join(d.digit for f in frames(keyed(DIGITS), law) for d in chain.receive(f).digits)
        assert got == DIGITS, law


def test_a_lost_frame_is_concealed_and_the_tap_sees_every_slot_in_order():
    chain = ReceiveChain(ULAW)
    tapped: list[RxFrame] = []
    chain.tap = tapped.append
    recorded = frames(keyed("59"))
    returned = [chain.receive(None if i == 3 else f) for i, f in enumerate(recorded)]  # slot 3: in the silence
    assert tapped == returned
    assert [f.t_ms for f in tapped] == [20 * i for i in range(len(recorded))]
    assert [i for i, f in enumerate(tapped) if f.lost] == [3]
    assert "".join(d.digit for f in tapped for d in f.digits) == "59"
    # digits are placed on the tap's timeline: each ends before the slot that reports it
    for f in tapped:
        for d in f.digits:
            assert d.start_ms < d.start_ms + d.duration_ms <= f.t_ms + 20


def test_echo_of_what_was_played_is_removed():
    rng = np.random.default_rng(7)
    seconds = 4
    tx = np.clip(rng.normal(0, 2500, 8000 * seconds), -32768, 32767).astype(np.int16)
    # the line's echo: 5 ms late, 10 dB down, smeared a little
    echo = np.convolve(tx.astype(np.float64), [0.0] * 40 + [0.25, 0.1, -0.05])[:len(tx)]
    rx = frames(np.clip(echo, -32768, 32767).astype(np.int16))
    out = {}
    for cancel in (True, False):
        chain = ReceiveChain(ULAW, echo_cancel=cancel)
        pcm = []
        for k, f in enumerate(rx):
            chain.played(k, tx[160 * k:160 * k + 160])  # sent as frame k ...
            pcm.append(chain.receive(f, echo_ref=k).pcm)  # ... and played while this one was captured
        out[cancel] = np.concatenate(pcm)[-8000:]  # the last second, after convergence
    heard = dbm0(np.clip(echo[-8000:], -32768, 32767))
    assert abs(dbm0(out[False]) - heard) < 1  # without the canceller the echo is all there
    assert dbm0(out[True]) < heard - 15, (dbm0(out[True]), heard)


def test_busy_tone_is_found_once():
    chain = ReceiveChain(ULAW, country="cn")
    busy = ToneGenerator(call_progress("busy", "cn")).read(8000 * 4)
    flagged = [i for i, f in enumerate(frames(busy)) if chain.receive(f).busy]
    assert len(flagged) == 1 and chain.busy_heard
    assert 3 * 350 // 20 <= flagged[0] <= 8 * 350 // 20  # after the second burst of tone, not on the first


def test_speech_like_noise_is_neither_busy_tone_nor_digits():
    chain = ReceiveChain(ULAW)
    noise = np.random.default_rng(3).normal(0, 3000, 8000 * 3).astype(np.int16)
    got = [chain.receive(f) for f in frames(noise)]
    assert not any(f.busy or f.digits for f in got)


def test_caller_id_is_heard_on_hook_once_per_window():
    cid = CallerId("13912345678", "CHEN JIE", "12011230", "bell202")
    audio = np.concatenate([np.zeros(1600, dtype=np.int16), encode_callerid(cid, "bell202"),
                            np.zeros(1600, dtype=np.int16)])
    chain = ReceiveChain(ULAW, cid_modes=("bell202", "dtmf"))
    heard = [c for f in frames(audio) if (c := chain.listen_callerid(f)) is not None]
    assert heard == [cid]
    assert [c for f in frames(audio) if (c := chain.listen_callerid(f))] == []  # once per window
    chain.new_callerid_window()
    assert [c for f in frames(audio) if (c := chain.listen_callerid(f))] == [cid]
