"""Packet-loss concealment from spandsp: fills a lost frame from the audio before it."""

from __future__ import annotations

import numpy as np

from ._spandsp import check_alloc, ffi, lib


class LossConcealer:
    def __init__(self) -> None:
        self._s = ffi.gc(check_alloc(lib.plc_init(ffi.NULL), "loss concealer"), lib.plc_free)

    def good(self, pcm: np.ndarray) -> np.ndarray:
        """Pass a received frame through (spandsp keeps history and smooths the join after a loss)."""
        out = np.array(pcm, dtype=np.int16, copy=True)
        lib.plc_rx(self._s, ffi.from_buffer("int16_t[]", out), len(out))
        return out

    def lost(self, n: int = 160) -> np.ndarray:
        """A synthetic frame standing in for a lost one."""
        out = np.zeros(n, dtype=np.int16)
        lib.plc_fillin(self._s, ffi.from_buffer("int16_t[]", out), n)
        return out
