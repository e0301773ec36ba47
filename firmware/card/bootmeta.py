# Where the updater keeps things on the card's flash, and the boot metadata record.
#
# Layout (erase blocks):
#   0, 1    the metadata record, one copy in each block
#   2       the receive journal: one entry per flash block of the inactive slot fully received
#   3 ...   slot 0, then slot 1, the same size (the rest of the chip split in two)
# A slot holds an image's header (image_header.py, 64 bytes) and then its payload.
#
# The record is small and written whole: magic, sequence number, the active slot, each slot's
# state, the trial's boots left, the last revert's reason and slot, the security counter the card
# has confirmed, then a CRC-32 of all that. An update writes the next sequence number into the
# copy that does NOT hold the newest record (erase its block, write it), so the newest valid copy
# is always whole: a cut in the erase or the write leaves that copy invalid (its CRC fails) and
# the older one, still intact, wins.
import binascii
import struct

try:
    from micropython import const
except ImportError:  # CPython (the simulator)
    def const(x):
        return x

from . import wire

# slot states and revert reasons: the wire's (the card reports them in SLOTS)
EMPTY = wire.SLOT_EMPTY
RECEIVING = wire.SLOT_RECEIVING  # an image is arriving; the slot holds nothing bootable
PENDING = wire.SLOT_PENDING  # received and checked; the next boot tries it
TRIAL = wire.SLOT_TRIAL  # booted, not yet confirmed by its self-test
CONFIRMED = wire.SLOT_CONFIRMED  # confirmed (the active slot, or the previous image kept to fall back on)
REVERTED = wire.SLOT_REVERTED  # tried and given up; last_reason says why
REV_NONE = wire.REV_NONE
REV_NOT_CONFIRMED = wire.REV_NOT_CONFIRMED  # not confirmed within the trial's boots
REV_WATCHDOG = wire.REV_WATCHDOG  # the trial's last boot ended in a watchdog reset
REV_SELF_TEST = wire.REV_SELF_TEST  # the new firmware's self-test failed (it asked for the revert)
REV_BAD_IMAGE = wire.REV_BAD_IMAGE  # the slot no longer held a valid image when it was to boot

MAGIC = const(0x4D444E42)  # b"BNDM" read as a little-endian u32
RECORD = "<IIBBBBBBHI"  # magic, seq, active, state 0, state 1, boots left, last reason,
#                         reverted slot, reserved, security counter (then CRC-32 "<I")
RECORD_LEN = const(24)  # struct.calcsize(RECORD)
META_BLOCKS = const(2)
JOURNAL_BLOCK = const(2)
FIRST_SLOT_BLOCK = const(3)
JOURNAL_ENTRY = "<II"  # slot offset received up to (a block boundary), its complement


class Layout:
    def __init__(self, flash):
        bs = flash.block_size
        ws = flash.write_size
        blocks = flash.size // bs
        self.block_size = bs
        self.write_size = ws
        self.slot_blocks = (blocks - FIRST_SLOT_BLOCK) // 2
        self.slot_size = self.slot_blocks * bs
        self.slot_addr = (FIRST_SLOT_BLOCK * bs, (FIRST_SLOT_BLOCK + self.slot_blocks) * bs)
        self.journal_addr = JOURNAL_BLOCK * bs
        self.entry_len = _round_up(8, ws)
        self.record_len = _round_up(RECORD_LEN + 4, ws)
        if self.slot_blocks < 1 or 64 % ws or bs < 64 or bs // self.entry_len < self.slot_blocks:
            raise ValueError("flash of %d blocks of %d (writes of %d) cannot hold the updater's layout"
                             % (blocks, bs, ws))


def _round_up(n, m):
    return (n + m - 1) // m * m


class Meta:
    # the newest valid record, in RAM; save() writes it as the next one
    def __init__(self, flash, layout):
        self.flash = flash
        self.layout = layout
        self.buf = bytearray(layout.record_len)
        self.valid = False
        self.copy = -1  # which copy holds the newest valid record
        self.seq = 0
        self.active = 0
        self.states = bytearray(2)
        self.boots_left = 0
        self.last_reason = REV_NONE
        self.reverted_slot = 0xFF
        self.security = 0

    def load(self):
        # -> True if a valid record was found (the newer of the two copies)
        best = -1
        best_seq = -1
        for c in range(META_BLOCKS):
            seq = self._read(c)
            if seq is not None and seq > best_seq:
                best, best_seq = c, seq
        self.valid = best >= 0
        self.copy = best
        if self.valid:
            self._read(best, True)
        return self.valid

    def _read(self, copy, take=False):
        buf = self.buf
        self.flash.read(copy * self.layout.block_size, buf)
        f = struct.unpack_from(RECORD, buf, 0)
        crc = struct.unpack_from("<I", buf, RECORD_LEN)[0]
        if f[0] != MAGIC or binascii.crc32(memoryview(buf)[:RECORD_LEN]) != crc:
            return None
        if take:
            self.seq = f[1]
            self.active = f[2]
            self.states[0] = f[3]
            self.states[1] = f[4]
            self.boots_left = f[5]
            self.last_reason = f[6]
            self.reverted_slot = f[7]
            self.security = f[9]
        return f[1]

    def save(self):
        # write the record as the next sequence number into the other copy (see the top)
        buf = self.buf
        for i in range(len(buf)):
            buf[i] = 0xFF
        seq = self.seq + 1
        struct.pack_into(RECORD, buf, 0, MAGIC, seq, self.active, self.states[0], self.states[1],
                         self.boots_left, self.last_reason, self.reverted_slot, 0, self.security)
        struct.pack_into("<I", buf, RECORD_LEN, binascii.crc32(memoryview(buf)[:RECORD_LEN]))
        copy = 0 if self.copy != 0 else 1
        self.flash.erase(copy)
        self.flash.write(copy * self.layout.block_size, buf)
        self.seq = seq
        self.copy = copy
        self.valid = True

