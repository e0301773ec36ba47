"""DTMF test signals and the two receivers run on them: ours (``DtmfReceiver``) and spandsp's raw ``dtmf_rx``.

Every signal goes through μ-law, as on the line. A "stream" is the 16 digits one after another
after ``lead`` samples of silence: stepping ``lead`` moves every tone against the receiver's
analysis grid and against the 20 ms frames.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from drivers.audiofile import speak
from drivers.dsp import G711, ULAW, DtmfReceiver, ToneGenerator, ToneSpec, two_tone
from drivers.dsp._spandsp import ffi, lib
from drivers.dsp.dtmf import digit_frequencies
from drivers.dsp.levels import DBM0_SINE_PEAK

DIGITS = "1234567890*#ABCD"
FRAME = 160
_ULAW = G711(ULAW)


@lru_cache(maxsize=4096)
def tone(digit: str, *, twist: float = 0.0, row_offset: float = 0.0, col_offset: float = 0.0,
         level: float = -10.0, on: int = 40, off: int = 40) -> np.ndarray:
    """One digit as a caller's phone might send it (twist: row minus column level, dB), then silence."""
    fr, fc = digit_frequencies(digit)
    pcm = two_tone(fr * (1 + row_offset), level + twist / 2, fc * (1 + col_offset), level - twist / 2, on, off)
    pcm.setflags(write=False)
    return pcm


def stream(lead: int, digits: str = DIGITS, *, noise_dbm0: float | None = None, hum_dbm0: float | None = None,
           **kw) -> np.ndarray:
    """``digits`` after ``lead`` samples of silence, then 100 ms of silence, through μ-law.

    ``noise_dbm0`` adds white noise, ``hum_dbm0`` a 600 Hz tone (what a drifting echo canceller
    leaves), all along."""
    parts = [np.zeros(lead, np.int16)] + [tone(d, **kw) for d in digits] + [np.zeros(800, np.int16)]
    pcm = np.concatenate(parts).astype(np.float64)
    if noise_dbm0 is not None:
        rms = DBM0_SINE_PEAK / np.sqrt(2) * 10 ** (noise_dbm0 / 20)
        pcm += np.random.default_rng(lead).standard_normal(len(pcm)) * rms
    if hum_dbm0 is not None:
        pcm += ToneGenerator(ToneSpec(600, 0, hum_dbm0, 0, 0)).read(len(pcm))
    pcm = np.clip(pcm, -32768, 32767).astype(np.int16)
    return _ULAW.decode(_ULAW.encode(pcm))


def frames(pcm: np.ndarray):
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        yield pcm[i:i + FRAME]


def ours(pcm: np.ndarray, rx: DtmfReceiver | None = None) -> list:
    """The digits our receiver reports, fed in 20 ms frames as the line card delivers them."""
    rx = rx or DtmfReceiver()
    got = [d for f in frames(pcm) for d in rx.feed(f)]
    return got + rx.feed(np.zeros(800, np.int16))


def spandsps(pcm: np.ndarray, *, twist_db: int = 10, reverse_twist_db: int = 6, threshold_dbm0: int = -32) -> str:
    """The digits spandsp's own receiver reports, set as permissively as its API allows within reason
    (the margins the project used on it before it was replaced)."""
    s = ffi.gc(lib.dtmf_rx_init(ffi.NULL, ffi.NULL, ffi.NULL), lib.dtmf_rx_free)
    lib.dtmf_rx_parms(s, 0, twist_db, reverse_twist_db, threshold_dbm0)
    buf = ffi.new("char[]", 128)
    out = ""
    for f in list(frames(pcm)) + [np.zeros(FRAME, np.int16)] * 5:
        f = np.ascontiguousarray(f)
        lib.dtmf_rx(s, ffi.from_buffer("int16_t[]", f), FRAME)
        n = lib.dtmf_rx_get(s, buf, 128)
        out += ffi.string(buf, n).decode() if n else ""
    return out


ENGLISH = ("Good morning, thank you for calling the branch. I would like to check the balance of my "
           "savings account and ask about the interest rate on a fixed deposit for twelve months. "
           "Could you also tell me when the branch opens on Saturday, and whether I need an appointment "
           "to open a brokerage account? My daughter wants to transfer money abroad next week. ")
MANDARIN = ("您好，欢迎致电本营业部。我想查询一下我的储蓄账户余额，还想了解一年期定期存款的利率。"
            "请问周六营业部几点开门，开立证券账户需要预约吗？我女儿下周要向国外汇款，需要准备什么材料？")


def speech_text(base: str, seconds: float, voice: str) -> str:
    """``base`` repeated until espeak-ng speaks it for at least ``seconds``."""
    text, total = "", 0.0
    while total < seconds:
        text += base
        total = len(speak(text, voice)) / 8000
    return text


def music(seconds: int, seed: int = 7) -> np.ndarray:
    """Melodies and chords with harmonics: the classic source of DTMF talk-off."""
    rng = np.random.default_rng(seed)
    notes = 220.0 * 2 ** (np.arange(0, 30) / 12)
    out = []
    t = np.arange(int(0.25 * 8000)) / 8000
    for _ in range(seconds * 4):
        chord = rng.choice(notes, size=rng.integers(1, 4), replace=False)
        x = sum(np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t) + 0.25 * np.sin(6 * np.pi * f * t)
                for f in chord)
        env = np.minimum(1, np.minimum(t / 0.02, (0.25 - t) / 0.05))
        out.append(x * env)
    pcm = np.concatenate(out)
    return (pcm / np.max(np.abs(pcm)) * 12000).astype(np.int16)
