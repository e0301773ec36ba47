# One analog FXO line: ring and polarity sensing, loop current, hook relay (answer, hang up,
# flash, pulse dialling), the caller ID window and the playout buffer of audio from the host.
import time

from . import g711, wire

TICK_MS = wire.FRAME_MS
RING_ON_TICKS = 2  # ring voltage present 40 ms -> a ring burst started
RING_OFF_TICKS = 5  # absent 100 ms -> it ended (ringing is 20-25 Hz; the detector output is rectified)
RING_STOP_MS = 6500  # no ring for this long before answer: the caller gave up
CID_WINDOW_MS = 5000  # on-hook audio streamed after the first ring / a polarity reversal
LOOP_MIN = 3000  # ADC counts (of 65535, ~4.5 mA): below this the far end has opened the loop
LOOP_DROP_MS = 100  # a drop this long is a disconnect (shorter ones are polarity flips)
POL_TICKS = 2
PREFILL = 3  # frames buffered before playout starts: 60 ms for the host's scheduling jitter
MAX_DEPTH = 8  # more than this queued is an overrun: the oldest frame is dropped
REPRIME_AFTER = 10  # this many ticks with nothing to play: the stream stopped, buffer afresh
PULSE_BREAK_MS = 60
PULSE_MAKE_MS = 40
INTERDIGIT_MS = 700


class FxoLine:
    def __init__(self, ch, hw, law_ulaw, emit):
        self.ch = ch
        self.ring_pin = hw.pin("RING%d" % ch, True)
        self.hook_pin = hw.pin("HOOK%d" % ch, False)
        self.pol_pin = hw.pin("POL%d" % ch, True)
        self.led = hw.pin("LED%d" % ch, False)
        self.loop_adc = hw.adc("LOOP%d" % ch)
        self.pcm_in = hw.pcm(ch, True)
        self.pcm_out = hw.pcm(ch, False)
        self.law_ulaw = law_ulaw
        self.idle = bytes([0xFF if law_ulaw else 0x55]) * wire.FRAME_SAMPLES
        self.emit = emit  # emit(channel, code, value): a reliable event to the host
        self.counters = [0] * len(wire.CHANNEL_COUNTERS)
        self.rx_gain = None
        self.tx_gain = None
        self.inbuf = bytearray(wire.FRAME_SAMPLES)
        self.reset_call()
        self.pol = self.pol_pin.value()
        self.pol_ticks = 0

    def reset_call(self):
        self.offhook = False
        self.hook_pin.value(0)
        self.ringing = False
        self.ring_hi = 0
        self.ring_lo = 0
        self.ring_count = 0
        self.ring_start = 0
        self.last_ring = 0
        self.cid_until = None
        self.loop_lo_ms = 0
        self.loop_reported = False
        self.steps = []  # pending hook steps: [relay value, ms left]; pulse dialling and flash
        self.step_done = None  # (event, value) to send when the steps finish
        self.up_seq = 0
        self.history = None  # (seq, body) of the last frame sent up, for its delayed copy
        self.play = {}
        self.play_next = None
        self.primed = False
        self.gap_run = 0

    # -- commands -------------------------------------------------------------------------
    def hook(self, off):
        self.steps = []
        self.offhook = bool(off)
        self.hook_pin.value(1 if off else 0)
        self.loop_lo_ms = 0
        self.loop_reported = False
        if off:
            self.ringing = False
            self.cid_until = None
        else:
            self.ring_count = 0
            self.play = {}
            self.primed = False
            self.play_next = None
        self.emit(self.ch, wire.EV_HOOK, 1 if off else 0)

    def flash(self, ms):
        if not self.offhook or self.steps:
            return wire.ST_BUSY
        self.steps = [[0, ms], [1, 0]]
        self.step_done = (wire.EV_FLASH_DONE, ms)
        return wire.ST_OK

    def pulse_dial(self, digits, make_ms, break_ms):
        if not self.offhook or self.steps:
            return wire.ST_BUSY
        steps = []
        for d in digits:
            if d < 0x30 or d > 0x39:
                return wire.ST_BAD_ARGS
            n = (d - 0x30) or 10
            for _ in range(n):
                steps.append([0, break_ms or PULSE_BREAK_MS])
                steps.append([1, make_ms or PULSE_MAKE_MS])
            steps.append([1, INTERDIGIT_MS])
        self.steps = steps
        self.step_done = (wire.EV_DIAL_DONE, len(digits))
        return wire.ST_OK

    def set_gain(self, rx_tenth_db, tx_tenth_db):
        if not (-120 <= rx_tenth_db <= 120 and -120 <= tx_tenth_db <= 120):
            return wire.ST_BAD_ARGS
        self.rx_gain = g711.gain_table(self.law_ulaw, rx_tenth_db)
        self.tx_gain = g711.gain_table(self.law_ulaw, tx_tenth_db)
        return wire.ST_OK

    def open_cid_window(self, now, ms):
        if self.offhook:
            return wire.ST_BUSY
        if ms <= 0:
            self.close_cid_window()
        else:
            opened = self.cid_until is None
            self.cid_until = time.ticks_add(now, ms)
            if opened:
                self.emit(self.ch, wire.EV_CID_WINDOW, 1)
        return wire.ST_OK

    def close_cid_window(self):
        if self.cid_until is not None:
            self.cid_until = None
            self.emit(self.ch, wire.EV_CID_WINDOW, 0)

    def state_bits(self):
        return (1 if self.offhook else 0) | (2 if self.ringing else 0) | (4 if self.pol else 0)

    # -- every 20 ms ----------------------------------------------------------------------
    def sense(self, now):
        if self.steps:
            self._run_steps()
        ring = self.ring_pin.value()
        if ring:
            self.ring_hi += 1
            self.ring_lo = 0
        else:
            self.ring_lo += 1
            self.ring_hi = 0
        if not self.offhook:
            if not self.ringing and self.ring_hi >= RING_ON_TICKS:
                self.ringing = True
                self.ring_count += 1
                self.ring_start = now
                self.close_cid_window()
                self.emit(self.ch, wire.EV_RING_ON, self.ring_count)
            elif self.ringing and self.ring_lo >= RING_OFF_TICKS:
                self.ringing = False
                self.last_ring = now
                self.emit(self.ch, wire.EV_RING_OFF, time.ticks_diff(now, self.ring_start) - RING_OFF_TICKS * TICK_MS)
                if self.ring_count == 1:
                    self.open_cid_window(now, CID_WINDOW_MS)  # caller ID comes after the first ring
            elif (self.ring_count and not self.ringing
                  and time.ticks_diff(now, self.last_ring) > RING_STOP_MS):
                self.emit(self.ch, wire.EV_RING_STOP, time.ticks_diff(now, self.last_ring))
                self.ring_count = 0
        pol = self.pol_pin.value()
        if pol != self.pol:
            self.pol_ticks += 1
            if self.pol_ticks >= POL_TICKS:
                self.pol = pol
                self.pol_ticks = 0
                self.emit(self.ch, wire.EV_POLARITY, -1 if pol else 1)
                if not self.offhook and not self.ringing and not self.ring_count:
                    self.open_cid_window(now, CID_WINDOW_MS)  # DTMF caller ID follows a reversal
        else:
            self.pol_ticks = 0
        if self.offhook and not self.steps:
            if self.loop_adc.read_u16() < LOOP_MIN:
                self.loop_lo_ms += TICK_MS
                if self.loop_lo_ms >= LOOP_DROP_MS and not self.loop_reported:
                    self.loop_reported = True
                    self.emit(self.ch, wire.EV_LOOP_DROP, self.loop_lo_ms)
            else:
                self.loop_lo_ms = 0
                self.loop_reported = False
        if self.cid_until is not None and time.ticks_diff(now, self.cid_until) >= 0:
            self.close_cid_window()
        if self.offhook:
            self.led.value(1)
        elif self.ringing:
            self.led.value((now // 200) & 1)
        else:
            self.led.value(0)

    def _run_steps(self):
        step = self.steps[0]
        self.hook_pin.value(step[0])
        step[1] -= TICK_MS
        if step[1] <= 0:
            self.steps.pop(0)
            if not self.steps:
                self.hook_pin.value(1)
                ev = self.step_done
                self.step_done = None
                if ev:
                    self.emit(self.ch, ev[0], ev[1])

    def streaming(self):
        return self.offhook or self.cid_until is not None

    # -- audio ----------------------------------------------------------------------------
    def audio_from_host(self, seq, data):
        c = self.counters
        if not self.offhook:
            return
        if self.play_next is not None and not wire.seq_after(seq, self.play_next) and seq != self.play_next:
            c[5] += 1  # late (or a redundant copy of a frame already played)
            return
        if seq in self.play:
            return  # a redundant copy
        c[1] += 1
        self.play[seq] = data
        if len(self.play) > MAX_DEPTH:
            c[3] += 1
            oldest = self._oldest()
            del self.play[oldest]
            if self.play_next is not None:
                self.play_next = self._oldest()

    def _oldest(self):
        ref = self.play_next if self.play_next is not None else next(iter(self.play))
        best = None
        for s in self.play:
            if best is None or wire.seq_diff(s, ref) < wire.seq_diff(best, ref):
                best = s
        return best

    def tick_audio(self, copies=1):
        # one 20 ms period: play a frame to the line, capture one from it.
        # -> (seq, frame, echo_ref) to send up, or None when not streaming
        played = wire.NO_SEQ
        if self.offhook:
            out = None
            if not self.primed:
                if len(self.play) >= PREFILL:
                    self.primed = True
                    self.play_next = self._oldest()
            if self.primed:
                # fixed playout delay: a frame that misses its tick is dropped as late, so a host
                # hiccup costs the frames it delayed and no more
                out = self.play.pop(self.play_next, None)
                if out is None:
                    if self.play:
                        self.counters[4] += 1  # a gap: this frame never arrived
                    else:
                        self.counters[2] += 1  # underrun: nothing queued at all
                    self.gap_run += 1
                    if self.gap_run > self.counters[7]:
                        self.counters[7] = self.gap_run
                    if self.gap_run >= REPRIME_AFTER:
                        self.primed = False  # the host stopped sending: start over when it resumes
                else:
                    played = self.play_next
                    self.gap_run = 0
                self.play_next = (self.play_next + 1) & 0xFFFF
            self.pcm_out.write(g711.apply(self.tx_gain, out) if out is not None else self.idle)
        if not self.streaming():
            return None
        self.pcm_in.readinto(self.inbuf)
        frame = bytes(g711.apply(self.rx_gain, self.inbuf))
        seq = self.up_seq
        self.up_seq = (seq + 1) & 0xFFFF
        self.counters[0] += 1
        return seq, frame, played
