# The card's playout buffer (card/playout.py): order, redundant copies, late, missing, wrap,
# overrun, resync. Run on the MicroPython VM and on CPython (tests/firmware/test_playout.py).
from card import wire
from card.playout import DEPTH, PREFILL, REPRIME_AFTER, RESYNC, Playout
from mpytest import eq


def frame(seq):
    f = bytearray(wire.FRAME_SAMPLES)
    f[0] = seq & 0xFF
    f[1] = seq >> 8
    return f


def new():
    c = [0] * wire.N_COUNTERS
    return Playout(c), c


def turns(p, n):
    # n turns -> the seq each played (read from the frame's content) or None for silence
    out = []
    for _ in range(n):
        f = p.take()
        if f is None:
            eq(p.played, wire.NO_SEQ, "played without a frame")
            out.append(None)
        else:
            seq = f[0] | (f[1] << 8)
            eq(p.played, seq, "played seq = the frame's")
            out.append(seq)
    return out


def test_waits_for_prefill_then_plays_in_order():
    p, c = new()
    for s in range(PREFILL - 1):
        p.put(s, frame(s))
    eq(turns(p, 2), [None, None], "before the prefill")
    eq(c[wire.CC_UNDERRUNS], 0, "no underrun while priming")
    p.put(PREFILL - 1, frame(PREFILL - 1))
    p.put(PREFILL, frame(PREFILL))
    eq(turns(p, PREFILL + 1), list(range(PREFILL + 1)), "in order")
    eq(c[wire.CC_AUDIO_DOWN], PREFILL + 1, "frames taken")


def test_reordered_frames_play_in_sequence_order():
    p, c = new()
    for s in (1, 0, 3, 2, 4):
        p.put(s, frame(s))
    eq(turns(p, 5), [0, 1, 2, 3, 4], "sorted by seq")


def test_redundant_copies_are_kept_once():
    p, c = new()
    for s in range(6):
        p.put(s, frame(s))
        p.put(s, frame(s))  # k-1 copies at once
        if s:
            p.put(s - 1, frame(s - 1))  # and one a tick later
    eq(c[wire.CC_AUDIO_DOWN], 6, "each seq once")
    eq(turns(p, 6), [0, 1, 2, 3, 4, 5], "played once each")
    p.put(5, frame(5))  # the delayed copy of a frame already played
    eq(c[wire.CC_LATE], 1, "a copy after its turn is late")
    eq(turns(p, 1), [None], "and not played again")


def test_late_frame_is_dropped():
    p, c = new()
    for s in (10, 12, 13):
        p.put(s, frame(s))
    eq(turns(p, 2), [10, None], "11 missing at its turn")
    p.put(11, frame(11))
    eq(c[wire.CC_LATE], 1, "11 came after its turn")
    eq(turns(p, 2), [12, 13], "playout keeps its delay")


def test_missing_frame_is_silence_then_underrun():
    p, c = new()
    for s in (0, 1, 3, 4):
        p.put(s, frame(s))
    eq(turns(p, 6), [0, 1, None, 3, 4, None], "a gap, then nothing queued")
    eq(c[wire.CC_LOST], 1, "frame 2 never arrived")
    eq(c[wire.CC_UNDERRUNS], 1, "nothing queued at turn 5")
    eq(p.longest_loss, 1, "one frame lost in a row")


def test_the_longest_loss_counts_lost_turns_in_a_row():
    p, c = new()
    for s in (0, 1, 4, 5, 7):
        p.put(s, frame(s))
    eq(turns(p, 8), [0, 1, None, None, 4, 5, None, 7], "2 and 3 lost, then 6")
    eq(p.longest_loss, 2, "two in a row")
    eq(c[wire.CC_LONGEST_GAP], 2, "the longest gap too")


def test_an_underrun_waits_for_the_host_instead_of_dropping_what_it_sends_next():
    p, c = new()
    for s in range(PREFILL):
        p.put(s, frame(s))
    eq(turns(p, PREFILL), list(range(PREFILL)), "played")
    eq(turns(p, 4), [None] * 4, "the host stalled for four turns")
    for s in range(PREFILL, PREFILL + 6):  # and catches up with a burst
        p.put(s, frame(s))
    eq(turns(p, 6), list(range(PREFILL, PREFILL + 6)), "nothing it sent is late")
    eq(c[wire.CC_LATE] + c[wire.CC_LOST], 0, "nothing late or lost")
    eq(c[wire.CC_UNDERRUNS], 4, "four underruns")
    eq(c[wire.CC_LONGEST_GAP], 4, "the gap is the stall, no longer")
    eq(p.longest_loss, 0, "the host's lateness is not a loss")


def test_sequence_wraps_at_0xffff():
    p, c = new()
    seqs = [0xFFFD, 0xFFFE, 0xFFFF, 0, 1, 2]
    for s in seqs:
        p.put(s, frame(s))
    eq(turns(p, 6), seqs, "across the wrap")
    eq(c[wire.CC_LATE] + c[wire.CC_LOST], 0, "nothing late or lost")


def test_overrun_drops_the_oldest():
    p, c = new()
    for s in range(DEPTH + 2):
        p.put(s, frame(s))
    eq(c[wire.CC_OVERRUNS], 2, "two frames pushed out")
    eq(turns(p, DEPTH), list(range(2, DEPTH + 2)), "the newest DEPTH remain")


def test_resync_on_a_restarted_stream():
    p, c = new()
    for s in range(100, 104):
        p.put(s, frame(s))
    eq(turns(p, 2), [100, 101], "first stream")
    start = 100 + RESYNC + 900
    for s in range(start, start + PREFILL):
        p.put(s, frame(s))
    eq(turns(p, PREFILL), list(range(start, start + PREFILL)), "the new stream, after its prefill")
    p2, c2 = new()
    for s in range(5000, 5004):
        p2.put(s, frame(s))
    eq(turns(p2, 1), [5000], "playing")
    for s in range(3, 3 + PREFILL):  # the host restarted at a lower seq
        p2.put(s, frame(s))
    eq(turns(p2, PREFILL), list(range(3, 3 + PREFILL)), "a restart backwards is a new stream too")
    eq(c2[wire.CC_LATE], 0, "not taken as late")


def test_silence_for_a_while_starts_buffering_afresh():
    p, c = new()
    for s in range(PREFILL):
        p.put(s, frame(s))
    eq(turns(p, PREFILL), list(range(PREFILL)), "played")
    eq(turns(p, REPRIME_AFTER), [None] * REPRIME_AFTER, "the host stopped")
    eq(c[wire.CC_LONGEST_GAP], REPRIME_AFTER, "longest gap in turns")
    p.put(40, frame(40))
    eq(turns(p, 1), [None], "waits for the prefill again")
    p.put(41, frame(41))
    p.put(42, frame(42))
    eq(turns(p, 3), [40, 41, 42], "then plays the new frames")


def test_an_older_frame_before_playout_starts_the_queue():
    p, c = new()
    p.put(7, frame(7))
    p.put(6, frame(6))  # its delayed copy overtook nothing: it is older
    p.put(8, frame(8))
    eq(turns(p, 3), [6, 7, 8], "oldest first")


def test_a_frame_ahead_of_a_gap_waits_for_its_turn():
    p, c = new()
    for s in (0, 1, 2):
        p.put(s, frame(s))
    eq(turns(p, 1), [0], "playing")
    p.put(12, frame(12))  # 3..11 never come
    eq(c[wire.CC_OVERRUNS], 0, "three queued is no overrun")
    eq(turns(p, 12), [1, 2] + [None] * 9 + [12], "played at its turn")
    eq(c[wire.CC_LOST], 9, "the gap")
