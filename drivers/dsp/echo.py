"""Line echo cancellation, with a guard against a diverging filter.

Why not spandsp's: Debian's ``libspandsp2`` (0.0.6) ships its G.168 canceller (``echo_can_update``)
with a debugging ``printf`` left in that writes a line to stdout for every sample, and its modem
canceller (``modem_echo_can``) has no double-talk handling and diverges on speech (measured: the
residual echo ended louder than the echo, and keys pressed during a prompt were lost).
``tests/dsp/test_dependency_quirks.py`` keeps checking the first point so we notice a fixed build.
Until then this module uses speexdsp's MDF canceller (Debian ``libspeexdsp1``, as PJSIP and
Asterisk's ``func_speex`` do): frame based, robust to double talk, ~30 µs a frame.

The guard: a canceller can only ever remove energy (its output is the line's audio less its
estimate of the echo), so a frame that comes out louder than it went in means the filter is
wrong (speexdsp's filter drifts on a pure-tone reference when the reference it is given does not
match what was played, as after a lost frame). Such a frame is passed through as it came in,
and a filter that keeps making frames much louder is reset. ``tests/dsp/test_echo.py``.
"""

from __future__ import annotations

import numpy as np

from ._speexdsp import SET_SAMPLING_RATE, ffi, lib
from .errors import SpanDSPError

FRAME = 160
RESET_LOUDER = 2.0  # twice the input's energy (3 dB louder) ...
RESET_AFTER = 3  # ... on this many frames in a row: the filter has diverged, start it again


class EchoCanceller:
    """Removes the echo of what we sent (``tx``) from what the line returned (``rx``).

    ``tail_ms`` is the echo path the filter covers; 32 ms fits an analog line behind a card
    that reports which frame it played when (so the card's own buffering is not in the path).
    Frames are 20 ms (160 samples). ``passed_through`` counts the frames returned unchanged
    because the canceller's output was louder than its input, ``resets`` the filter restarts.
    ``guard=False`` turns the guard off (for measuring what it prevents).
    """

    def __init__(self, tail_ms: int = 32, *, guard: bool = True) -> None:
        self.tail_ms = tail_ms
        self.guard = guard
        self.passed_through = 0
        self.resets = 0
        self._louder_run = 0
        st = lib.speex_echo_state_init(FRAME, tail_ms * 8)
        if st == ffi.NULL:
            raise SpanDSPError("speexdsp could not create an echo canceller")
        self._s = ffi.gc(st, lib.speex_echo_state_destroy)
        rate = ffi.new("int *", 8000)
        lib.speex_echo_ctl(self._s, SET_SAMPLING_RATE, rate)

    def process(self, tx: np.ndarray, rx: np.ndarray) -> np.ndarray:
        """``rx`` without the echo of ``tx`` (a new array; never louder than ``rx``)."""
        if len(tx) != FRAME or len(rx) != FRAME:
            raise ValueError(f"the echo canceller takes {FRAME}-sample frames, got tx {len(tx)}, rx {len(rx)}")
        tx = np.ascontiguousarray(tx, dtype=np.int16)
        rx = np.ascontiguousarray(rx, dtype=np.int16)
        out = np.empty(FRAME, dtype=np.int16)
        lib.speex_echo_cancellation(self._s, ffi.from_buffer("int16_t[]", rx), ffi.from_buffer("int16_t[]", tx),
                                    ffi.from_buffer("int16_t[]", out))
        if not self.guard:
            return out
        x = rx.astype(np.float64)
        y = out.astype(np.float64)
        e_in, e_out = float(x @ x), float(y @ y)
        if e_out <= e_in:
            self._louder_run = 0
            return out
        self.passed_through += 1
        self._louder_run = self._louder_run + 1 if e_out > RESET_LOUDER * e_in else 0
        if self._louder_run >= RESET_AFTER:
            self.flush()
            self.resets += 1
        return rx.copy()

    def flush(self) -> None:
        """Forget the echo path (a new call, or a filter that diverged)."""
        lib.speex_echo_state_reset(self._s)
        self._louder_run = 0
