"""The analog line and the public network behind it, as the card's line interface sees them.

One :class:`SimLine` per card channel. It answers the firmware's pins (ring detector, polarity,
loop current, hook relay) and its PCM units (what the caller sends, what the card plays), all in
card time. A scripted caller queues what it does: ring with a cadence and caller ID, send DTMF
with a chosen level/twist/timing/frequency offset, play speech or a WAV, add noise, hang up by
loop break or busy tone; and it records what the card played to the line for ``listen``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from drivers.dsp import G711, ULAW, CallerId, Noise, ToneGenerator, call_progress, encode_callerid, two_tone
from drivers.dsp.dtmf import digit_frequencies

FRAME = 160
RING_CADENCES = {"na": (2000, 4000), "cn": (1000, 4000)}
HANGUP_MODES = ("loop_break", "busy_tone")
CID_DELAY_MS = 600  # after the end of the first ring (Bell 202 / ETSI: 500 ms or more)
LOOP_CURRENT = 30000  # ADC counts while the loop is closed (~45 mA)


@dataclass
class Segment:
    pcm: np.ndarray
    done: threading.Event
    pos: int = 0


class SimPin:
    def __init__(self, name: str, line: SimLine | None = None, kind: str = "") -> None:
        self.name = name
        self._line = line
        self._kind = kind
        self._v = 0

    def value(self, v=None):
        if v is None:
            if self._line is not None and self._kind == "ring":
                return self._line.ring_voltage()
            if self._line is not None and self._kind == "pol":
                return 1 if self._line.reversed else 0
            return self._v
        self._v = 1 if v else 0
        if self._line is not None and self._kind == "hook":
            self._line.set_hook(bool(v))
        return None


class SimAdc:
    def __init__(self, line: SimLine) -> None:
        self._line = line

    def read_u16(self) -> int:
        return self._line.loop_current()


class SimPcm:
    def __init__(self, line: SimLine, receive: bool) -> None:
        self._line = line
        self._receive = receive

    def readinto(self, buf) -> int:
        buf[:] = self._line.capture()
        return len(buf)

    def write(self, buf) -> int:
        self._line.playback(bytes(buf))
        return len(buf)


def dtmf_audio(digits: str, *, on_ms: int, off_ms: int, level_dbm0: float, twist_db: float,
               row_offset: float, col_offset: float) -> np.ndarray:
    """DTMF digits at ``level_dbm0`` per tone (the mean of the two when twisted).

    ``twist_db`` is row level minus column level: > 0 normal twist (the low-group tone louder,
    as after a long line), < 0 reverse twist. ``row_offset``/``col_offset`` shift each tone's
    frequency (0.015 = +1.5 %).
    """
    parts = []
    for d in digits:
        fr, fc = digit_frequencies(d)
        lr = level_dbm0 + twist_db / 2
        lc = level_dbm0 - twist_db / 2
        parts.append(two_tone(fr * (1 + row_offset), lr, fc * (1 + col_offset), lc, on_ms, off_ms))
    return np.concatenate(parts)


class SimLine:
    """One line. Called from the card thread (pins, PCM) and from the control server (scripts)."""

    def __init__(self, ch: int, clock, law: int = ULAW, country: str = "cn") -> None:
        self.ch = ch
        self.clock = clock
        self.country = country
        self.codec = G711(law)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.offhook = False
        self.reversed = False
        self.ring_start: float | None = None
        self.ring_cadence = RING_CADENCES[self.country]
        self.max_rings = 0
        self.rings = 0
        self.answered = threading.Event()
        self.hung_up = threading.Event()  # the card went on-hook after answering
        self.answer_ms: float | None = None
        self.far_connected = False
        self.far_gone = False  # the caller hung up
        self.busy_tone: ToneGenerator | None = None
        self.cid_audio: np.ndarray | None = None
        self.cid_at: float | None = None
        self._cid_pos: int | None = None
        self._cid_last = 0.0
        self.source: list[Segment] = []
        self.noise: Noise | None = None
        self.loss = 1.0
        self.echo_gain = 10 ** (-14 / 20)  # hybrid echo return loss 14 dB
        self.echo_delay = 40  # samples (5 ms)
        self._echo_hist = np.zeros(self.echo_delay + FRAME, dtype=np.int16)
        self.heard: list[np.ndarray] = []
        self.listening = False
        self.call_audio: list[np.ndarray] = []  # everything the caller heard since the answer
        self.listened_upto = 0  # samples of call_audio the last listen had heard when it stopped
        self.spotter = None  # (prompt files, analysis.Spotter) of this call's listens
        self.hook_log: list[tuple[float, bool]] = []
        self.pulses = ""  # digits the card pulse-dialled
        self.flashes = 0
        self._breaks = 0
        self._break_at: float | None = None

    # -- scripts (control server) ------------------------------------------------------------
    def ring(self, *, cid: CallerId | None, cid_mode: str, cadence: tuple[int, int] | None, max_rings: int) -> None:
        with self._lock:
            keep = (self.loss, self.noise, self.echo_gain, self.offhook)
            was_reversed = self.reversed
            self.reset()
            self.loss, self.noise, self.echo_gain, self.offhook = keep
            self.ring_cadence = cadence or RING_CADENCES[self.country]
            self.max_rings = max_rings
            self.far_connected = True
            now = self.clock.ms()
            if cid is not None and cid.number:
                self.cid_audio = encode_callerid(cid, cid_mode)
                if cid_mode == "dtmf":
                    # DTMF caller ID: polarity reversal, the digits, then the first ring (a
                    # reversal of what the line had: the last such call may have left it reversed)
                    self.reversed = not was_reversed
                    self.cid_at = now + 300
                    cid_ms = len(self.cid_audio) / 8
                    self.ring_start = now + 300 + cid_ms + 600
                    return
                self.cid_at = now + self.ring_cadence[0] + CID_DELAY_MS
            self.ring_start = now

    def queue(self, pcm: np.ndarray) -> threading.Event:
        seg = Segment(np.asarray(pcm, dtype=np.int16), threading.Event())
        with self._lock:
            self.source.append(seg)
        return seg.done

    def queued_ms(self) -> float:
        """Audio queued to send that has not been sent yet."""
        with self._lock:
            return sum(len(seg.pcm) - seg.pos for seg in self.source) / 8

    def hangup(self, mode: str) -> None:
        with self._lock:
            self.source = []
            self.far_gone = True
            if mode == "busy_tone":
                self.busy_tone = ToneGenerator(call_progress("busy", self.country))
            elif mode == "loop_break":
                self.far_connected = False
            else:
                raise ValueError(f"unknown hang-up mode {mode!r}: one of {', '.join(HANGUP_MODES)}")
            self.ring_start = None

    def start_listening(self) -> None:
        with self._lock:
            self.heard = []
            self.listening = True

    def take_heard(self) -> np.ndarray:
        with self._lock:
            self.listening = False
            heard, self.heard = self.heard, []
            self.listened_upto = sum(len(a) for a in self.call_audio)
        return np.concatenate(heard) if heard else np.zeros(0, dtype=np.int16)

    def call_pcm(self) -> np.ndarray:
        with self._lock:
            return np.concatenate(self.call_audio) if self.call_audio else np.zeros(0, dtype=np.int16)

    def heard_ms(self) -> float:
        return sum(len(h) for h in self.heard) / 8

    # -- the card's side -------------------------------------------------------------------
    def ring_voltage(self) -> int:
        if self.offhook or self.ring_start is None:
            return 0
        t = self.clock.ms() - self.ring_start
        if t < 0:
            return 0
        on, off = self.ring_cadence
        n = int(t // (on + off))
        if self.max_rings and n >= self.max_rings:
            self.ring_start = None  # the caller gave up
            self.far_connected = False
            return 0
        self.rings = n + 1
        return 1 if (t % (on + off)) < on else 0

    def loop_current(self) -> int:
        return LOOP_CURRENT if (self.offhook and self.far_connected) else 0

    def set_hook(self, off: bool) -> None:
        now = self.clock.ms()
        if off == self.offhook:
            return
        self.hook_log.append((now, off))
        if not off:
            self._break_at = now
        elif self._break_at is not None:
            brk = now - self._break_at
            if brk < 90:  # a dial pulse
                self._breaks += 1
            elif brk < 1200:
                self.flashes += 1
            self._break_at = None
        self.offhook = off
        if off and self.ring_start is not None and self.far_connected:
            self.ring_start = None  # answered: ringing stops
            self.call_audio = []
            self.listened_upto = 0
            self.spotter = None
            self.answer_ms = now
            self.answered.set()
        if not off and self.answered.is_set() and not self.hung_up.is_set():
            self.hung_up.set()

    def _settle_pulses(self) -> None:
        # a make longer than 300 ms ends a pulse-dialled digit
        if self._breaks and self.offhook and self.hook_log and self.clock.ms() - self.hook_log[-1][0] > 300:
            self.pulses += str(self._breaks % 10)
            self._breaks = 0

    def capture(self) -> bytes:
        """The next 20 ms of line audio towards the card."""
        self._settle_pulses()
        out = np.zeros(FRAME, dtype=np.float64)
        with self._lock:
            now = self.clock.ms()
            if self.cid_audio is not None and self.cid_at is not None and now >= self.cid_at:
                # caller ID is sent in real (card) time whether or not the card listens; once it
                # listens, frames follow one another sample-exactly
                if self._cid_pos is None or now - self._cid_last > 30:
                    self._cid_pos = int((now - self.cid_at) * 8) // FRAME * FRAME
                chunk = self.cid_audio[self._cid_pos:self._cid_pos + FRAME]
                out[:len(chunk)] += chunk
                self._cid_pos += FRAME
                self._cid_last = now
                if self._cid_pos >= len(self.cid_audio):
                    self.cid_audio = None
            if self.offhook:
                need = FRAME
                filled = 0
                while need and self.source:
                    seg = self.source[0]
                    take = seg.pcm[seg.pos:seg.pos + need]
                    out[filled:filled + len(take)] += take * self.loss
                    filled += len(take)
                    need -= len(take)
                    seg.pos += len(take)
                    if seg.pos >= len(seg.pcm):
                        self.source.pop(0)
                        seg.done.set()
                if self.busy_tone is not None:
                    out += self.busy_tone.read(FRAME)
                out += self._echo_hist[:FRAME] * self.echo_gain
            if self.noise is not None:
                out += self.noise.read(FRAME)
        return self.codec.encode(np.clip(out, -32768, 32767).astype(np.int16))

    def playback(self, octets: bytes) -> None:
        """20 ms the card played to the line (towards the caller)."""
        pcm = self.codec.decode(octets)
        h = self._echo_hist
        h[:-FRAME] = h[FRAME:]
        h[-FRAME:] = pcm
        if self.listening:
            self.heard.append(pcm)
        if self.answered.is_set() and not self.far_gone:
            self.call_audio.append(pcm)
