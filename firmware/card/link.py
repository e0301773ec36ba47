# The card's side of the serial link: frames in and out, acknowledgements, retries. The rules
# (retry interval, tries, dedupe window, frames in flight) are the wire format's, the same as the
# host's.
import struct
import time

from . import wire


class CardLink:
    def __init__(self, uart):
        self.uart = uart
        self.deframer = wire.Deframer()
        self.counters = [0] * wire.N_COUNTERS  # indexed by wire.LC_*
        self.tx_seq = 0
        self.pending = {}  # seq -> [frame, due ticks, tries]
        self.seen = []  # the last DEDUPE_WINDOW command seqs, to spot retried commands
        self.last_rx = time.ticks_ms()
        self.events_dropped = 0
        self.tx_dropped = 0
        self.cut = False
        self.ack_buf = bytearray(wire.BODY_AT + struct.calcsize(wire.ACK) + wire.CRC_LEN + 1)

    def write(self, frame, n=-1):
        # frame[:n] (all of it for n < 0) to the UART, or as much as fits: a full UART drops the
        # rest rather than stall the media clock. A whole buffer goes out without allocating.
        if n < 0:
            n = len(frame)
        if self.cut:
            # the last frame was cut short: a delimiter first, so only that frame is lost
            if not self.uart.write(b"\x00"):
                self.tx_dropped += 1
                return
            self.cut = False
        done = self.uart.write(frame if n == len(frame) else memoryview(frame)[:n])
        if done is None:
            done = 0
        if done < n:
            mv = memoryview(frame)
            while done < n:  # rare: the UART buffer was nearly full
                k = self.uart.write(mv[done:n])
                if not k:
                    self.cut = True
                    self.tx_dropped += 1
                    return
                done += k

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
                c[_ERROR_COUNTER[code]] += 1
                continue
            c[wire.LC_RX_FRAMES] += 1
            self.last_rx = time.ticks_ms()
            ftype, ch, seq = res[1], res[2], res[3]
            if ftype == wire.T_ACK:
                self.pending.pop(seq, None)
                continue
            if ftype == wire.T_CMD:
                if seq in self.seen:
                    c[wire.LC_DUPLICATES] += 1
                    out.append((wire.T_ACK, ch, seq, None))  # a retry: ack again, do not repeat it
                    continue
                self.seen.append(seq)
                if len(self.seen) > wire.DEDUPE_WINDOW:
                    self.seen.pop(0)
            out.append((ftype, ch, seq, res[4]))
        return out

    def ack(self, seq, status):
        buf = self.ack_buf
        buf[wire.BODY_AT] = status
        self.write(buf, wire.encode_into(buf, wire.T_ACK, wire.BROADCAST, seq, 1))

    def send(self, ftype, ch, seq, body):
        self.write(wire.encode(ftype, ch, seq, body))

    def send_reliable(self, ftype, ch, body):
        seq = self.tx_seq
        self.tx_seq = (seq + 1) & 0xFFFF
        frame = wire.encode(ftype, ch, seq, body)
        if len(self.pending) >= wire.MAX_PENDING:
            # the host has been gone a while: the oldest event is lost, say so in the counters
            oldest = min(self.pending, key=lambda s: wire.seq_diff(s, self.tx_seq))
            del self.pending[oldest]
            self.events_dropped += 1
        self.pending[seq] = [frame, time.ticks_add(time.ticks_ms(), wire.RETRY_MS), 1]
        self.write(frame)
        return seq

    def service(self, now):
        # resend what is due; after MAX_TRIES sends an event is dropped and counted
        if not self.pending:
            return
        for seq in list(self.pending):
            p = self.pending[seq]
            if time.ticks_diff(now, p[1]) < 0:
                continue
            if p[2] >= wire.MAX_TRIES:
                del self.pending[seq]
                self.events_dropped += 1
                continue
            p[1] = time.ticks_add(now, wire.RETRY_MS)
            p[2] += 1
            self.counters[wire.LC_RETRIES] += 1
            self.write(p[0])

    def reset_session(self):
        # the host resynchronised: it will learn the line states afresh
        self.pending = {}
        self.seen = []


# deframer result -> the link counter it increments
_ERROR_COUNTER = {
    wire.E_CRC: wire.LC_CRC_ERRORS,
    wire.E_COBS: wire.LC_COBS_ERRORS,
    wire.E_TRUNCATED: wire.LC_TRUNCATED,
    wire.E_OVERSIZED: wire.LC_OVERSIZED,
    wire.E_UNKNOWN: wire.LC_UNKNOWN_TYPE,
}
