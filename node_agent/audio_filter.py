"""The one place every caller -> agent frame of a forwarded call passes through.

A call's :class:`FrameFilter` sees each 20 ms slot of the line (``hal.RxFrame``: linear audio after
the echo canceller, with the digits whose tone ended in it) before the media session encodes it for
the agent, and returns the frame to send. The default passes the audio as it is; the DTMF mask
(flattening the tones a caller keys while talking to an agent) has this interface, and the
forwarder makes one filter per call (``Forwarder(filters=...)``).
"""

from __future__ import annotations

from typing import Protocol

from hal import RxFrame


class FrameFilter(Protocol):
    def process(self, frame: RxFrame) -> RxFrame:
        """The frame to send to the agent for this slot (called on the event loop: must not block)."""
        ...


class PassThrough:
    """Sends the caller's audio as it is."""

    def process(self, frame: RxFrame) -> RxFrame:
        return frame
