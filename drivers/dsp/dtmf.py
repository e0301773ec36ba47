"""DTMF receive (with digit duration and level), ours in C; DTMF generation, from spandsp."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._spandsp import check_alloc, ffi, lib
from .errors import SpanDSPError

try:
    from ._dtmf_c import ffi as _ffi
    from ._dtmf_c import lib as _lib
except ImportError as exc:  # a checkout whose C extension was never built
    raise SpanDSPError(f"the DTMF detector's C extension is not built ({exc}): run `make setup` "
                       "(or `pip install -e .`, or `python drivers/dsp/_dtmf_build.py` in place)") from exc

# bound once: feed() runs 50 times a second per line
_INT16 = np.dtype(np.int16)
_from_buffer = _ffi.from_buffer
_I16_ARRAY = _ffi.typeof("int16_t[]")  # a parsed type: from_buffer skips the string lookup
_feed = _lib.bn_dtmf_feed
_verdict = _lib.bn_dtmf_last_verdict
HOP = _lib.BN_DTMF_HOP  # samples between two analysis windows (2.5 ms)
_CHUNK = 64 * _lib.BN_DTMF_HOP  # one digit at most ends per window (hop)
_MAX_OUT = _CHUNK // _lib.BN_DTMF_HOP + 1

SAMPLE_RATE = 8000
DIGITS = "123A456B789C*0#D"
ROW_HZ = (697.0, 770.0, 852.0, 941.0)
COL_HZ = (1209.0, 1336.0, 1477.0, 1633.0)


def digit_frequencies(digit: str) -> tuple[float, float]:
    """The (row, column) frequencies of a DTMF digit."""
    i = DIGITS.find(digit.upper())
    if i < 0 or len(digit) != 1:
        raise ValueError(f"{digit!r} is not a DTMF digit (one of {DIGITS})")
    return ROW_HZ[i // 4], COL_HZ[i % 4]


class Digit(NamedTuple):
    """One detected digit: when it started (ms of audio fed), how long it lasted, its level.

    (A named tuple rather than a dataclass: it is made in the audio path, and is 5x cheaper.)
    """

    digit: str
    start_ms: int
    duration_ms: int
    level_dbm0: int


class DtmfReceiver:
    """DTMF detection over 8 kHz int16 frames, within the ITU-T Q.24 / Bellcore limits.

    The detector is ours, in C (``drivers/dsp/c/dtmf_detect.c``, built by cffi at install time):
    spandsp's ``dtmf_rx`` cannot be set to meet the limits (its relative-peak and tone-to-total
    checks are fixed, and its verdict depends on where a tone starts against its blocks; see
    docs/dsp.md). Every 2.5 ms it looks at the last 20 ms through a Hann window at the eight
    DTMF frequencies; a digit is ``min_hits`` such windows in a row that pass.

    Digits are reported once their tone has ended, with start, duration and level (of both tones
    together, in dBm0), via :meth:`feed`'s return value, as spandsp's receiver reported them.

    Twist is the row (low-group) tone's level minus the column (high-group) tone's: *normal*
    twist up to ``twist_db``, *reverse* twist up to ``reverse_twist_db`` (the standards require
    acceptance up to 8 and 4 dB; the defaults leave 3 and 2 dB of margin, as measured: a column
    tone 1.5 % off loses 1.4 dB in the window, and noise adds to that). ``threshold_dbm0`` is the
    lowest level per tone (the standards: -26 dBm0, here with margin for line loss). A tone is
    refused when its frequency is off by more than ``max_freq_error`` (must accept 1.5 %, must
    reject 3.5 %; 2.25 % keeps chords of music whose tones sit 2.5 % off out). ``min_hits`` of 10
    windows puts the shortest digit at about 27 ms: 40 ms tones pass at every alignment, 23 ms
    ones never do.
    """

    def __init__(self, *, twist_db: float = 11.0, reverse_twist_db: float = 6.0,
                 threshold_dbm0: float = -32.0, max_freq_error: float = 0.0225,
                 relative_peak_db: float = 6.0, tone_to_total: float = 0.6,
                 min_hits: int = 10, end_misses: int = 3) -> None:
        p = _ffi.new("bn_dtmf_params *", {
            "twist_db": twist_db, "reverse_twist_db": reverse_twist_db, "threshold_dbm0": threshold_dbm0,
            "max_freq_error": max_freq_error, "relative_peak_db": relative_peak_db,
            "tone_to_total": tone_to_total, "min_hits": min_hits, "end_misses": end_misses})
        s = _lib.bn_dtmf_new(p)
        if s == _ffi.NULL:
            raise ValueError(f"bad DTMF receiver settings (max_freq_error {max_freq_error} must be in (0, 0.1), "
                             f"min_hits {min_hits} and end_misses {end_misses} at least 1)")
        self._s = _ffi.gc(s, _lib.bn_dtmf_free)
        self._out = _ffi.new("bn_dtmf_digit[]", _MAX_OUT)
        self.min_hits, self.end_misses = min_hits, end_misses
        self._phase = 0  # samples fed since the last window ended (windows end every HOP samples)

    def _digits(self, n: int) -> list[Digit]:
        out = self._out
        return [Digit(out[i].digit.decode(), out[i].start // 8, out[i].duration // 8, round(out[i].level_dbm0))
                for i in range(n)]

    def feed(self, pcm: np.ndarray) -> list[Digit]:
        """Feed audio (any length, best in 20 ms frames); returns the digits that ended in it."""
        if pcm.dtype is not _INT16 or not pcm.flags.c_contiguous:
            pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        got: list[Digit] = []
        for i in range(0, len(pcm), _CHUNK):  # at most _MAX_OUT digits can end in a chunk
            part = pcm[i:i + _CHUNK]
            n = _feed(self._s, _from_buffer(_I16_ARRAY, part), len(part), self._out, _MAX_OUT)
            if n:
                got += self._digits(n)
        self._phase = (self._phase + len(pcm)) % HOP
        return got

    def feed_windows(self, pcm: np.ndarray) -> tuple[list[Digit], list[int]]:
        """:meth:`feed`, also returning the verdict on every analysis window that ended in ``pcm``,
        in order: the digit's index in ``DIGITS`` ("123A456B789C*0#D"), or -1 for none.

        For a filter that must act on a tone before its digit is reported (that happens only once
        the tone has ended): a digit is ``min_hits`` passing windows of the same digit with fewer
        than ``end_misses`` failing ones between them, each window the last 160 samples (20 ms)."""
        if pcm.dtype is not _INT16 or not pcm.flags.c_contiguous:
            pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        got: list[Digit] = []
        verdicts: list[int] = []
        i, n_all = 0, len(pcm)
        while i < n_all:  # one window (hop) at a time: the detector keeps only the last verdict
            part = pcm[i:i + HOP - self._phase]
            n = _feed(self._s, _from_buffer(_I16_ARRAY, part), len(part), self._out, _MAX_OUT)
            if n:
                got += self._digits(n)
            self._phase = (self._phase + len(part)) % HOP
            if self._phase == 0:
                verdicts.append(_verdict(self._s))
            i += len(part)
        return got, verdicts

    def fill_in(self, samples: int = 160) -> list[Digit]:
        """Account for lost audio (a dropped frame) without guessing its content.

        Lost audio neither starts nor ends a digit: a loss inside a tone does not split it."""
        got: list[Digit] = []
        for i in range(0, samples, _CHUNK):
            n = _lib.bn_dtmf_fill_in(self._s, min(_CHUNK, samples - i), self._out, _MAX_OUT)
            if n:
                got += self._digits(n)
        self._phase = (self._phase + samples) % HOP
        return got


class DtmfGenerator:
    """spandsp's DTMF generator: queue digits, pull audio."""

    def __init__(self, *, level_dbm0: int = -10, twist_db: int = 0, on_ms: int = 50, off_ms: int = 55) -> None:
        self._s = ffi.gc(check_alloc(lib.dtmf_tx_init(ffi.NULL), "DTMF generator"), lib.dtmf_tx_free)
        lib.dtmf_tx_set_level(self._s, level_dbm0, twist_db)
        lib.dtmf_tx_set_timing(self._s, on_ms, off_ms)

    def put(self, digits: str) -> None:
        for d in digits:
            digit_frequencies(d)  # validates
        data = digits.encode("ascii")
        if lib.dtmf_tx_put(self._s, data, len(data)) < 0:
            raise OverflowError("DTMF generator queue is full (128 digits): wait for it to drain")

    def read(self, n: int = 160) -> np.ndarray:
        """The next ``n`` samples (zeros once the queue is empty)."""
        out = np.zeros(n, dtype=np.int16)
        lib.dtmf_tx(self._s, ffi.from_buffer("int16_t[]", out), n)
        return out
