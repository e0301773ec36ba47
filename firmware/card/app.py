# The line card application: the main loop that is the node's media clock.
import struct
import time

try:
    from micropython import const
except ImportError:  # CPython (the simulator)
    def const(x):
        return x

from . import board, logring, wire
from .bootmeta import REV_SELF_TEST, TRIAL
from .highway import Highway
from .image_header import H_MAJOR, H_MINOR, H_PATCH
from .image_rx import ImageReceiver
from .line import FxoLine
from .link import CardLink

HOST_TIMEOUT_MS = const(2000)
WATCHDOG_MS = const(2000)
MAX_LAG_FRAMES = const(5)
IMAGE_SLACK_MS = const(5)  # an IMAGE frame is served only when the next audio tick is further away
# the self-test after every boot (a trial is confirmed when it passes, reverted when it fails):
CODEC_TICKS = const(25)  # every codec must answer within the first 25 highway blocks (500 ms)
SELF_TEST_MS = const(15000)  # and the host must sync within 15 s of the boot

CAPS = (wire.CAP_PULSE_DIAL | wire.CAP_POLARITY | wire.CAP_LOOP_CURRENT | wire.CAP_CALLER_ID
        | wire.CAP_GAIN | wire.CAP_REDUNDANCY)


class Card:
    def __init__(self, hw=None, channels=board.CHANNELS, law_ulaw=True, baud=board.BAUD, updater=None):
        self.hw = hw or board.Hardware()
        self.channels = channels
        self.law_ulaw = law_ulaw
        self.link = CardLink(self.hw.uart(baud))
        rx, tx = self.hw.highway()
        self.highway = Highway(rx, tx, wire.FRAME_SAMPLES, 0xFF if law_ulaw else 0x55)
        self.lines = [FxoLine(ch, self.hw, law_ulaw, self.emit, self.highway) for ch in range(channels)]
        self.stats_buf = bytearray(struct.calcsize(wire.STATS))
        self.status_led = self.hw.pin("LED_STATUS", False)
        self.copies = 1  # what the host asked for (OP_REDUNDANCY), reported in STATUS
        # the most copies the link carries for n lines streaming (index n): a line that starts
        # streaming on its own (a caller ID window) must not overfill the link before the host
        # lowers the copies
        self.fit = [wire.copies_fit(n, baud) for n in range(channels + 1)]
        self.boot_id = (time.ticks_us() ^ (self.hw.uid[-1] << 8)) & 0xFFFF
        self.started = time.ticks_ms()
        self.lag_skips = 0
        self.now = self.started  # the loop's time, for frames handled in poll_each
        # the card's last events, kept in RAM (logring.py); one logger per card, so a reboot of a
        # simulated card replaces its ring
        self.log, self.ring = logring.attach("card.%02x%02x" % (self.hw.uid[-2], self.hw.uid[-1]))
        self.updater = updater  # card/updater.py, after boot(); None: a card without one
        self.version = running_version(updater)
        self.log.info("boot %04x fw %d.%d.%d slot %d", self.boot_id, self.version[0], self.version[1],
                      self.version[2], updater.running if updater is not None else -1)
        self.image_rx = ImageReceiver(updater, self.link.send)
        # the self-test: which codecs answered, whether the host synced, highway blocks looked at
        self.testing = True
        self.codecs_ok = 0
        self.host_synced = False
        self.test_ticks = 0

    def emit(self, ch, code, value):
        body = struct.pack(wire.EVENT, code, value, time.ticks_ms() & 0xFFFFFFFF)
        self.link.send_reliable(wire.T_EVENT, ch, body)

    def hello(self):
        v = self.version
        body = struct.pack(wire.HELLO, wire.PROTO_VERSION, v[0], v[1], v[2], self.channels,
                           wire.LAW_ULAW if self.law_ulaw else wire.LAW_ALAW, CAPS, self.boot_id, board.BOARD_ID)
        self.link.send(wire.T_HELLO, wire.BROADCAST, 0, body)

    def status(self, now):
        hook = ring = 0
        for ln in self.lines:
            if ln.offhook:
                hook |= 1 << ln.ch
            if ln.ringing:
                ring |= 1 << ln.ch
        body = struct.pack(wire.STATUS, time.ticks_diff(now, self.started) & 0xFFFFFFFF, hook, ring, self.copies)
        self.link.send(wire.T_STATUS, wire.BROADCAST, 0, body)

    def stats(self):
        buf = self.stats_buf
        struct.pack_into(wire.STATS, buf, 0, *self.link.counters)
        self.link.send(wire.T_STATS, wire.BROADCAST, 0, buf)
        for ln in self.lines:
            ln.counters[wire.CC_EVENTS_DROPPED] = self.link.events_dropped
            struct.pack_into(wire.STATS, buf, 0, *ln.counters)
            self.link.send(wire.T_STATS, ln.ch, 0, buf)

    def lines_in_use(self):
        for ln in self.lines:
            if ln.offhook or ln.ringing:
                return True
        return False

    def command(self, ch, seq, body, now):
        op, a1, a2 = struct.unpack(wire.CMD, body[:wire.CMD_LEN])
        extra = bytes(body[wire.CMD_LEN:])  # body is the link's buffer: the digits are kept
        st = wire.ST_OK
        if op == wire.OP_GET_STATS:
            self.link.ack(seq, st)
            self.stats()
            return
        if op == wire.OP_RESET:
            if a1 == wire.RESET_IF_IDLE and self.lines_in_use():
                self.link.ack(seq, wire.ST_BUSY)  # decided here, where a ring cannot slip in between
                return
            self.link.ack(seq, st)
            self.log.warning("reset asked by the host")
            self.hw.reset()
            return
        if op == wire.OP_REDUNDANCY:
            if 1 <= a1 <= wire.MAX_COPIES:
                self.copies = a1
            else:
                st = wire.ST_BAD_ARGS
            self.link.ack(seq, st)
            return
        if ch >= self.channels:
            self.link.ack(seq, wire.ST_BAD_CHANNEL)
            return
        ln = self.lines[ch]
        if op == wire.OP_HOOK:
            self.link.ack(seq, st)  # ack first: the HOOK event follows it
            ln.hook(a1)
            return
        if op == wire.OP_FLASH:
            st = ln.flash(a1) if 50 <= a1 <= 2000 else wire.ST_BAD_ARGS
        elif op == wire.OP_PULSE_DIAL:
            st = ln.pulse_dial(extra, a1, a2) if extra else wire.ST_BAD_ARGS
        elif op == wire.OP_GAIN:
            st = ln.set_gain(a1, a2)
        elif op == wire.OP_LED:
            st = ln.set_led(a1)
        elif op == wire.OP_CID_WINDOW:
            st = ln.open_cid_window(now, a1)
        else:
            st = wire.ST_UNKNOWN_OP
        self.link.ack(seq, st)

    def handle(self, frames, now):
        # frames as CardLink.poll() returns them (tests, tools)
        self.now = now
        for ftype, ch, seq, body in frames:
            self.on_frame(ftype, ch, seq, body)

    def on_frame(self, ftype, ch, seq, body):
        # one frame from the host (CardLink.poll_each); body is the link's buffer: copied by
        # whatever keeps it (the playout buffer, the image queue)
        now = self.now
        if ftype == wire.T_AUDIO:
            if ch < self.channels and len(body) == wire.AUDIO_DOWN_LEN:
                self.lines[ch].audio_from_host(seq, body)
        elif ftype == wire.T_CMD:
            self.command(ch, seq, body, now)
        elif ftype == wire.T_IMAGE:
            self.image_rx.take(seq, body)  # served after the audio (run)
        elif ftype == wire.T_ACK:  # a retried command seen before: acknowledge again
            self.link.ack(seq, wire.ST_OK)
        elif ftype == wire.T_SYNC:
            self.host_synced = True
            self.link.reset_session()
            self.log.info("host sync")
            self.hello()
            for ln in self.lines:
                self.emit(ln.ch, wire.EV_LINE_STATE, ln.state_bits())

    def frame_tick(self, now):
        # every 20 ms: one highway block in, every line's turn, one block out. This allocates
        # nothing but the CRC results: the frames are built in the lines' own buffers
        # (docs/card-hardware.md, "Memory")
        link = self.link
        self.highway.receive()
        streaming = 0
        for ln in self.lines:
            ln.sense(now)
            if ln.streaming():
                streaming += 1
        copies = self.copies
        if copies > self.fit[streaming]:
            copies = self.fit[streaming]
        for ln in self.lines:
            n = ln.tick_audio()
            if not n:
                continue
            # k copies: k-1 now (bit errors hit copies independently) and one a tick later (so a
            # short burst cannot take them all); see "Audio redundancy" in the protocol doc
            link.write(ln.up, n)
            for _ in range(copies - 2):
                link.write(ln.up, n)
            if copies > 1 and ln.has_prev:
                link.write(ln.prev, n)
            ln.rotate_up()
        self.highway.transmit()

    # -- the self-test -----------------------------------------------------------------------------
    def codec_answers(self, ch):
        # a line's codec (DAA) answers when it drives its time slot: a DAA that is missing, dead
        # or not programmed leaves the slot undriven, and the DR line's pull-down reads 0x00 for
        # every octet, which no G.711 codec sends for 20 ms (μ-law: full-scale negative DC; the
        # idle codes are 0xFF μ-law and 0xD5 A-law)
        return self.highway.slot_driven(ch)

    def self_test(self, now):
        # once per tick until it ends: every codec answers within CODEC_TICKS blocks and the
        # host syncs (the link is up) within SELF_TEST_MS of the boot
        if self.test_ticks < CODEC_TICKS:
            self.test_ticks += 1
            for ch in range(self.channels):
                if not self.codecs_ok & (1 << ch) and self.codec_answers(ch):
                    self.codecs_ok |= 1 << ch
        every = (1 << self.channels) - 1
        if self.codecs_ok == every and self.host_synced:
            self.self_test_done(True)
        elif self.test_ticks >= CODEC_TICKS and self.codecs_ok != every:
            self.self_test_done(False, "codecs %02x of %02x answer" % (self.codecs_ok, every))
        elif time.ticks_diff(now, self.started) > SELF_TEST_MS:
            self.self_test_done(False, "no host sync")

    def self_test_done(self, ok, why=""):
        self.testing = False
        up = self.updater
        trial = up is not None and up.running >= 0 and up.state(up.running) == TRIAL
        if ok:
            self.log.info("self-test passed")
            if trial:
                self.log.info("trial confirmed (result %d)", up.confirm())
            return
        self.log.warning("self-test failed: %s", why)
        if trial:  # back to the previous image: the updater keeps why, the card reports it in SLOTS
            up.reject(REV_SELF_TEST)
            self.hw.reset()

    def run(self):
        wdt = self.hw.watchdog(WATCHDOG_MS)
        on_frame = self.on_frame  # bound once: MicroPython makes a new bound method at each lookup
        self.hello()
        next_frame = time.ticks_add(time.ticks_ms(), wire.FRAME_MS)
        next_status = next_frame
        while True:
            now = time.ticks_ms()
            self.now = now
            self.link.poll_each(on_frame)
            if time.ticks_diff(now, next_frame) >= 0:
                self.frame_tick(next_frame)
                if self.testing:
                    self.self_test(next_frame)
                next_frame = time.ticks_add(next_frame, wire.FRAME_MS)
                if time.ticks_diff(now, next_frame) > MAX_LAG_FRAMES * wire.FRAME_MS:
                    self.lag_skips += 1  # far behind (a stall): restart the clock, do not burst
                    self.log.warning("lag skip %d", self.lag_skips)
                    next_frame = time.ticks_add(now, wire.FRAME_MS)
            if time.ticks_diff(now, next_status) >= 0:
                self.status(now)
                next_status = time.ticks_add(now, wire.STATUS_MS)
                host_ok = time.ticks_diff(now, self.link.last_rx) < HOST_TIMEOUT_MS
                self.status_led.value(((now // 500) & 1) if host_ok else ((now // 100) & 1))
            if self.image_rx.waiting() and time.ticks_diff(next_frame, time.ticks_ms()) > IMAGE_SLACK_MS:
                self.image_rx.service()
            self.link.service(now)
            wdt.feed()
            time.sleep_ms(1)


def running_version(updater):
    # the version of the image that runs (its header's), or the firmware's own for a card with no image
    if updater is not None and updater.running >= 0:
        h = updater.header(updater.running)
        if h is not None:
            return (h[H_MAJOR], h[H_MINOR], h[H_PATCH])
    return board.FW_VERSION
