# The card's updater: receives an image into the inactive slot, checks it, and decides at each
# boot which slot runs (trial boot, confirm, revert). docs/firmware-update.md describes it.
#
# Never in place: the running slot is never written; an image arrives into the other slot, in
# chunks (offset + CRC-32 of the chunk), and only a metadata update (bootmeta.py: two copies,
# the newer valid one wins) makes it bootable. A power cut at any flash operation leaves a card
# that boots the old or the new image, never neither, and an update that resumes.
#
# Resuming: the journal block gets one entry each time a flash block of the slot is complete, so
# after a power cut the transfer resumes at the last complete block (at most one block is sent
# again; the block the cut hit may hold a torn write and is erased again). After a cut link
# without a reboot it resumes at the last good chunk (next_offset, in RAM).
#
# Every call returns a result code (OK or one of the E_* below), the wire's IR_* codes.
import binascii
import hashlib
import struct

try:
    from micropython import const
except ImportError:  # CPython (the simulator)
    def const(x):
        return x

from . import image_header as ih
from . import wire
from .bootmeta import (
    CONFIRMED,
    EMPTY,
    JOURNAL_ENTRY,
    PENDING,
    RECEIVING,
    REV_BAD_IMAGE,
    REV_NOT_CONFIRMED,
    REV_SELF_TEST,
    REV_WATCHDOG,
    REVERTED,
    TRIAL,
    Layout,
    Meta,
)
from .flash import FlashError

# result codes: the wire's (wire.IR_*), so the host reads them as they are
OK = wire.IR_OK
E_HEADER = wire.IR_HEADER  # not an image header this card reads (magic, format, size)
E_BOARD = wire.IR_BOARD  # the image is for another board
E_DOWNGRADE = wire.IR_DOWNGRADE  # its security counter is lower than the card's
E_TOO_BIG = wire.IR_TOO_BIG  # header + payload do not fit in a slot
E_CHUNK_CRC = wire.IR_CHUNK_CRC  # the chunk's CRC-32 does not match its bytes: send it again
E_OFFSET = wire.IR_OFFSET  # not the offset the card expects (next_offset): send from there
E_CHUNK_SIZE = wire.IR_CHUNK_SIZE  # empty, too long, past the end, or not a multiple of the write size
E_DIGEST = wire.IR_DIGEST  # the payload's SHA-256 is not the header's: the transfer starts over
E_NOT_RECEIVING = wire.IR_NOT_RECEIVING  # no transfer begun since this boot
E_INCOMPLETE = wire.IR_INCOMPLETE  # finish before every byte arrived
E_IN_TRIAL = wire.IR_IN_TRIAL  # a trial is running: confirm or revert it before a new image
E_FLASH = wire.IR_FLASH  # the flash driver failed an operation
E_NOT_TRIAL = wire.IR_NOT_TRIAL  # confirm/reject while the running slot is not a trial
E_NO_IMAGE = wire.IR_NO_IMAGE  # the card has no valid image to run (or boot() was not called)

TRIAL_BOOTS = const(3)  # boots a trial gets to confirm itself (RAUC / U-Boot boot counting)
CHUNK_MAX = const(512)  # longest chunk accepted
READ_BUF = const(256)  # reading a slot back for its digest, in pieces
FINISH_STEP = const(1024)  # bytes finish_step() checks per call (a fraction of a millisecond's work)
CHECKING = const(-1)  # finish_start()/finish_step(): the check goes on, call finish_step() again
INVERT = const(0xFFFFFFFF)


class Updater:
    def __init__(self, flash, board_id, trial_boots=TRIAL_BOOTS, chunk_max=CHUNK_MAX):
        self.flash = flash
        self.layout = Layout(flash)
        self.meta = Meta(flash, self.layout)
        self.board_id = board_id
        self.trial_boots = trial_boots
        self.chunk_max = chunk_max
        self.running = -1  # the slot boot() chose
        self.target = -1  # the slot receiving an image since begin(), or -1
        self.next_offset = 0  # image offset the next chunk must start at
        self.image_len = 0  # header + payload of the image being received
        self._erased_to = 0  # slot offset up to which blocks are erased for this transfer
        self._journaled = 0  # slot offset the journal has recorded as received
        self._journal_next = 0  # index of the next free journal entry
        self._hdr = bytearray(ih.HEADER_LEN)
        self._cmp = bytearray(ih.HEADER_LEN)
        self._buf = bytearray(READ_BUF)
        self._pad = bytearray(self.layout.write_size)
        self._entry = bytearray(self.layout.entry_len)
        self.finishing = False  # finish_start() began a check that finish_step() continues
        self._chk_want = b""
        self._chk_addr = 0
        self._chk_left = 0
        self._chk_hash = None
        self.meta.load()

    # -- boot ------------------------------------------------------------------------------------
    def boot(self, watchdog_reset=False):
        # -> the slot to run (0 or 1), or -1 if neither holds a valid image. Called once per boot,
        # before the application, with whether the last reset was the watchdog's.
        m = self.meta
        self.target = -1
        if not m.valid:
            return self._first_boot()
        for s in (0, 1):
            if m.states[s] == PENDING:
                if not self.image_ok(s):
                    return self._revert(s, REV_BAD_IMAGE)
                m.states[s] = TRIAL
                m.boots_left = self.trial_boots - 1
                m.save()
                self.running = s
                return s
        for s in (0, 1):
            if m.states[s] == TRIAL:
                if watchdog_reset:
                    return self._revert(s, REV_WATCHDOG)
                if m.boots_left == 0:
                    return self._revert(s, REV_NOT_CONFIRMED)
                m.boots_left -= 1
                m.save()
                self.running = s
                return s
        return self._boot_active()

    def _first_boot(self):
        # no metadata (a new card, or programmed at the factory): the first slot holding a valid
        # image becomes the confirmed, active one
        m = self.meta
        for s in (0, 1):
            if self.image_ok(s):
                m.active = s
                m.states[s] = CONFIRMED
                m.states[1 - s] = EMPTY
                m.security = self._security(s)
                m.save()
                self.running = s
                return s
        self.running = -1
        return -1

    def _boot_active(self):
        m = self.meta
        s = m.active
        if not self.image_ok(s):  # bit rot: fall back on the other slot if it holds a confirmed image
            s = 1 - s
            if m.states[s] != CONFIRMED or not self.image_ok(s):
                self.running = -1
                return -1
            m.active = s
            m.save()
        self.running = s
        return s

    def _revert(self, slot, reason):
        m = self.meta
        m.states[slot] = REVERTED
        m.last_reason = reason
        m.reverted_slot = slot
        m.save()
        return self._boot_active()

    def confirm(self):
        # the running trial passed its self-test: it becomes the active slot
        m = self.meta
        s = self.running
        if s < 0 or m.states[s] != TRIAL:
            return E_NOT_TRIAL
        m.states[s] = CONFIRMED
        m.active = s
        sec = self._security(s)
        if sec > m.security:
            m.security = sec
        m.save()
        return OK

    def reject(self, reason=REV_SELF_TEST):
        # the running trial failed its self-test: revert now (the caller then reboots)
        s = self.running
        if s < 0 or self.meta.states[s] != TRIAL:
            return E_NOT_TRIAL
        self._revert(s, reason)
        return OK

    # -- receiving -------------------------------------------------------------------------------
    def begin(self, header):
        # start (or resume) receiving the image with this header into the inactive slot;
        # on OK, next_offset is where the host sends from
        m = self.meta
        if self.running < 0:
            return E_NO_IMAGE
        if m.states[0] == TRIAL or m.states[1] == TRIAL:
            return E_IN_TRIAL
        code = self._check_header(header)
        if code != OK:
            return code
        try:
            return self._begin(header)
        except FlashError:
            self.target = -1
            return E_FLASH

    def _check_header(self, header):
        try:
            h = ih.unpack(header)
        except ValueError:
            return E_HEADER
        if h[ih.H_BOARD] != self.board_id:
            return E_BOARD
        if h[ih.H_SECURITY] < self.meta.security:
            return E_DOWNGRADE
        if ih.HEADER_LEN + h[ih.H_LENGTH] > self.layout.slot_size:
            return E_TOO_BIG
        self.image_len = ih.HEADER_LEN + h[ih.H_LENGTH]
        return OK

    def _begin(self, header):
        m = self.meta
        lay = self.layout
        t = 1 - self.running
        base = lay.slot_addr[t]
        resume = 0
        if m.states[t] == RECEIVING:
            self.flash.read(base, self._cmp)
            if self._cmp == bytes(header[:ih.HEADER_LEN]):
                if self.target == t:
                    return OK  # the link was cut, not the power: resume at the last good chunk
                resume = self._scan_journal()
        else:
            m.states[t] = RECEIVING  # first: the slot's old image is no longer claimed as valid
            m.save()
        if resume == 0:
            # a fresh start: the journal is erased before the header changes, so its entries
            # always belong to the header in the slot
            self.flash.erase(lay.journal_addr // lay.block_size)
            self._journal_next = 0
            self.flash.erase(base // lay.block_size)
            self._hdr[:] = header[:ih.HEADER_LEN]
            self.flash.write(base, self._hdr)
            resume = ih.HEADER_LEN
            self._erased_to = lay.block_size
            self._journaled = 0
        else:
            self._erased_to = resume
            self._journaled = resume
        self.target = t
        self.next_offset = resume
        self.finishing = False
        return OK

    def _scan_journal(self):
        # -> the slot offset received up to (a block boundary), 0 if none; sets the next free entry
        lay = self.layout
        e = self._entry
        done = 0
        i = 0
        n = lay.block_size // lay.entry_len
        while i < n:
            self.flash.read(lay.journal_addr + i * lay.entry_len, e)
            a, b = struct.unpack_from(JOURNAL_ENTRY, e, 0)
            if a == INVERT and b == INVERT:
                break  # erased: the end of the journal
            if a ^ b == INVERT and a % lay.block_size == 0 and a <= self.image_len and a > done:
                done = a
            i += 1  # a torn entry is skipped (its units are written: the next goes after it)
        self._journal_next = i
        return done

    def chunk(self, offset, data, crc):
        # one chunk of the image at this image offset, with the CRC-32 of its bytes
        if self.target < 0:
            return E_NOT_RECEIVING
        n = len(data)
        if n == 0 or n > self.chunk_max:
            return E_CHUNK_SIZE
        if binascii.crc32(data) != crc:
            return E_CHUNK_CRC
        if offset + n <= self.next_offset:
            return OK  # a chunk the card already has (the host resent it): nothing to do
        if offset != self.next_offset:
            return E_OFFSET
        end = offset + n
        ws = self.layout.write_size
        if end > self.image_len or (n % ws and end != self.image_len):
            return E_CHUNK_SIZE
        try:
            self._write(offset, data, n)
        except FlashError:
            return E_FLASH
        return OK

    def _write(self, offset, data, n):
        lay = self.layout
        bs = lay.block_size
        ws = lay.write_size
        base = lay.slot_addr[self.target]
        end = offset + n
        while self._erased_to < end:
            self.flash.erase((base + self._erased_to) // bs)
            self._erased_to += bs
        whole = n - n % ws
        if whole:
            self.flash.write(base + offset, memoryview(data)[:whole])
        if whole != n:  # the image's last bytes: pad the write unit with erased bytes
            pad = self._pad
            for i in range(ws):
                pad[i] = 0xFF
            pad[:n - whole] = memoryview(data)[whole:]
            self.flash.write(base + offset + whole, pad)
        self.next_offset = end
        done = end - end % bs
        if done > self._journaled and self._journal_next < bs // lay.entry_len:
            e = self._entry
            for i in range(len(e)):
                e[i] = 0xFF
            struct.pack_into(JOURNAL_ENTRY, e, 0, done, done ^ INVERT)
            self.flash.write(lay.journal_addr + self._journal_next * lay.entry_len, e)
            self._journal_next += 1
            self._journaled = done

    def finish(self):
        # every byte is in: check the payload's digest (and again board and counter), then the
        # slot is pending: the next boot tries it. -> the result code (blocks for the check)
        res = self.finish_start()
        while res < 0:
            res = self.finish_step(READ_BUF)
        return res

    def finish_start(self):
        # finish() in pieces, for a card that must keep its audio going: -> CHECKING, then call
        # finish_step() (one piece each) until it returns the result; or a result code now
        t = self.target
        if t < 0:
            return E_NOT_RECEIVING
        if self.next_offset != self.image_len:
            return E_INCOMPLETE
        if not self.check_start(t):
            return self._finished(False)
        self.finishing = True
        return CHECKING

    def finish_step(self, budget=FINISH_STEP):
        if not self.finishing:
            return E_NOT_RECEIVING
        ok = self.check_step(budget)
        if ok is None:
            return CHECKING
        self.finishing = False
        return self._finished(ok)

    def _finished(self, ok):
        t = self.target
        self.target = -1
        try:
            if not ok:
                # what arrived is not the image: the next begin starts from the first byte
                self.flash.erase(self.layout.journal_addr // self.layout.block_size)
                self._journal_next = 0
                return E_DIGEST
            if self._security(t) < self.meta.security:
                return E_DOWNGRADE
            self.meta.states[t] = PENDING
            self.meta.save()
        except FlashError:
            return E_FLASH
        return OK

    # -- reading slots ---------------------------------------------------------------------------
    def header(self, slot):
        # -> the slot's header fields (image_header H_* indices), or None if it holds no header
        self.flash.read(self.layout.slot_addr[slot], self._hdr)
        try:
            return ih.unpack(self._hdr)
        except ValueError:
            return None

    def _security(self, slot):
        h = self.header(slot)
        return h[ih.H_SECURITY] if h else 0

    def image_ok(self, slot):
        # the slot holds a whole image for this board whose payload matches its SHA-256
        if not self.check_start(slot):
            return False
        ok = None
        while ok is None:
            ok = self.check_step(READ_BUF)
        return ok

    def check_start(self, slot):
        # start checking a slot's image piece by piece (check_step); -> False if its header
        # is not one for this board and slot
        h = self.header(slot)
        if h is None or h[ih.H_BOARD] != self.board_id or ih.HEADER_LEN + h[ih.H_LENGTH] > self.layout.slot_size:
            return False
        self._chk_want = h[ih.H_SHA256]
        self._chk_addr = self.layout.slot_addr[slot] + ih.HEADER_LEN
        self._chk_left = h[ih.H_LENGTH]
        self._chk_hash = hashlib.sha256()
        return True

    def check_step(self, budget):
        # read and hash up to `budget` more bytes -> None while some are left, else whether the
        # payload matched the header's SHA-256
        mv = memoryview(self._buf)
        while budget > 0 and self._chk_left > 0:
            k = self._chk_left if self._chk_left < len(mv) else len(mv)
            self.flash.read(self._chk_addr, mv[:k])
            self._chk_hash.update(mv[:k])
            self._chk_addr += k
            self._chk_left -= k
            budget -= k
        if self._chk_left > 0:
            return None
        return self._chk_hash.digest() == self._chk_want

    def state(self, slot):
        return self.meta.states[slot]
