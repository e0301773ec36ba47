"""Frame reassembly (card -> host audio): exact slots out for each way frames can arrive."""

from __future__ import annotations

from drivers.linecard import Reassembler, ReassemblyCounters


def run(rx: Reassembler, seqs: list[int]) -> list[tuple[int, list]]:
    """(ticks, slots) for each frame pushed; a frame's item is its own seq, so slots show order."""
    return [tuple(rx.push(s, s)) for s in seqs]


def slots(rx: Reassembler, seqs: list[int]) -> list:
    return [s for _ticks, out in run(rx, seqs) for s in out]


def test_in_order_frames_come_out_as_they_go_in_one_tick_each():
    rx = Reassembler()
    assert run(rx, [10, 11, 12]) == [(1, [10]), (1, [11]), (1, [12])]
    assert rx.counters == ReassemblyCounters(frames=3)


def test_redundant_copies_are_dropped_and_do_not_tick_the_clock():
    rx = Reassembler(wait=2)
    # three copies: two at once, the last one a tick later (as the card sends them)
    got = run(rx, [5, 5, 6, 6, 5, 7, 7, 6])
    assert got == [(1, [5]), (0, []), (1, [6]), (0, []), (0, []), (1, [7]), (0, []), (0, [])]
    assert rx.counters == ReassemblyCounters(frames=3, duplicates=5)


def test_a_missing_frame_is_given_up_at_once_with_one_copy():
    rx = Reassembler(wait=1)
    assert run(rx, [1, 3, 4]) == [(1, [1]), (2, [None, 3]), (1, [4])]
    assert rx.counters == ReassemblyCounters(frames=3, lost=1, gaps=1, longest_gap=1)


def test_with_copies_a_missing_frame_waits_one_frame_for_its_late_copy():
    rx = Reassembler(wait=2)
    # 2 is missing when 3 comes; its last copy comes with 4: nothing lost
    assert run(rx, [1, 3, 2, 4]) == [(1, [1]), (2, []), (0, [2, 3]), (1, [4])]
    assert rx.counters == ReassemblyCounters(frames=4)


def test_with_copies_a_frame_still_missing_two_ahead_is_lost_and_then_late():
    rx = Reassembler(wait=2)
    assert run(rx, [1, 3, 4, 2]) == [(1, [1]), (2, []), (1, [None, 3, 4]), (0, [])]
    assert rx.counters == ReassemblyCounters(frames=3, lost=1, late=1, gaps=1, longest_gap=1)


def test_a_run_of_missing_frames_is_one_gap_of_its_length():
    rx = Reassembler(wait=1)
    assert slots(rx, [1, 2, 6, 7, 9]) == [1, 2, None, None, None, 6, 7, None, 9]
    assert rx.counters == ReassemblyCounters(frames=5, lost=4, gaps=2, longest_gap=3)


def test_sequence_numbers_wrap_at_0xffff():
    rx = Reassembler(wait=1)
    assert run(rx, [0xFFFE, 0xFFFF, 0, 2]) == [(1, [0xFFFE]), (1, [0xFFFF]), (1, [0]), (2, [None, 2])]
    assert rx.push(0xFFFF, 0xFFFF) == (0, [])  # a copy from before the wrap is old, not new
    assert rx.counters == ReassemblyCounters(frames=4, lost=1, duplicates=1, gaps=1, longest_gap=1)


def test_a_restarted_stream_resyncs_instead_of_counting_a_huge_loss():
    rx = Reassembler(wait=1)
    assert slots(rx, [500, 501, 502]) == [500, 501, 502]
    # the card rebooted and counts from 0 again: a jump back far beyond any copy
    assert run(rx, [0, 1, 2]) == [(1, [0]), (1, [1]), (1, [2])]
    # and a jump forward (a window reopened after a long pause) likewise
    assert run(rx, [9000, 9001]) == [(1, [9000]), (1, [9001])]
    assert rx.counters == ReassemblyCounters(frames=8, resyncs=2)


def test_a_jump_within_the_resync_limit_is_a_loss():
    rx = Reassembler(wait=1, resync_after=50)
    assert slots(rx, [100, 150]) == [100] + [None] * 49 + [150]
    assert rx.counters.lost == 49 and rx.counters.resyncs == 0
    assert slots(rx, [151, 203]) == [151, 203]  # 51 ahead of the next slot (152): a restart
    assert rx.counters.resyncs == 1


def test_reset_starts_a_new_stream_at_the_next_frame():
    rx = Reassembler(wait=1)
    slots(rx, [7, 8])
    rx.reset()
    assert run(rx, [3, 4]) == [(1, [3]), (1, [4])]  # not "late", not a loss
    assert rx.counters == ReassemblyCounters(frames=4)
