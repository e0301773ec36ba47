"""How many copies of each audio frame the serial link has room for (audio redundancy).

A damaged frame is dropped whole: at a bit-error rate of 1e-4 about one 172-byte frame in eight.
Losing one 20 ms frame inside a 60 ms DTMF tone can cost the digit (measured: 3-6 % of such
losses), so frames are repeated while the link has room: with 6 copies a frame is lost about
once in 200,000 at that error rate. The link is otherwise idle bandwidth; with all 8 lines busy
there is room for one copy only.
"""

from __future__ import annotations

from firmware.card import wire

# copies go both ways; the larger frame (card -> host, with its echo reference) sets the limit
FRAME_WIRE_BYTES = max(wire.AUDIO_UP_WIRE, wire.AUDIO_DOWN_WIRE)


def copies_for(active: int, baud: int, fixed: int | None = None) -> int:
    """Copies per audio frame (1..MAX_COPIES) for ``active`` streaming lines at ``baud`` (8N1:
    10 bits a byte); ``fixed`` overrides the budget (checked against the range). The rule is the
    wire format's (``wire.copies_fit``): the card applies it too, to the lines it streams."""
    if fixed is not None:
        if not 1 <= fixed <= wire.MAX_COPIES:
            raise ValueError(f"audio redundancy must be 1..{wire.MAX_COPIES} copies, not {fixed}")
        return fixed
    return wire.copies_fit(active, baud)
