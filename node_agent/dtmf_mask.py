"""The caller -> agent audio filter of a forwarded call: no DTMF tone the caller keys reaches the agent.

The media bridge calls :meth:`DtmfMask.process` with every 20 ms slot of the caller's linear audio
(160 int16 samples at 8 kHz, after the echo canceller) and sends what it returns to the agent::

    mask = DtmfMask(flatten=True)
    agent_frame = mask.process(caller_frame)        # every slot, in order, lost ones included
    agent_rx = mask.process(rx_frame)               # or a hal.RxFrame (the line's tap): one comes back
    mask.capture_start() ... mask.capture_end()     # a secure capture (node_agent.verify does this)
    mask.play(prompt_pcm) / mask.stop_prompt()      # the node's own prompts, mixed in for the agent

Two modes, each replacing caller audio by comfort noise (white noise at the line's noise level,
estimated on the caller's audio outside tones, between -75 and -45 dBm0):

* **flatten** (``flatten=True``, the default): a delay line of :attr:`DtmfMask.delay_ms` (30 ms)
  in the caller -> agent direction. Our DTMF detector (``drivers.dsp.DtmfReceiver``) runs on the
  caller's audio ahead of the delay; once it has seen ``hits`` passing analysis windows (2.5 ms
  apart) of one digit, the tone is replaced from one analysis window (20 ms) before the first
  passing one, which holds its first sample, to one hop after the last passing one, which is
  after its last. The delay is what that needs, at 20 ms-frame granularity:
  ``LEAD + (hits - 2) * HOP`` samples (measured: the first passing window ends 84-143 samples
  after a tone starts, at every alignment, level, twist and frequency offset the standards ask
  for). ``hits`` = 6 rather than the detector's 10 (a digit) takes 10 ms off the delay: in 5
  minutes of speech no window run was longer than 1 and in a minute of music than 4, so speech
  is never removed, and tones too short to be a digit (23 ms) are removed too. Everything else
  passes bit-exact, only delayed.
* **capture** (:meth:`capture_start` .. :meth:`capture_end`): from the very next frame out, the
  agent gets comfort noise only, including what was still in the delay line; audio keyed during
  the capture never comes out, even after :meth:`capture_end` (what the delay line held from
  the capture stays replaced). The prompts the node plays (:meth:`play`) are still heard.

The node's prompts: :meth:`play` queues the audio the node is playing to the caller; it is mixed
into the frames the agent gets from the next one on (undelayed), until it ends or
:meth:`stop_prompt` (barge-in). ``process(frame, prompt=...)`` mixes one explicit frame instead.
Without flatten there is no delay line: frames pass at once and capture mutes the next one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from drivers.dsp import DtmfReceiver
from drivers.dsp.dtmf import HOP
from drivers.dsp.levels import DBM0_SINE_PEAK
from hal import RxFrame

FRAME = 160
WINDOW = 160  # the detector's analysis window: a tone's first sample lies in its first passing window
LEAD = WINDOW  # replaced before the first passing window's end
TAIL = HOP  # replaced after the last passing window's end (measured: the tone ended >= 19 samples before it)
DEFAULT_HITS = 6  # passing windows of one digit before it is removed (speech: 1 at most, music: 4)
NOISE_MIN_DBM0, NOISE_MAX_DBM0, NOISE_START_DBM0 = -75.0, -45.0, -65.0
NOISE_FRAMES = 50  # the line's noise: the quietest frame of the last second without a tone
_RMS_0DBM0 = DBM0_SINE_PEAK / math.sqrt(2.0)


def delay_samples(hits: int = DEFAULT_HITS) -> int:
    """The delay line a filter needs to remove a tone seen in ``hits`` windows from its first sample."""
    return LEAD + (hits - 2) * HOP


@dataclass
class MaskStats:
    frames: int = 0
    tones_removed: int = 0  # tones replaced (flatten)
    late_onsets: int = 0  # tones recognised too late to replace from their first sample (should stay 0)
    capture_frames: int = 0  # frames the agent got during captures


class DtmfMask:
    """One call's caller -> agent filter (see the module's doc). ``flatten``: remove DTMF outside
    captures (a delay line of :attr:`delay_ms`); ``hits``: passing windows before a tone is removed
    (2 to the detector's ``min_hits``); ``seed``: the comfort noise's."""

    def __init__(self, *, flatten: bool = True, hits: int = DEFAULT_HITS, seed: int = 0) -> None:
        self._rx = DtmfReceiver()
        if not 2 <= hits <= self._rx.min_hits:
            raise ValueError(f"hits must be 2 to {self._rx.min_hits} (the detector's digit), not {hits}")
        self.flatten = flatten
        self.hits = hits
        self.delay = delay_samples(hits) if flatten else 0
        self.stats = MaskStats()
        self._rng = np.random.default_rng(seed)
        self._line = np.zeros(self.delay, dtype=np.int16)  # the delay line: input not yet sent
        self._t = 0  # samples fed so far (input positions)
        self._out = -self.delay  # input position of the next sample out (negative: the line's initial silence)
        self._muted: list[list[int | None]] = []  # [from, to) input positions replaced; to None: open
        self._capture: list[int | None] | None = None  # the open capture interval
        # the detector's digit rule, followed window by window (drivers/dsp/c/dtmf_detect.c's step())
        self._cur, self._hits, self._misses, self._first, self._last = -1, 0, 0, 0, 0
        self._tone: list[int | None] | None = None  # the open interval of the tone being removed
        self._levels: deque[float] = deque(maxlen=NOISE_FRAMES)
        self._recent = (True, True, 0.0)  # (frame before last had a tone, the last had one, its RMS)
        self._noise_rms = _RMS_0DBM0 * 10 ** (NOISE_START_DBM0 / 20)
        self._prompt: deque[np.ndarray] = deque()
        self.last_replaced: np.ndarray | None = None  # which samples of the last frame out were comfort noise

    @property
    def delay_ms(self) -> float:
        return self.delay / 8.0

    @property
    def capturing(self) -> bool:
        return self._capture is not None

    @property
    def noise_dbm0(self) -> float:
        """The comfort noise's level now."""
        return 20 * math.log10(self._noise_rms / _RMS_0DBM0)

    # -- modes --------------------------------------------------------------------------------------
    def capture_start(self) -> None:
        """From the next frame out, the agent gets comfort noise (and the node's prompts) only:
        what is still in the delay line is replaced too."""
        if self._capture is None:
            self._capture = [self._out, None]
            self._muted.append(self._capture)

    def capture_end(self) -> None:
        """Caller audio from the next frame in passes again (after the delay line); what the
        line still holds from the capture stays replaced."""
        if self._capture is not None:
            self._capture[1] = self._t
            self._capture = None

    # -- the node's prompts ---------------------------------------------------------------------
    def play(self, pcm: np.ndarray) -> None:
        """Mix ``pcm`` (the node's prompt, 8 kHz int16, any length) into the next frames out."""
        pcm = np.asarray(pcm, dtype=np.int16)
        for i in range(0, len(pcm), FRAME):
            self._prompt.append(pcm[i:i + FRAME])

    def stop_prompt(self) -> None:
        """The prompt was cut short on the line (barge-in): stop mixing it."""
        self._prompt.clear()

    @property
    def prompt_playing(self) -> bool:
        return bool(self._prompt)

    # -- the audio path ----------------------------------------------------------------------------
    def process(self, frame, prompt: np.ndarray | None = None):
        """One 20 ms slot of the caller's audio in; the slot the agent gets out (a new array:
        ``frame`` is not modified). ``prompt``: one frame of the node's own audio to mix in
        (besides what :meth:`play` queued). ``frame`` may be the line tap's ``hal.RxFrame``: then an
        RxFrame comes back, with the filtered audio and no digits (nothing keyed travels on)."""
        if isinstance(frame, RxFrame):
            return replace(frame, pcm=self._process(frame.pcm, prompt), digits=())
        return self._process(frame, prompt)

    def _process(self, frame: np.ndarray, prompt: np.ndarray | None) -> np.ndarray:
        if len(frame) != FRAME:
            raise ValueError(f"the mask takes 20 ms frames of {FRAME} samples, not {len(frame)}")
        t0 = self._t
        _, verdicts = self._rx.feed_windows(frame)
        tone = False
        for i, d in enumerate(verdicts):
            tone |= self._window(d, t0 + (i + 1) * HOP)
        self._t = t0 + FRAME
        self._noise_level(frame, tone or self._tone is not None or self._capture is not None)
        if self.delay:
            line = np.concatenate((self._line, frame))
            out, self._line = line[:FRAME], line[FRAME:]
        else:
            out = frame
        start = self._out
        self._out += FRAME
        out = self._replace(out, start)
        self.stats.frames += 1
        if self._capture is not None:
            self.stats.capture_frames += 1
        extra = self._prompt.popleft() if self._prompt else None
        for p in (extra, prompt):
            if p is not None:
                mixed = out.astype(np.int32)
                mixed[:len(p)] += p[:FRAME]
                out = np.clip(mixed, -32768, 32767).astype(np.int16)
        return out if out is not frame else frame.copy()

    def _window(self, d: int, t: int) -> bool:
        """One analysis window's verdict ``d``, the window ending at input position ``t``."""
        if d >= 0 and d == self._cur:
            self._hits += 1
            self._misses = 0
            self._last = t
        elif d >= 0:
            self._end_tone()
            self._cur, self._hits, self._misses, self._first, self._last = d, 1, 0, t, t
        elif self._cur >= 0:
            self._misses += 1
            if self._misses >= self._rx.end_misses:
                self._end_tone()
                self._cur = -1
            return self._cur >= 0
        else:
            return False
        if self.flatten and self._hits == self.hits and self._tone is None:
            start = self._first - LEAD
            if start < self._out:  # part of the tone is gone already: never expected (see delay_samples)
                self.stats.late_onsets += 1
                start = self._out
            self._tone = [start, None]
            self._muted.append(self._tone)
            self.stats.tones_removed += 1
        return True

    def _end_tone(self) -> None:
        if self._tone is not None:
            self._tone[1] = self._last + TAIL
            self._tone = None

    def _replace(self, out: np.ndarray, start: int) -> np.ndarray:
        """``out`` (input positions ``start`` ..) with the replaced intervals as comfort noise."""
        end = start + FRAME
        keep = []
        mask = None
        for iv in self._muted:
            a, b = iv
            if b is not None and b <= start:
                continue  # over: forget it
            keep.append(iv)
            if a >= end:
                continue
            lo, hi = max(a, start) - start, (FRAME if b is None else min(b, end) - start)
            if hi > lo:
                if mask is None:
                    mask = np.zeros(FRAME, dtype=bool)
                mask[lo:hi] = True
        self._muted = keep
        self.last_replaced = mask
        if mask is None:
            return out
        noise = np.clip(self._rng.standard_normal(FRAME) * self._noise_rms, -32768, 32767).astype(np.int16)
        return noise if mask.all() else np.where(mask, noise, out)

    def _noise_level(self, frame: np.ndarray, tone: bool) -> None:
        """The line's noise: a frame counts once neither it nor the frames either side had a passing
        window (a tone starts up to a window before its first passing one), so no tone's edge does."""
        before, prev, prev_rms = self._recent
        self._recent = (prev, tone, math.sqrt(float(np.dot(frame.astype(np.float64), frame)) / FRAME))
        if before or prev or tone:
            return
        self._levels.append(prev_rms)
        lo = _RMS_0DBM0 * 10 ** (NOISE_MIN_DBM0 / 20)
        hi = _RMS_0DBM0 * 10 ** (NOISE_MAX_DBM0 / 20)
        self._noise_rms = min(max(min(self._levels), lo), hi)


__all__ = ["DEFAULT_HITS", "DtmfMask", "MaskStats", "delay_samples"]
