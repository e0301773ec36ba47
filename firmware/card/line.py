# One analog FXO line: ring and polarity sensing, loop current, hook relay (answer, hang up,
# flash, pulse dialling), the caller ID window, its LED, and its audio: the playout buffer of
# frames from the host and, every 20 ms, the frame it sends up, built in a buffer of its own.
import struct
import time

try:
    from micropython import const
except ImportError:  # CPython (the simulator)
    def const(x):
        return x

from . import g711, wire
from .playout import Playout

TICK_MS = const(20)  # wire.FRAME_MS
RING_ON_TICKS = 2  # ring voltage present 40 ms -> a ring burst started
RING_OFF_TICKS = 5  # absent 100 ms -> it ended (ringing is 20-25 Hz; the detector output is rectified)
RING_STOP_MS = 6500  # no ring for this long before answer: the caller gave up
CID_WINDOW_MS = 5000  # on-hook audio streamed after the first ring / a polarity reversal
LOOP_MIN = 3000  # ADC counts (of 65535, ~4.5 mA): below this the far end has opened the loop
LOOP_DROP_MS = 100  # a drop this long is a disconnect (shorter ones are polarity flips)
POL_TICKS = 2
PULSE_BREAK_MS = 60
PULSE_MAKE_MS = 40
INTERDIGIT_MS = 700


class FxoLine:
    def __init__(self, ch, hw, law_ulaw, emit, highway):
        self.ch = ch
        self.ring_pin = hw.pin("RING%d" % ch, True)
        self.hook_pin = hw.pin("HOOK%d" % ch, False)
        self.pol_pin = hw.pin("POL%d" % ch, True)
        self.led = hw.pin("LED%d" % ch, False)
        self.loop_adc = hw.adc("LOOP%d" % ch)
        self.highway = highway  # this line's audio is time slot `ch` of the PCM highway
        self.law_ulaw = law_ulaw
        self.emit = emit  # emit(channel, code, value): a reliable event to the host
        self.counters = [0] * wire.N_COUNTERS  # indexed by wire.CC_*
        self.playout = Playout(self.counters)
        self.rx_gain = None
        self.tx_gain = None
        self.led_mode = wire.LED_AUTO
        self.led_on = -1
        # the frame sent up this tick and the one sent last tick (its delayed redundant copy):
        # two buffers that swap, each with a view of what its CRC covers
        self.up = bytearray(wire.AUDIO_UP_WIRE)
        self.prev = bytearray(wire.AUDIO_UP_WIRE)
        self.up_crc = memoryview(self.up)[1:wire.BODY_AT + wire.AUDIO_UP_LEN]
        self.prev_crc = memoryview(self.prev)[1:wire.BODY_AT + wire.AUDIO_UP_LEN]
        self.tx_idle = False
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
        self.has_prev = False  # self.prev holds last tick's frame
        self.playout.reset()

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
            self.playout.reset()
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

    def set_led(self, mode):
        # the state stays until the host sets another; LED_AUTO gives the LED back to the line
        if mode < wire.LED_OFF or mode > wire.LED_AUTO:
            return wire.ST_BAD_ARGS
        self.led_mode = mode
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
                self.ring_start = time.ticks_add(now, -(RING_ON_TICKS - 1) * TICK_MS)  # when it began
                self.close_cid_window()
                self.emit(self.ch, wire.EV_RING_ON, self.ring_count)
            elif self.ringing and self.ring_lo >= RING_OFF_TICKS:
                self.ringing = False
                self.last_ring = now
                ended = time.ticks_add(now, -(RING_OFF_TICKS - 1) * TICK_MS)
                self.emit(self.ch, wire.EV_RING_OFF, time.ticks_diff(ended, self.ring_start))
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
        self._show_led(now)

    def _show_led(self, now):
        mode = self.led_mode
        if mode == wire.LED_AUTO:
            on = 1 if self.offhook else ((now // 200) & 1 if self.ringing else 0)
        elif mode == wire.LED_BLINK:
            on = (now // wire.LED_BLINK_MS) & 1
        else:
            on = 1 if mode == wire.LED_ON else 0
        if on != self.led_on:
            self.led_on = on
            self.led.value(on)

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
    def audio_from_host(self, seq, frame):
        if self.offhook:
            self.playout.put(seq, frame)

    def tick_audio(self):
        # one 20 ms period: this line's slot of the highway block to play, and the frame to send
        # up built in self.up (-> its length), or 0 when the line is not streaming
        hw = self.highway
        played = wire.NO_SEQ
        if self.offhook:
            out = self.playout.take()  # fixed playout delay: see playout.py
            hw.write_slot(self.ch, out, self.tx_gain if out is not None else None)
            played = self.playout.played
            self.tx_idle = False
        elif not self.tx_idle:
            hw.write_slot(self.ch, None, None)
            self.tx_idle = True
        if not self.streaming():
            return 0
        buf = self.up
        struct.pack_into(wire.AUDIO_UP, buf, wire.BODY_AT, played)
        hw.read_slot(self.ch, buf, wire.BODY_AT + 2, self.rx_gain)
        seq = self.up_seq
        self.up_seq = (seq + 1) & 0xFFFF
        self.counters[wire.CC_AUDIO_UP] += 1
        return wire.encode_into(buf, wire.T_AUDIO, self.ch, seq, wire.AUDIO_UP_LEN, self.up_crc)

    def rotate_up(self):
        # after sending: this tick's frame becomes the one whose copy goes out a tick later
        self.up, self.prev = self.prev, self.up
        self.up_crc, self.prev_crc = self.prev_crc, self.up_crc
        self.has_prev = True
