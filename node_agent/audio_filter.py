"""The one place every caller -> agent frame of a forwarded call passes through.

A call's :class:`FrameFilter` sees each 20 ms slot of the caller's audio (160 linear int16 samples
at 8 kHz, after the echo canceller, every slot in order, concealed ones included) before the media
session encodes it for the agent, and returns the 160 samples to send. The default passes the audio
as it is; the DTMF mask (``node_agent.dtmf_mask.DtmfMask``: tones flattened, a secure capture's
audio replaced by comfort noise) has this interface, and the forwarder makes one filter per call
(``Forwarder(filters=...)``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class FrameFilter(Protocol):
    def process(self, frame: np.ndarray) -> np.ndarray:
        """The 160 samples to send to the agent for this slot (called on the event loop: must not
        block; the frame given is shared with the line's DTMF receiver: do not modify it)."""
        ...


class PassThrough:
    """Sends the caller's audio as it is."""

    def process(self, frame: np.ndarray) -> np.ndarray:
        return frame
