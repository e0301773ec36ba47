"""The G.168 line echo canceller from spandsp."""

from __future__ import annotations

import numpy as np

from ._spandsp import check_alloc, ffi, lib

ADAPTION, NLP, CNG, CLIP, SUPPRESSOR, TX_HPF, RX_HPF = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40


class EchoCanceller:
    """Removes the echo of what we sent (``tx``) from what the line returned (``rx``).

    ``tail_ms`` is the echo path the filter covers; 32 ms fits an analog line behind a card
    that reports which frame it played when (so the card's own buffering is not in the path).
    """

    def __init__(self, tail_ms: int = 32, *, nlp: bool = True) -> None:
        mode = ADAPTION | TX_HPF | RX_HPF | (NLP | CNG if nlp else 0)
        self._s = ffi.gc(check_alloc(lib.echo_can_init(tail_ms * 8, mode), "echo canceller"), lib.echo_can_free)

    def process(self, tx: np.ndarray, rx: np.ndarray) -> np.ndarray:
        update = lib.echo_can_update  # spandsp's API is per sample
        s = self._s
        out = np.empty(len(rx), dtype=np.int16)
        for i, (t, r) in enumerate(zip(tx.tolist(), rx.tolist())):
            out[i] = update(s, t, r)
        return out

    def flush(self) -> None:
        lib.echo_can_flush(self._s)
