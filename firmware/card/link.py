# The card's side of the serial link: frames in and out, acknowledgements, retries. The rules
# (retry interval, tries, dedupe window, frames in flight) are the wire format's, the same as the
# host's.
import binascii
import struct
import time

try:
    from micropython import const
except ImportError:  # CPython (the simulator, host-side tests)
    def const(x):
        return x

from . import wire

RX_CHUNK = const(256)  # bytes taken from the UART at a time


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
        # the receive path (poll_each), allocated once: bytes from the UART land in rx, a frame is
        # gathered in fbuf and taken apart there (COBS undone in place, wire.unstuff)
        self.rx = bytearray(RX_CHUNK)
        self.rx_mv = memoryview(self.rx)
        self.fbuf = bytearray(wire.MAX_WIRE)
        self.fbuf_mv = memoryview(self.fbuf)
        self.flen = 0
        self.discarding = False  # inside an oversized run: drop bytes until the next delimiter
        # views of a host audio frame in fbuf, made once: those come 400 times a second
        self.audio_check = self.fbuf_mv[1:wire.BODY_AT + wire.AUDIO_DOWN_LEN + wire.CRC_LEN]
        self.audio_body = self.fbuf_mv[wire.BODY_AT:wire.BODY_AT + wire.AUDIO_DOWN_LEN]

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
        # -> list of (type, channel, seq, body bytes) frames that are new and valid (for tests and
        # tools; the card's loop uses poll_each, which allocates nothing per audio frame)
        out = []
        self.poll_each(lambda ftype, ch, seq, body: out.append(
            (ftype, ch, seq, None if body is None else bytes(body))))
        return out

    def poll_each(self, fn):
        # hands each new, valid frame from the UART to fn(type, channel, seq, body). body is a
        # memoryview into the link's buffer, valid only during the call (copy what you keep), or
        # None for a retried command (ack it again, do not repeat it)
        uart = self.uart
        while True:
            n = uart.any()
            if not n:
                return
            n = uart.readinto(self.rx, n if n < RX_CHUNK else RX_CHUNK)
            if not n:
                return
            self._scan(n, fn)

    def _scan(self, n, fn):
        # split rx[:n] at 0x00 delimiters into frames; after garbage or an oversized run resync at
        # the next delimiter, so one damaged frame never costs the next one
        rx = self.rx
        fbuf = self.fbuf
        start = 0
        while start < n:
            z = rx.find(b"\x00", start, n)
            end = n if z < 0 else z
            k = end - start
            if k and not self.discarding:
                f = self.flen
                if f + k > len(fbuf):
                    self.counters[wire.LC_OVERSIZED] += 1
                    self.discarding = True
                    self.flen = 0
                else:
                    fbuf[f:f + k] = self.rx_mv[start:end]  # one small view, the bytes copied once
                    self.flen = f + k
            if z < 0:
                return
            if self.discarding:
                self.discarding = False
            elif self.flen:
                self._frame(fn)
            self.flen = 0
            start = z + 1

    def _frame(self, fn):
        # one delimited frame in fbuf[:flen]: check it, count it, hand it on
        c = self.counters
        fbuf = self.fbuf
        m = wire.unstuff(fbuf, self.flen)  # the payload is now fbuf[1:1 + m]
        if m < 0:
            c[wire.LC_COBS_ERRORS] += 1
            return
        blen = m - wire.HEADER_LEN - wire.CRC_LEN
        if blen < 0:
            c[wire.LC_TRUNCATED] += 1
            return
        ftype = fbuf[1]
        audio = ftype == wire.T_AUDIO and blen == wire.AUDIO_DOWN_LEN
        # a CRC over payload + its own CRC leaves a constant residue: no unpacking of the CRC, and
        # the residue is below 2**30, a small int (nothing allocated)
        check = self.audio_check if audio else self.fbuf_mv[1:1 + m]
        if binascii.crc32(check) != wire.CRC_RESIDUE:
            c[wire.LC_CRC_ERRORS] += 1
            return
        ok = wire.body_ok(ftype, blen)
        if ok is None:
            c[wire.LC_UNKNOWN_TYPE] += 1
            return
        if not ok:
            c[wire.LC_TRUNCATED] += 1
            return
        c[wire.LC_RX_FRAMES] += 1
        self.last_rx = time.ticks_ms()
        ch = fbuf[2]
        seq = fbuf[3] | (fbuf[4] << 8)
        if ftype == wire.T_ACK:
            self.pending.pop(seq, None)
            return
        if ftype == wire.T_CMD:
            if seq in self.seen:
                c[wire.LC_DUPLICATES] += 1
                fn(wire.T_ACK, ch, seq, None)  # a retry: ack again, do not repeat it
                return
            self.seen.append(seq)
            if len(self.seen) > wire.DEDUPE_WINDOW:
                self.seen.pop(0)
        fn(ftype, ch, seq, self.audio_body if audio else self.fbuf_mv[wire.BODY_AT:wire.BODY_AT + blen])

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
