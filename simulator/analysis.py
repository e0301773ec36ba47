"""What a simulated caller heard: level, main frequencies, DTMF digits and call-progress tones."""

from __future__ import annotations

import math

import numpy as np

from drivers.dsp import DtmfReceiver, ToneDetector, call_progress, dbm0


def peaks(pcm: np.ndarray, n: int = 2, min_hz: float = 100.0) -> list[float]:
    """The ``n`` strongest frequencies (Hz), at least 30 Hz apart."""
    if len(pcm) < 256:
        return []
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    spec[freqs < min_hz] = 0
    out: list[float] = []
    for i in np.argsort(spec)[::-1]:
        f = float(freqs[i])
        if spec[i] <= 0:
            break
        if all(abs(f - g) > 30 for g in out):
            out.append(round(f, 1))
        if len(out) == n:
            break
    return out


def analyse(pcm: np.ndarray, country: str = "cn") -> dict:
    rx = DtmfReceiver()
    td = ToneDetector({name: call_progress(name, country) for name in ("busy", "congestion")})
    digits, tones = "", []
    active = 0
    for i in range(0, len(pcm) - 159, 160):
        f = pcm[i:i + 160]
        digits += "".join(d.digit for d in rx.feed(f))
        tones += [t.name for t in td.feed(f) if t.name and t.name not in tones]
        if dbm0(f) > -45:
            active += 1
    frames = max(len(pcm) // 160, 1)
    level = dbm0(pcm)
    return {
        "ms": len(pcm) // 8,
        "level_dbm0": round(level, 1) if math.isfinite(level) else None,  # None: digital silence
        "active_ms": active * 20,
        "active_fraction": round(active / frames, 3),
        "peak_hz": peaks(pcm),
        "digits": digits,
        "tones": tones,
    }
