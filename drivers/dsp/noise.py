"""White Gaussian noise at a level in dBm0, from spandsp (used to impair simulated lines)."""

from __future__ import annotations

import numpy as np

from ._spandsp import check_alloc, ffi, lib


class Noise:
    def __init__(self, level_dbm0: float, seed: int = 1234) -> None:
        self.level_dbm0 = level_dbm0
        self._s = ffi.gc(check_alloc(lib.awgn_init_dbm0(ffi.NULL, seed, float(level_dbm0)), "noise source"),
                         lib.awgn_free)

    def read(self, n: int = 160) -> np.ndarray:
        f, s = lib.awgn, self._s  # spandsp's API is per sample
        return np.fromiter((f(s) for _ in range(n)), dtype=np.int16, count=n)
