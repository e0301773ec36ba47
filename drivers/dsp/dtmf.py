"""DTMF receive (with digit duration and level) and generation, from spandsp."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._spandsp import check_alloc, ffi, lib

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


@dataclass(frozen=True)
class Digit:
    """One detected digit: when it started (ms of audio fed), how long it lasted, its level."""

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
    require rejection. Each digit spandsp reports is therefore checked once more: the strongest
    row and column frequencies of its audio must lie within ``max_freq_error`` (default 2.5 %,
    halfway between the must-accept 1.5 % and must-reject 3.5 %) of the digit's own.
    Rejected digits are counted in ``rejected_off_frequency``.
    """

    HISTORY_MS = 600

    def __init__(self, *, twist_db: float = 10.0, reverse_twist_db: float = 6.0,
                 threshold_dbm0: float = -32.0, filter_dialtone: bool = False,
                 max_freq_error: float | None = 0.025) -> None:
        self.max_freq_error = max_freq_error
        self.rejected_off_frequency = 0
        self._hist = np.zeros(self.HISTORY_MS * 8, dtype=np.int16)
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
        """Feed audio; returns the digits that ended in it."""
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        self._remember(pcm)
        lib.dtmf_rx(self._s, ffi.from_buffer("int16_t[]", pcm), len(pcm))
        self._samples += len(pcm)
        done, self._done = self._done, []
        if self.max_freq_error is not None and done:
            done = [d for d in done if self._on_frequency(d)]
        return done

    def fill_in(self, samples: int = 160) -> None:
        """Account for lost audio (a dropped frame) without guessing its content."""
        self._remember(np.zeros(samples, dtype=np.int16))
        lib.dtmf_rx_fillin(self._s, samples)
        self._samples += samples

    def _remember(self, pcm: np.ndarray) -> None:
        n = len(pcm)
        if n >= len(self._hist):
            self._hist[:] = pcm[-len(self._hist):]
        else:
            self._hist[:-n] = self._hist[n:]
            self._hist[-n:] = pcm

    def _on_frequency(self, d: Digit) -> bool:
        # spandsp confirms a tone ~25 ms after it starts and ends: look from a little before the
        # reported start to the reported end (the gap before a digit is at least 40 ms)
        start = (d.start_ms - 40) * 8
        ago = self._samples - start
        seg = self._hist[-min(ago, len(self._hist)):][: (d.duration_ms + 40) * 8]
        if len(seg) < 160:
            return True  # too short to measure: trust spandsp
        n = 8192
        spec = np.abs(np.fft.rfft(seg.astype(np.float64) * np.hanning(len(seg)), n))
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        want = digit_frequencies(d.digit)
        for lo, hi, f0 in ((600.0, 1050.0, want[0]), (1100.0, 1750.0, want[1])):
            band = (freqs >= lo) & (freqs <= hi)
            peak = float(freqs[band][np.argmax(spec[band])])
            if abs(peak - f0) / f0 > self.max_freq_error:
                self.rejected_off_frequency += 1
                return False
        return True

    @property
    def in_digit(self) -> str | None:
        """The digit currently sounding, if any (for masking it out of forwarded audio)."""
        return self._current[0] if self._current else None


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
