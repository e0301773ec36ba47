"""Call-progress tones: generation (dial, ringback, busy, congestion) and detection.

Cadences follow ITU-T E.180 supplement 2 for China and North America (ANSI T1.401).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._spandsp import check_alloc, ffi, lib


@dataclass(frozen=True)
class ToneSpec:
    """A tone: one or two frequencies, a level, and an on/off cadence (0 off = steady)."""

    f1: int
    f2: int
    level_dbm0: int
    on_ms: int
    off_ms: int
    on2_ms: int = 0
    off2_ms: int = 0


# name -> country -> spec
CALL_PROGRESS: dict[str, dict[str, ToneSpec]] = {
    "dial": {"cn": ToneSpec(450, 0, -10, 0, 0), "na": ToneSpec(350, 440, -13, 0, 0)},
    "ringback": {"cn": ToneSpec(450, 0, -10, 1000, 4000), "na": ToneSpec(440, 480, -19, 2000, 4000)},
    "busy": {"cn": ToneSpec(450, 0, -10, 350, 350), "na": ToneSpec(480, 620, -24, 500, 500)},
    "congestion": {"cn": ToneSpec(450, 0, -10, 700, 700), "na": ToneSpec(480, 620, -24, 250, 250)},
}


def call_progress(name: str, country: str) -> ToneSpec:
    try:
        return CALL_PROGRESS[name][country]
    except KeyError:
        raise ValueError(
            f"no {name!r} tone for country {country!r}: tones are {sorted(CALL_PROGRESS)}, countries 'cn', 'na'"
        ) from None


class ToneGenerator:
    """spandsp's tone generator for one :class:`ToneSpec`, repeating its cadence."""

    def __init__(self, spec: ToneSpec) -> None:
        self.spec = spec
        steady = spec.off_ms == 0
        # spandsp: a steady tone is an "on" period with no "off"; any on time works when repeating
        d1 = spec.on_ms if not steady else 1000
        desc = check_alloc(lib.tone_gen_descriptor_init(
            ffi.NULL, spec.f1, spec.level_dbm0, spec.f2, spec.level_dbm0 if spec.f2 else 0,
            d1, spec.off_ms, spec.on2_ms, spec.off2_ms, 1), "tone descriptor")
        self._desc = ffi.gc(desc, lib.tone_gen_descriptor_free)
        self._s = ffi.gc(check_alloc(lib.tone_gen_init(ffi.NULL, self._desc), "tone generator"), lib.tone_gen_free)

    def read(self, n: int = 160) -> np.ndarray:
        out = np.zeros(n, dtype=np.int16)
        lib.tone_gen(self._s, ffi.from_buffer("int16_t[]", out), n)
        return out


def two_tone(f1: float, level1_dbm0: float, f2: float, level2_dbm0: float, on_ms: int, off_ms: int) -> np.ndarray:
    """One burst of a two-frequency tone followed by silence, from spandsp's generator.

    Used by the simulated caller for DTMF with a chosen frequency offset and twist, which
    spandsp's DTMF generator cannot do (it has fixed frequencies).
    """
    desc = ffi.gc(check_alloc(lib.tone_gen_descriptor_init(
        ffi.NULL, int(round(f1)), int(round(level1_dbm0)), int(round(f2)), int(round(level2_dbm0)),
        on_ms, off_ms, 0, 0, 0), "tone descriptor"), lib.tone_gen_descriptor_free)
    s = ffi.gc(check_alloc(lib.tone_gen_init(ffi.NULL, desc), "tone generator"), lib.tone_gen_free)
    n = (on_ms + off_ms) * 8
    out = np.zeros(n, dtype=np.int16)
    lib.tone_gen(s, ffi.from_buffer("int16_t[]", out), n)
    return out


@dataclass(frozen=True)
class ToneEvent:
    name: str  # which tone, or "" when a tone stopped
    at_ms: int


class ToneDetector:
    """spandsp's supervisory tone detector (``super_tone_rx``) for cadenced tones.

    Each watched tone is recognised after ``cycles`` full on/off cycles within ±20 % of its
    cadence, so a busy or disconnect tone on an FXO line (a caller who hung up on a line that
    gives no loop break) is told apart from speech.
    """

    def __init__(self, tones: dict[str, ToneSpec], *, cycles: int = 2) -> None:
        self._names: list[str] = []
        self._events: list[ToneEvent] = []
        self._samples = 0
        desc = check_alloc(lib.super_tone_rx_make_descriptor(ffi.NULL), "tone detector descriptor")
        self._desc = ffi.gc(desc, lib.super_tone_rx_free_descriptor)
        for name, spec in tones.items():
            if spec.off_ms == 0:
                raise ValueError(f"tone {name!r} is steady: the detector watches cadenced tones only")
            tid = lib.super_tone_rx_add_tone(self._desc)
            for _ in range(cycles):
                lib.super_tone_rx_add_element(self._desc, tid, spec.f1, spec.f2,
                                              int(spec.on_ms * 0.8), int(spec.on_ms * 1.2))
                lib.super_tone_rx_add_element(self._desc, tid, 0, 0, int(spec.off_ms * 0.8), int(spec.off_ms * 1.2))
            self._names.append(name)
        self._cb = ffi.callback("tone_report_func_t", self._on_tone)
        self._s = ffi.gc(check_alloc(lib.super_tone_rx_init(ffi.NULL, self._desc, self._cb, ffi.NULL),
                                     "tone detector"), lib.super_tone_rx_free)

    def _on_tone(self, _user, code: int, _level: int, _delay: int) -> None:
        name = self._names[code] if 0 <= code < len(self._names) else ""
        self._events.append(ToneEvent(name, self._samples // 8))

    def feed(self, pcm: np.ndarray) -> list[ToneEvent]:
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        lib.super_tone_rx(self._s, ffi.from_buffer("int16_t[]", pcm), len(pcm))
        self._samples += len(pcm)
        ev, self._events = self._events, []
        return ev
