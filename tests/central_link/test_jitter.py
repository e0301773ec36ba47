"""Our receive path (central_link.media.jitter) on exact packet sequences.

A stream is frame k sent at tick k (20 ms ticks of the line's clock); each test says at which tick
each frame arrives. At every tick the packets of that tick are put first, then the line pops one
frame. A frame's payload names it, so what each tick played is known exactly, and its delay is
``tick played - tick sent`` in frames.
"""

from __future__ import annotations

import numpy as np
import pytest

from central_link.media.jitter import FRAME, JitterBuffer, Playout
from central_link.media.receiver import divert
from drivers.dsp import G711, ULAW, ToneGenerator, ToneSpec


def payload(k: int) -> bytes:
    return bytes([k % 251]) * FRAME


def run(arrivals: dict[int, list[int]], ticks: int, buf: JitterBuffer | None = None, ts0: int = 1000):
    """Play ``ticks`` ticks; ``arrivals`` maps a tick to the frames arriving just before it.
    Returns the buffer and, per tick, the frame played (None: concealed or silence)."""
    buf = buf or JitterBuffer()
    played: list[int | None] = []
    for t in range(ticks):
        for k in arrivals.get(t, []):
            buf.put((ts0 + k * FRAME) & 0xFFFFFFFF, payload(k))
        got = buf.pop()
        played.append(None if got is None else got[0])
    return buf, played


def on_time(n: int, *, lose=(), late: dict[int, int] | None = None) -> dict[int, list[int]]:
    """Frames 0..n-1 arriving at their own tick, less those lost, ``late`` = {frame: tick}."""
    arr: dict[int, list[int]] = {}
    for k in range(n):
        if k in lose:
            continue
        arr.setdefault((late or {}).get(k, k), []).append(k)
    return arr


def delays(played: list[int | None]) -> dict[int, int]:
    """Frame -> its delay in ticks (frame k is sent at tick k)."""
    return {k: t - k for t, k in enumerate(played) if k is not None}


def test_in_order_plays_every_frame_at_once_no_prefetch():
    buf, played = run(on_time(40), 40)
    assert played == list(range(40))  # frame 0 plays on the tick it arrived: nothing prefetched
    assert set(delays(played).values()) == {0}
    s = buf.stats
    assert (s.played, s.lost, s.held, s.late, s.duplicate, s.caught_up) == (40, 0, 0, 0, 0, 0)


def test_reordered_within_a_tick_is_put_back_in_order():
    arr = on_time(20)
    arr[9] = [10, 9]  # 10 overtook 9; both here before 9's slot (9 arrives at tick 9, 10 one early)
    del arr[10]
    buf, played = run(arr, 20)
    assert played == list(range(20))
    assert buf.stats.lost == 0 and buf.stats.late == 0


def test_reordered_across_ticks_plays_late_and_the_delay_is_taken_back():
    arr = on_time(80)
    arr[10] = [10, 9]  # 9 comes after 10, a tick late, while its slot was being held
    del arr[9]
    buf, played = run(arr, 80, JitterBuffer(window=25))
    assert played[9] is None  # its slot concealed: nothing at all was there
    assert played[10:12] == [9, 10]  # it still plays (a slow far clock looks like this too) ...
    d = delays(played)
    assert max(v for k, v in d.items() if k >= 37) == 0  # ... and its frame of delay is dropped 25 ticks on
    assert buf.stats.held == 1 and buf.stats.caught_up == 1 and buf.stats.lost == 0


def test_one_lost_packet_costs_one_concealed_frame_and_no_delay():
    buf, played = run(on_time(60, lose={20}), 60)
    assert played[20] is None and played.count(None) == 1
    d = delays(played)
    assert {d[k] for k in range(20)} == {0} and {d[k] for k in range(21, 60)} == {0}
    assert buf.stats.lost == 1 and buf.stats.caught_up == 0


def test_delay_after_one_lost_packet_returns_to_what_it_was_with_a_cushion():
    # a slow start (frame 1 comes with 2) leaves one frame of delay, which a cushion of one keeps
    arr = on_time(80, lose={40}, late={1: 2})
    buf, played = run(arr, 80, JitterBuffer(cushion=1))
    d = delays(played)
    before = {d[k] for k in range(1, 40)}
    after = {d[k] for k in range(41, 79)}
    assert before == {1}
    assert after == before  # aiortc's own buffer would be 14 frames deep from here on (#543)
    assert played.count(None) == 2  # tick 1 (held) and frame 40's slot
    assert buf.stats.lost == 1 and buf.stats.caught_up == 0


def test_late_packet_is_dropped_and_adds_no_delay():
    buf, played = run(on_time(50, late={20: 23}), 50)  # 3 ticks late, after 21 and 22
    assert played[20] is None
    assert played[21:] == list(range(21, 50))
    assert buf.stats.late == 1
    assert set(delays(played).values()) == {0}


def test_a_late_burst_adds_delay_only_until_the_window_takes_it_back():
    # the network stalls: frames 20..23 all arrive at tick 23
    arr = on_time(120)
    for k in (20, 21, 22):
        arr[23].append(k)
        del arr[k]
    arr[23].sort()
    buf, played = run(arr, 120, JitterBuffer(window=25))
    d = delays(played)
    assert d[20] == 3  # held three ticks (concealed), then played: nothing lost
    assert max(v for k, v in d.items() if k >= 50) == 0  # the surplus was dropped 25 ticks after it came
    assert buf.stats.caught_up == 3 and buf.stats.held == 3 and buf.stats.lost == 0


def test_duplicates_are_dropped():
    arr = on_time(20)
    arr[7].append(7)
    arr[9].append(8)  # a copy of 8 after it played
    buf, played = run(arr, 20)
    assert played == list(range(20))
    assert buf.stats.duplicate == 1 and buf.stats.late == 1


def test_timestamp_wrap_is_seamless():
    ts0 = (1 << 32) - 5 * FRAME  # wraps after frame 4
    buf, played = run(on_time(30, lose={10}), 30, ts0=ts0)
    assert played[:10] == list(range(10)) and played[11:] == list(range(11, 30))
    assert buf.stats.resyncs == 0 and buf.stats.late == 0


def test_a_burst_of_loss_is_concealed_and_adds_no_delay():
    buf, played = run(on_time(60, lose=set(range(20, 26))), 60)
    assert played[20:26] == [None] * 6
    assert played[26:] == list(range(26, 60))
    assert set(delays(played).values()) == {0}
    assert buf.stats.held + buf.stats.lost >= 6 and buf.stats.caught_up == 0


def test_a_timestamp_jump_starts_a_new_timeline():
    buf = JitterBuffer()
    for k in range(5):
        buf.put(k * FRAME, payload(k))
        assert buf.pop() == payload(k)
    assert buf.put(10_000_000, payload(99)) == "resync"
    assert buf.pop() == payload(99)
    assert buf.stats.resyncs == 1


def test_several_frames_per_packet_are_split_and_odd_sizes_dropped():
    buf = JitterBuffer()
    assert buf.put(0, payload(1) + payload(2)) == "queued"
    assert buf.put(2 * FRAME, b"\xff" * 80) == "odd_size"
    assert [buf.pop(), buf.pop()] == [payload(1), payload(2)]
    assert buf.stats.odd_size == 1


def test_bad_parameters_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match="cushion < capacity"):
        JitterBuffer(capacity=4, cushion=4)


def tone(freq: int, frames: int) -> list[bytes]:
    gen, codec = ToneGenerator(ToneSpec(freq, 0, -10, 0, 0)), G711(ULAW)
    return [codec.encode(gen.read(FRAME)) for _ in range(frames)]


def test_playout_conceals_a_lost_frame_with_spandsp_plc():
    frames = tone(500, 30)
    p = Playout(clock=lambda: 0.0)
    out = []
    for k, f in enumerate(frames):
        if k != 15:
            assert p.put(0, k * FRAME, f) == "queued"
        out.append(p.tick())
    concealed = out[15]
    rms = lambda x: float(np.sqrt(np.mean(x.astype(float) ** 2)))  # noqa: E731
    assert rms(concealed) > 0.5 * rms(out[14])  # the tone carries on through the gap, not silence
    spectrum = np.abs(np.fft.rfft(concealed * np.hanning(FRAME)))
    assert abs(np.argmax(spectrum) * 8000 / FRAME - 500) <= 50


def test_playout_is_silent_before_the_first_packet_and_refuses_other_payload_types():
    p = Playout(clock=lambda: 0.0)
    assert not p.tick().any()
    assert p.put(111, 0, b"\x00" * FRAME) == "unknown_payload_type"  # e.g. opus
    assert not p.buffer.started and p.unknown_payload_type == 1
    assert p.put(8, 0, G711(0).encode(np.full(FRAME, 1000, dtype=np.int16))) == "queued"  # PCMA
    assert abs(int(p.tick()[80]) - 1000) < 64


def test_rtp_packets_through_the_receiver_hook_across_a_sequence_number_wrap():
    from aiortc import RTCRtpReceiver
    from aiortc.rtp import RtpPacket

    class _Transport:  # RTCRtpReceiver only keeps its transport until receive() starts it
        state = "new"

    receiver = RTCRtpReceiver("audio", _Transport())
    playout = Playout(clock=lambda: 0.0)
    divert(receiver, playout)
    hook = receiver._RTCRtpReceiver__jitter_buffer  # what _handle_rtp_packet calls
    out = []
    for k in range(10):  # sequence numbers 65532 .. 65535, 0 .. 5; the 7th packet is lost
        if k != 6:
            p = RtpPacket(payload_type=0, sequence_number=(65532 + k) & 0xFFFF, timestamp=5000 + k * FRAME)
            p.payload = payload(k)
            assert hook.add(p) == (False, None)  # nothing for aiortc's decoder
        out.append(playout.buffer.pop())  # one line tick per slot
    assert out == [payload(k) for k in range(6)] + [None] + [payload(k) for k in (7, 8, 9)]
