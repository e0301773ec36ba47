"""What a simulated caller heard: level, main frequencies, DTMF digits and call-progress tones."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from drivers.dsp import DtmfReceiver, ToneDetector, call_progress, dbm0


def peaks(pcm: np.ndarray, n: int = 2, min_hz: float = 100.0) -> list[float]:
    """The ``n`` strongest frequencies (Hz), at least 30 Hz apart."""
    if len(pcm) < 256:
        return []
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    spec[freqs < min_hz] = 0
    out: list[float] = []
    for i in np.argsort(spec)[::-1]:
        f = float(freqs[i])
        if spec[i] <= 0:
            break
        if all(abs(f - g) > 30 for g in out):
            out.append(round(f, 1))
        if len(out) == n:
            break
    return out


def analyse(pcm: np.ndarray, country: str = "cn") -> dict:
    rx = DtmfReceiver()
    td = ToneDetector({name: call_progress(name, country) for name in ("busy", "congestion")})
    digits, tones = "", []
    active = 0
    for i in range(0, len(pcm) - 159, 160):
        f = pcm[i:i + 160]
        digits += "".join(d.digit for d in rx.feed(f))
        tones += [t.name for t in td.feed(f) if t.name and t.name not in tones]
        if dbm0(f) > -45:
            active += 1
    frames = max(len(pcm) // 160, 1)
    level = dbm0(pcm)
    return {
        "ms": len(pcm) // 8,
        "level_dbm0": round(level, 1) if math.isfinite(level) else None,  # None: digital silence
        "active_ms": active * 20,
        "active_fraction": round(active / frames, 3),
        "peak_hz": peaks(pcm),
        "digits": digits,
        "tones": tones,
    }


def spot(heard: np.ndarray, refs: dict[str, np.ndarray], *, prefix_ms: int = 500,
         threshold: float = 0.8) -> list[dict]:
    """Which known recordings (prompts) start where in ``heard``, in order.

    Each reference's first ``prefix_ms`` is matched by normalised cross-correlation, so a prompt
    cut short by a key press (barge-in) is still found; ``ms`` says how long it then played
    before the next one began (or the audio ended). Prompts that open with the same words are
    told apart by how well the rest of each matches; one cut off inside those shared words
    cannot be, and is reported as whichever matched best.
    """
    x = heard.astype(np.float64)
    n = len(x)
    found: list[tuple[int, str, int]] = []
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    size = 1 << int(np.ceil(np.log2(n + prefix_ms * 8)))
    xf = np.fft.rfft(x, size)  # once for all the prompts: the costly part on a long call
    for name, ref in refs.items():
        r = ref.astype(np.float64)
        nz = np.flatnonzero(np.abs(r) > 200)
        if len(nz) == 0:
            continue
        lead = int(nz[0])  # the prompt's own leading silence is not what we match on
        p = r[lead:lead + prefix_ms * 8]
        m = len(p)
        if n < m:
            continue
        corr = np.fft.irfft(xf * np.conj(np.fft.rfft(p, size)), size)[: n - m + 1]
        energy = csum[m:] - csum[:-m]
        norm = corr / (np.sqrt(np.maximum(energy, 1e-9)) * np.sqrt(np.sum(p * p)))
        # walk only the places over the threshold (a Python loop over every sample of a long
        # call took seconds per listen): the best match within a prefix of the first one is
        # the prompt's start, and the next can only begin half a prompt later
        i = 0
        for k in np.flatnonzero(norm >= threshold):
            if k < i:
                continue
            j = int(k) + int(np.argmax(norm[k:k + m]))
            found.append((j - lead, name, len(r)))
            i = j + len(r) // 2
    found.sort()
    # prompts that open the same way ("please enter ...") all match at one place: keep the one
    # that also matches best over the rest of its length
    resolved: list[tuple[int, str, int]] = []
    i = 0
    while i < len(found):
        group = [found[i]]
        while i + 1 < len(found) and found[i + 1][0] - group[0][0] < 800:
            i += 1
            group.append(found[i])
        i += 1
        if len(group) == 1:
            resolved.append(group[0])
            continue
        best, best_score = group[0], -1.0
        for at, name, length in group:
            ref = refs[name].astype(np.float64)
            a = max(at, 0)
            seg = x[a:a + length]
            r = ref[a - at:a - at + len(seg)]
            denom = np.sqrt(np.sum(seg * seg) * np.sum(r * r))
            score = float(np.dot(seg, r) / denom) if denom > 0 else 0.0
            if score > best_score:
                best, best_score = (at, name, length), score
        resolved.append(best)
    out = []
    for k, (at, name, length) in enumerate(resolved):
        end = resolved[k + 1][0] if k + 1 < len(resolved) else n
        ref = refs[name].astype(np.float64)
        a = max(at, 0)
        played = 0  # how much of the prompt the audio follows (less than all: it was cut short)
        for stop in range(a + prefix_ms * 8, min(a + length, end, n) + 1, 400):
            seg, r = x[a:stop], ref[a - at:stop - at]
            denom = np.sqrt(np.sum(seg * seg) * np.sum(r * r))
            if denom <= 0 or np.dot(seg, r) / denom < threshold:
                break
            played = stop - at
        if min(length, end - at, n - at) - played < 400:
            played = min(length, end - at, n - at)
        out.append({"prompt": name, "at_ms": a // 8, "ms": played // 8, "full_ms": length // 8})
    return out


@dataclass
class Spotter:
    """``spot`` over a recording that only grows (a call), redoing only what new audio can change.

    Every listen asks which prompts the caller has heard since the answer. Spotting the whole
    call each time took seconds on a long call, long enough for the node's digit timeouts to
    expire while a scripted caller waited for the answer. Hits that begin well before the last
    one found are final: only the tail is spotted again.
    """

    refs: dict[str, np.ndarray]
    prefix_ms: int = 500
    margin: int = 8000  # samples re-spotted before the last hit: covers a prompt's leading silence
    hits: list[dict] = field(default_factory=list)
    upto: int = 0  # samples of the recording spotted so far

    def update(self, heard: np.ndarray) -> list[dict]:
        if len(heard) < self.upto:  # a new recording (a new call): start again
            self.hits, self.upto = [], 0
        redo = self.upto - self.prefix_ms * 8  # a prompt whose opening was not all there yet
        if self.hits:
            redo = min(redo, self.hits[-1]["at_ms"] * 8)
        redo = max(0, redo - self.margin) // 8 * 8  # whole ms, so at_ms shifts exactly
        kept = [h for h in self.hits if h["at_ms"] * 8 < redo]
        new = spot(heard[redo:], self.refs, prefix_ms=self.prefix_ms)
        self.hits = kept + [h | {"at_ms": h["at_ms"] + redo // 8} for h in new]
        self.upto = len(heard)
        return [dict(h) for h in self.hits]
