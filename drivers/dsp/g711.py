"""G.711 μ-law / A-law conversion between int16 numpy frames and octets."""

from __future__ import annotations

import numpy as np

from ._spandsp import check_alloc, ffi, lib

ALAW = 0
ULAW = 1
IDLE_OCTET = {ULAW: 0xFF, ALAW: 0x55}  # the octets that decode to the smallest level (as the card uses)


def law_from_name(name: str) -> int:
    try:
        return {"ulaw": ULAW, "mulaw": ULAW, "pcmu": ULAW, "alaw": ALAW, "pcma": ALAW}[name.lower()]
    except KeyError:
        raise ValueError(f"unknown G.711 law {name!r}: use 'ulaw' or 'alaw'") from None


class G711:
    """A stateless (per call) G.711 codec over numpy frames."""

    def __init__(self, law: int = ULAW) -> None:
        if law not in (ULAW, ALAW):
            raise ValueError(f"unknown G.711 law {law!r}: use drivers.dsp.g711.ULAW or ALAW")
        self.law = law
        self._s = ffi.gc(check_alloc(lib.g711_init(ffi.NULL, law), "G.711 codec"), lib.g711_free)

    def encode(self, pcm: np.ndarray) -> bytes:
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        out = bytearray(len(pcm))
        lib.g711_encode(self._s, ffi.from_buffer("uint8_t[]", out), ffi.from_buffer("int16_t[]", pcm), len(pcm))
        return bytes(out)

    def decode(self, octets: bytes) -> np.ndarray:
        out = np.empty(len(octets), dtype=np.int16)
        lib.g711_decode(self._s, ffi.from_buffer("int16_t[]", out), ffi.from_buffer("uint8_t[]", octets), len(octets))
        return out

    def silence(self, n: int = 160) -> bytes:
        return bytes([IDLE_OCTET[self.law]]) * n
