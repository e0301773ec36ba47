"""Signal levels in dBm0 for 16-bit linear audio (0 dBm0 = a sine of peak 22,624 as in G.711)."""

from __future__ import annotations

import math

import numpy as np

DBM0_SINE_PEAK = 22624.0  # spandsp's convention (its DBM0_MAX_POWER = 3.14 dBm0)
_DBM0_RMS = DBM0_SINE_PEAK / math.sqrt(2.0)


def dbm0(pcm: np.ndarray) -> float:
    """RMS level of ``pcm`` in dBm0 (−inf for digital silence)."""
    if len(pcm) == 0:
        return float("-inf")
    rms = math.sqrt(float(np.mean(np.square(pcm.astype(np.float64)))))
    return 20.0 * math.log10(rms / _DBM0_RMS) if rms > 0 else float("-inf")


def samples_for_dbm0(pcm: np.ndarray, level: float) -> np.ndarray:
    """``pcm`` scaled to an RMS level of ``level`` dBm0."""
    cur = dbm0(pcm)
    if cur == float("-inf"):
        return pcm.astype(np.int16)
    scaled = pcm.astype(np.float64) * 10 ** ((level - cur) / 20.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)
