"""The link budget: copies per audio frame from the real frame sizes on the wire."""

from __future__ import annotations

import os

import pytest

from drivers.linecard import copies_for
from drivers.linecard.budget import FRAME_WIRE_BYTES
from firmware.card import wire


def test_the_budget_counts_the_real_audio_frame_size():
    body = os.urandom(160)
    assert len(wire.encode(wire.T_AUDIO, 3, 0x1234, b"\x00\x00" + body)) == wire.AUDIO_UP_WIRE == 172
    assert len(wire.encode(wire.T_AUDIO, 3, 0x1234, body)) == wire.AUDIO_DOWN_WIRE == 170
    assert FRAME_WIRE_BYTES == 172  # the larger direction sets the limit


def test_copies_for_each_number_of_lines_at_921600_baud():
    assert [copies_for(n, 921600) for n in range(0, 9)] == [6, 6, 4, 2, 2, 1, 1, 1, 1]


def test_copies_at_a_baud_rate_where_three_bytes_a_frame_decide():
    # 80 % of 21,600 bytes/s = 17,280: two copies of 50 frames of 172 bytes fit, of 175 they would not
    assert copies_for(1, 216000) == 2
    assert copies_for(1, 214000) == 1


def test_a_fixed_number_of_copies_is_checked():
    assert copies_for(8, 921600, fixed=3) == 3
    with pytest.raises(ValueError, match=r"1..6 copies, not 0"):
        copies_for(1, 921600, fixed=0)
