"""Line echo cancellation.

Why not spandsp's: Debian's ``libspandsp2`` (0.0.6) ships its G.168 canceller (``echo_can_update``)
with a debugging ``printf`` left in that writes a line to stdout for every sample, and its modem
canceller (``modem_echo_can``) has no double-talk handling and diverges on speech (measured: the
residual echo ended louder than the echo, and keys pressed during a prompt were lost).
``tests/dsp/test_echo.py`` keeps checking the first point so we notice a fixed build. Until then
this module uses speexdsp's MDF canceller (Debian ``libspeexdsp1``, as PJSIP and Asterisk's
``func_speex`` do): frame based, robust to double talk, ~30 µs a frame.
"""

from __future__ import annotations

import numpy as np

from ._speexdsp import SET_SAMPLING_RATE, ffi, lib
from .errors import SpanDSPError

FRAME = 160


class EchoCanceller:
    """Removes the echo of what we sent (``tx``) from what the line returned (``rx``).

    ``tail_ms`` is the echo path the filter covers; 32 ms fits an analog line behind a card
    that reports which frame it played when (so the card's own buffering is not in the path).
    Frames are 20 ms (160 samples).
    """

    def __init__(self, tail_ms: int = 32) -> None:
        self.tail_ms = tail_ms
        st = lib.speex_echo_state_init(FRAME, tail_ms * 8)
        if st == ffi.NULL:
            raise SpanDSPError("speexdsp could not create an echo canceller")
        self._s = ffi.gc(st, lib.speex_echo_state_destroy)
        rate = ffi.new("int *", 8000)
        lib.speex_echo_ctl(self._s, SET_SAMPLING_RATE, rate)
        self._out = np.empty(FRAME, dtype=np.int16)

    def process(self, tx: np.ndarray, rx: np.ndarray) -> np.ndarray:
        if len(tx) != FRAME or len(rx) != FRAME:
            raise ValueError(f"the echo canceller takes {FRAME}-sample frames, got tx {len(tx)}, rx {len(rx)}")
        tx = np.ascontiguousarray(tx, dtype=np.int16)
        rx = np.ascontiguousarray(rx, dtype=np.int16)
        out = np.empty(FRAME, dtype=np.int16)
        lib.speex_echo_cancellation(self._s, ffi.from_buffer("int16_t[]", rx), ffi.from_buffer("int16_t[]", tx),
                                    ffi.from_buffer("int16_t[]", out))
        return out

    def flush(self) -> None:
        lib.speex_echo_state_reset(self._s)
