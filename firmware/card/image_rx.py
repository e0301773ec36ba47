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

DEPTH = const(8)  # frames the host may have in flight; one more is dropped (the host resends it)
IMAGE_HEADER_LEN = const(64)  # image_header.HEADER_LEN


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
        self.ack_buf = bytearray(struct.calcsize(wire.IMAGE_ACK))

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

    def service(self):
        # serve the oldest queued frame -> True if there was one
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
            res = up.begin(data) if len(data) == IMAGE_HEADER_LEN else wire.IR_HEADER
        elif op == wire.IMG_FINISH:
            res = up.finish()
        else:
            res = wire.IR_UNKNOWN_OP
        struct.pack_into(wire.IMAGE_ACK, self.ack_buf, 0, op, res, up.next_offset if up is not None else 0)
        self.send(wire.T_IMAGE_ACK, wire.BROADCAST, self.seqs[i], self.ack_buf)
        return True
