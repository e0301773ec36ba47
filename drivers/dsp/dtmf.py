"""DTMF receive (with digit duration and level) and generation, from spandsp."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from ._spandsp import check_alloc, ffi, lib

# bound once: feed() runs 50 times a second per line
_INT16 = np.dtype(np.int16)
_from_buffer = ffi.from_buffer
_I16_ARRAY = ffi.typeof("int16_t[]")  # a parsed type: from_buffer skips the string lookup
_dtmf_rx = lib.dtmf_rx

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
    """spandsp's DTMF detector over 8 kHz int16 frames.

    Digits are reported once their tone has ended, with duration and level (of both tones
    together, in dBm0), via :meth:`feed`'s return value.

    Twist is the row (low-group) tone's level minus the column (high-group) tone's: *normal*
    twist (row louder, as a line's loss at high frequencies makes it) up to ``twist_db``,
    *reverse* twist (column louder) up to ``reverse_twist_db``. The standards (ITU-T Q.24,
    Bellcore) require acceptance up to 8 and 4 dB; spandsp's checks sit exactly on its limits,
    so digits such as ``*`` at a full 8 dB were missed: the defaults leave 2 dB of margin.
    ``threshold_dbm0`` is the lowest accepted level per tone (the standards: -26 dBm0, here
    with margin for line loss on top of it).

    Frequency guard: spandsp's filters are wide (a 102-sample Goertzel block), so a row tone
    3.5 % off can still pass (852 Hz + 3.5 % was accepted as 7 and *), where the standards
    require rejection. Each digit spandsp reports is therefore checked once more on 40 ms of its
    own audio: each of its tones must be stronger at its nominal frequency than at nominal
    ± 2 × ``max_freq_error``, which puts the boundary at ``max_freq_error`` (default 2.75 %,
    halfway between the must-accept 1.5 % and the must-reject 3.5 %). Rejected digits are
    counted in ``rejected_off_frequency``.
    """

    HISTORY_MS = 600
    GUARD_N = 320  # 40 ms from the middle of the tone: the shortest valid digit
    _banks: dict[tuple[str, float], np.ndarray] = {}

    def __init__(self, *, twist_db: float = 10.0, reverse_twist_db: float = 6.0,
                 threshold_dbm0: float = -32.0, filter_dialtone: bool = False,
                 max_freq_error: float | None = 0.0275) -> None:
        self.max_freq_error = max_freq_error
        self.rejected_off_frequency = 0
        # the last frames fed, by reference (no copy per frame): the guard reads them back
        self._frames: deque[np.ndarray] = deque(maxlen=self.HISTORY_MS // 20)
        self._done: list[Digit] = []
        self._samples = 0
        self._current: tuple[str, int, int] | None = None  # digit, start sample, level
        self._cb = ffi.callback("tone_report_func_t", self._on_tone)
        self._s = ffi.gc(check_alloc(lib.dtmf_rx_init(ffi.NULL, ffi.NULL, ffi.NULL), "DTMF receiver"),
                         lib.dtmf_rx_free)
        lib.dtmf_rx_set_realtime_callback(self._s, self._cb, ffi.NULL)
        lib.dtmf_rx_parms(self._s, 1 if filter_dialtone else 0, int(round(twist_db)),
                          int(round(reverse_twist_db)), int(round(threshold_dbm0)))

    def _on_tone(self, _user, code: int, level: int, _delay: int) -> None:
        if code:
            self._current = (chr(code), self._samples, level)
        elif self._current is not None:
            digit, start, lvl = self._current
            self._current = None
            self._done.append(Digit(digit, start // 8, (self._samples - start) // 8, lvl))

    def feed(self, pcm: np.ndarray) -> list[Digit]:
        """Feed audio (best in 20 ms frames); returns the digits that ended in it.

        The receiver keeps references to the last 600 ms of frames for its frequency check:
        do not modify a frame after feeding it.
        """
        if pcm.dtype is not _INT16:
            pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        try:
            buf = _from_buffer(_I16_ARRAY, pcm)
        except (BufferError, ValueError, TypeError):  # not contiguous
            pcm = np.ascontiguousarray(pcm)
            buf = _from_buffer(_I16_ARRAY, pcm)
        self._frames.append(pcm)
        n = len(pcm)
        _dtmf_rx(self._s, buf, n)
        self._samples += n
        if not self._done:
            return []
        done, self._done = self._done, []
        if self.max_freq_error is not None:
            done = [d for d in done if self._on_frequency(d)]
        return done

    def fill_in(self, samples: int = 160) -> None:
        """Account for lost audio (a dropped frame) without guessing its content."""
        self._frames.append(np.zeros(samples, dtype=np.int16))
        lib.dtmf_rx_fillin(self._s, samples)
        self._samples += samples

    def _recent(self, start_ago: int, length: int) -> np.ndarray:
        """``length`` samples starting ``start_ago`` samples before now (from the kept frames).

        Only the frames that overlap the span are joined: this runs once per digit, and its cost
        is most of what the frequency guard adds to spandsp."""
        frames = self._frames
        i, back = len(frames), 0
        while i and back < start_ago:  # walk back to the frame holding the start
            i -= 1
            back += len(frames[i])
        start_ago = min(start_ago, back)
        offset = back - start_ago  # where the span starts in frames[i]
        parts, got = [], -offset
        while i < len(frames) and got < length:
            parts.append(frames[i])
            got += len(frames[i])
            i += 1
        if not parts:
            return np.zeros(0, dtype=np.int16)
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return joined[offset:offset + length]

    @classmethod
    def _bank(cls, digit: str, err: float) -> np.ndarray:
        """Windowed cosine and sine rows at each tone's f0 and f0 × (1 ± 2·err), once per digit."""
        bank = cls._banks.get((digit, err))
        if bank is None:
            t = np.arange(cls.GUARD_N) / SAMPLE_RATE
            freqs = np.array([f0 * k for f0 in digit_frequencies(digit) for k in (1.0, 1 - 2 * err, 1 + 2 * err)])
            phase = 2 * np.pi * freqs[:, None] * t[None, :]
            bank = np.vstack([np.cos(phase), np.sin(phase)]) * np.hanning(cls.GUARD_N)
            cls._banks[(digit, err)] = bank
        return bank

    def _on_frequency(self, d: Digit) -> bool:
        # spandsp confirms a tone about 25 ms after it starts and after it ends: the tone itself
        # lies about [start - 25, start - 25 + duration]; look at 40 ms around its middle
        centre_ago = self._samples - (d.start_ms - 25 + d.duration_ms // 2) * 8
        seg = self._recent(centre_ago + self.GUARD_N // 2, self.GUARD_N)
        if len(seg) < self.GUARD_N:
            return True  # too little audio kept to measure: trust spandsp
        iq = self._bank(d.digit, self.max_freq_error) @ seg
        iq *= iq
        power = (iq[:6] + iq[6:]).tolist()  # row: nominal, below, above; then the column's
        if power[0] < max(power[1], power[2]) or power[3] < max(power[4], power[5]):
            self.rejected_off_frequency += 1
            return False
        return True


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
