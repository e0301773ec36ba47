# IMAGE frames from the host -> the card's updater, after the audio: frames wait in a small ring
# of preallocated buffers and the main loop serves one when the next 20 ms tick is not due
# (docs/linecard-protocol.md, "Image transfer"). Each is answered by an IMAGE_ACK with its seq.
import struct

try:
    from micropython import const
except ImportError:  # CPython (the simulator)
    def const(x):
        return x

from . import wire
from .image_header import H_MAJOR, H_MINOR, H_PATCH, H_SECURITY, H_SHA256, HEADER_LEN
from .updater import CHECKING

DEPTH = wire.IMAGE_QUEUE  # frames the host may have in flight; one more is dropped (the host resends it).
#   16: the host's window must outlast the 5 ms before each audio tick in which nothing is served, and its
#   answers' way back (through a simctl card process: 84.6 % of the link's byte rate with 12, 85.2 % with 16;
#   24 gave 86 % but held a call's audio 48 ms behind the chunks). 16 buffers of 161 bytes: 2.6 KB of RAM
NO_DIGEST = bytes(wire.DIGEST_PREFIX)  # a slot without a readable header


class ImageReceiver:
    def __init__(self, updater, send, depth=DEPTH):
        self.updater = updater  # None: this card has no updater (every op answers NO_IMAGE)
        self.send = send  # send(type, channel, seq, body)
        self.bufs = [bytearray(wire.IMAGE_LEN + wire.IMAGE_DATA_MAX) for _ in range(depth)]
        self.lens = [0] * depth
        self.seqs = [0] * depth
        self.head = 0
        self.count = 0
        self.dropped = 0
        self.finish_seq = -1  # the FINISH whose check goes on (answered when it ends)
        self.ack_buf = bytearray(struct.calcsize(wire.IMAGE_ACK))
        self.slots_buf = bytearray(struct.calcsize(wire.SLOTS))

    def take(self, seq, body):
        # queue one IMAGE frame (the deframer checked its length)
        depth = len(self.bufs)
        if self.count == depth:
            self.dropped += 1
            return
        i = (self.head + self.count) % depth
        n = len(body)
        self.bufs[i][:n] = body
        self.lens[i] = n
        self.seqs[i] = seq
        self.count += 1

    def waiting(self):
        # something to serve: a queued frame, or a FINISH's check to continue
        return self.count or self.finish_seq >= 0

    def service(self):
        # one piece of work: continue a FINISH's check, or serve the oldest queued frame
        # -> True if there was something to do
        if self.finish_seq >= 0:
            res = self.updater.finish_step()
            if res != CHECKING:
                self._answer(wire.IMG_FINISH, res, self.finish_seq)
                self.finish_seq = -1
            return True
        if not self.count:
            return False
        i = self.head
        self.head = (i + 1) % len(self.bufs)
        self.count -= 1
        buf = self.bufs[i]
        op, offset, crc = struct.unpack_from(wire.IMAGE, buf, 0)
        data = memoryview(buf)[wire.IMAGE_LEN:self.lens[i]]
        up = self.updater
        if up is None:
            res = wire.IR_NO_IMAGE
        elif op == wire.IMG_CHUNK:
            res = up.chunk(offset, data, crc)
        elif op == wire.IMG_BEGIN:
            res = up.begin(data) if len(data) == HEADER_LEN else wire.IR_HEADER
        elif op == wire.IMG_STATUS:
            self._slots(self.seqs[i])
            return True
        elif op == wire.IMG_FINISH:
            res = up.finish_start()
            if res == CHECKING:  # the digest is checked a piece per pass, the answer comes after
                self.finish_seq = self.seqs[i]
                return True
        else:
            res = wire.IR_UNKNOWN_OP
        self._answer(op, res, self.seqs[i])
        return True

    def _answer(self, op, res, seq):
        up = self.updater
        struct.pack_into(wire.IMAGE_ACK, self.ack_buf, 0, op, res, up.next_offset if up is not None else 0)
        self.send(wire.T_IMAGE_ACK, wire.BROADCAST, seq, self.ack_buf)

    def _slots(self, seq):
        # what `nodectl card info` shows: which slot runs, each slot's state, version and digest, the last revert
        up = self.updater
        m = up.meta
        v = []
        for slot in (0, 1):
            h = up.header(slot)
            v.append((m.states[slot], h[H_MAJOR], h[H_MINOR], h[H_PATCH], h[H_SECURITY],
                      h[H_SHA256][:wire.DIGEST_PREFIX]) if h else (m.states[slot], 0, 0, 0, 0, NO_DIGEST))
        struct.pack_into(wire.SLOTS, self.slots_buf, 0, up.running, m.active, m.boots_left, m.last_reason,
                         m.reverted_slot, *v[0], *v[1])
        self.send(wire.T_SLOTS, wire.BROADCAST, seq, self.slots_buf)
