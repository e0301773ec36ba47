# The card's side of the serial link: frames in and out, acknowledgements, retries.
import struct
import time

from . import wire

RETRY_MS = 80
MAX_TRIES = 25  # ~2 s of retries, then the event is dropped and counted
MAX_PENDING = 32
SEEN = 32  # how many host sequence numbers are remembered to spot duplicates


class CardLink:
    def __init__(self, uart):
        self.uart = uart
        self.deframer = wire.Deframer()
        self.counters = [0] * len(wire.LINK_COUNTERS)
        self.tx_seq = 0
        self.pending = {}  # seq -> [frame, due ticks, tries]
        self.seen = []
        self.last_rx = time.ticks_ms()
        self.events_dropped = 0
        self.tx_dropped = 0
        self.cut = False
        self.errors = [0] * len(wire.ERROR_NAMES)

    def write(self, frame):
        if self.cut:
            # the last frame was cut short: a delimiter first, so only that frame is lost
            if not self.uart.write(b"\x00"):
                return
            self.cut = False
        mv = memoryview(frame)
        while mv:
            n = self.uart.write(mv)
            if not n:
                # the UART is full: drop the rest rather than stall the media clock
                self.cut = True
                self.tx_dropped += 1
                return
            mv = mv[n:]

    def poll(self):
        # -> list of (type, channel, seq, body) frames that are new and valid
        n = self.uart.any()
        if not n:
            return ()
        data = self.uart.read(n)
        if not data:
            return ()
        out = []
        c = self.counters
        for res in self.deframer.feed(data):
            code = res[0]
            if code != wire.OK:
                self.errors[code] += 1
                c[code] += 1  # counters 1..5 are the error kinds, in wire's order
                continue
            c[0] += 1
            self.last_rx = time.ticks_ms()
            ftype, ch, seq = res[1], res[2], res[3]
            if ftype == wire.T_ACK:
                self.pending.pop(seq, None)
                continue
            if ftype == wire.T_CMD:
                if seq in self.seen:
                    c[6] += 1
                    out.append((wire.T_ACK, ch, seq, None))  # a retry: ack again, do not repeat it
                    continue
                self.seen.append(seq)
                if len(self.seen) > SEEN:
                    self.seen.pop(0)
            out.append((ftype, ch, seq, res[4]))
        return out

    def ack(self, seq, status):
        self.write(wire.encode(wire.T_ACK, wire.BROADCAST, seq, struct.pack(wire.ACK, status)))

    def send(self, ftype, ch, seq, body):
        self.write(wire.encode(ftype, ch, seq, body))

    def send_reliable(self, ftype, ch, body):
        seq = self.tx_seq
        self.tx_seq = (seq + 1) & 0xFFFF
        frame = wire.encode(ftype, ch, seq, body)
        if len(self.pending) >= MAX_PENDING:
            # the host has been gone a while: the oldest event is lost, say so in the counters
            oldest = min(self.pending, key=lambda s: wire.seq_diff(s, self.tx_seq))
            del self.pending[oldest]
            self.events_dropped += 1
        self.pending[seq] = [frame, time.ticks_add(time.ticks_ms(), RETRY_MS), 1]
        self.write(frame)
        return seq

    def service(self, now):
        if not self.pending:
            return
        for seq in list(self.pending):
            p = self.pending[seq]
            if time.ticks_diff(now, p[1]) < 0:
                continue
            if p[2] >= MAX_TRIES:
                del self.pending[seq]
                self.events_dropped += 1
                continue
            p[1] = time.ticks_add(now, RETRY_MS)
            p[2] += 1
            self.counters[7] += 1
            self.write(p[0])

    def reset_session(self):
        # the host resynchronised: it will learn the line states afresh
        self.pending = {}
        self.seen = []
