# The card's playout buffer for one line: the host's 20 ms frames, put back in sequence order and
# played at a fixed delay. Frames live in SLOTS preallocated slots, slot = seq % SLOTS, so putting
# and taking a frame allocates nothing.
#
#   put(seq, frame)  a frame from the host (copied); redundant copies of one seq are kept once
#   take()           one 20 ms turn: the frame to play now, or None (play silence)
#   played           the seq take() returned (the echo reference sent up), or NO_SEQ
#
# Playout starts when PREFILL frames are queued. Then one frame is played per turn: a frame that
# arrives after its turn is dropped as late, a turn whose frame is missing while later ones are
# queued is silence and skipped (lost), a turn with nothing at all queued is silence and waits for
# that frame (an underrun: the host fell behind; playout stretches), more than DEPTH frames queued push the oldest out and
# playout moves on to the next one queued (overrun). After REPRIME_AFTER silent turns in a row, or a frame more than RESYNC away
# from where playout is, the stream is taken to have stopped or restarted: buffering starts afresh.
try:
    from micropython import const
except ImportError:  # CPython (the simulator, host-side tests)
    def const(x):
        return x

from . import wire

DEPTH = const(8)  # more than this queued is an overrun
SLOTS = const(16)  # a power of two (slot = seq & MASK), room for DEPTH frames with gaps between
MASK = const(SLOTS - 1)
PREFILL = const(3)  # frames buffered before playout starts: 60 ms for the host's scheduling jitter
REPRIME_AFTER = const(10)  # silent turns in a row after which the stream counts as stopped
RESYNC = const(50)  # a frame this far (1 s) from the playout point belongs to a new stream
EMPTY = const(-1)


class Playout:
    def __init__(self, counters, frame_len=wire.FRAME_SAMPLES):
        self.c = counters  # the line's counters (wire.CC_*): this updates the audio ones
        self.slots = [bytearray(frame_len) for _ in range(SLOTS)]
        self.tags = [EMPTY] * SLOTS  # the seq each slot holds
        # the longest run of lost turns since boot: what the link cost, apart from the host's
        # lateness (underruns), which CC_LONGEST_GAP includes (the simulator reports it)
        self.longest_loss = 0
        self.reset()

    def reset(self):
        for i in range(SLOTS):
            self.tags[i] = EMPTY
        self.count = 0
        self.head = EMPTY  # the next seq to play (before playout: the oldest queued)
        self.primed = False
        self.gap_run = 0
        self.loss_run = 0  # lost turns in a row (frames missing while later ones are queued)
        self.played = wire.NO_SEQ

    def put(self, seq, frame):
        c = self.c
        if self.head == EMPTY:
            self.head = seq
        d = wire.seq_diff(seq, self.head)
        if d >= RESYNC or d <= -RESYNC:
            self.reset()  # the host restarted its sequence
            self.head = seq
            d = 0
        elif d < 0:
            if self.primed:
                c[wire.CC_LATE] += 1  # its turn has passed (or a redundant copy of a played frame)
                return
            if not self._fits_before(seq):
                c[wire.CC_LATE] += 1
                return
            self.head = seq  # not playing yet: an older frame that still fits starts the queue
            d = 0
        if d >= SLOTS:
            self._advance_to((seq - MASK) & 0xFFFF)  # no slot left for it: move playout on
        i = seq & MASK
        if self.tags[i] == seq:
            return  # a redundant copy
        self.slots[i][:] = frame
        self.tags[i] = seq
        self.count += 1
        c[wire.CC_AUDIO_DOWN] += 1
        if self.count > DEPTH:
            self._advance_to(self._oldest_after(self._oldest()))  # overrun: drop the oldest

    def _oldest(self):
        best = EMPTY
        bd = 0
        for t in self.tags:
            if t != EMPTY:
                d = wire.seq_diff(t, self.head)
                if best == EMPTY or d < bd:
                    best = t
                    bd = d
        return best

    def _oldest_after(self, seq):
        # the oldest queued frame after seq
        best = EMPTY
        bd = 0
        for t in self.tags:
            if t != EMPTY:
                d = wire.seq_diff(t, seq)
                if d > 0 and (best == EMPTY or d < bd):
                    best = t
                    bd = d
        return best

    def _fits_before(self, seq):
        # would every queued frame still have a slot if seq were the oldest?
        for t in self.tags:
            if t != EMPTY and wire.seq_diff(t, seq) >= SLOTS:
                return False
        return True

    def _advance_to(self, new_head):
        # drop what is older than new_head: no room for it (overruns)
        for i in range(SLOTS):
            t = self.tags[i]
            if t != EMPTY and wire.seq_diff(t, new_head) < 0:
                self.tags[i] = EMPTY
                self.count -= 1
                self.c[wire.CC_OVERRUNS] += 1
        self.head = new_head

    def take(self):
        self.played = wire.NO_SEQ
        if not self.primed:
            if self.count < PREFILL:
                return None
            self.primed = True
        c = self.c
        s = self.head
        i = s & MASK
        if self.tags[i] == s:
            self.head = (s + 1) & 0xFFFF
            self.tags[i] = EMPTY
            self.count -= 1
            self.gap_run = 0
            self.loss_run = 0
            self.played = s
            return self.slots[i]  # valid until a frame SLOTS later is put
        if self.count:
            c[wire.CC_LOST] += 1  # this frame never arrived: later ones did, skip it
            self.head = (s + 1) & 0xFFFF
            self.loss_run += 1
            if self.loss_run > self.longest_loss:
                self.longest_loss = self.loss_run
        else:
            # nothing queued at all: the host fell behind. Wait for this very frame instead of
            # moving on, or every frame the host sends when it catches up would be late
            c[wire.CC_UNDERRUNS] += 1
            self.loss_run = 0
        self.gap_run += 1
        if self.gap_run > c[wire.CC_LONGEST_GAP]:
            c[wire.CC_LONGEST_GAP] = self.gap_run
        if self.gap_run >= REPRIME_AFTER:
            self.primed = False  # the host stopped sending: buffer afresh when it resumes
            if not self.count:
                self.head = EMPTY
        return None
