"""The hook that takes a call's RTP from aiortc before its jitter buffer, into our playout.

aiortc 1.16 gives no way to choose the receiver's buffer: ``RTCRtpReceiver.__init__`` builds
``JitterBuffer(capacity=16, prefetch=4)`` and ``_handle_rtp_packet`` makes one call on it,
``add(packet) -> (pli_flag, frame | None)``, after SRTP, payload-type and RTCP statistics, before
its decoder thread. :func:`divert` replaces that one object (the name-mangled attribute
``_RTCRtpReceiver__jitter_buffer``) with :class:`_Divert`, which gives every packet to our
:class:`~central_link.media.jitter.Playout` and nothing to aiortc's decoder: the decode, the
concealment and the clock are ours (``jitter.py``). RTCP receiver reports stay aiortc's.
The attribute is checked, so an aiortc that renamed it fails loudly here instead of adding 80 ms.
"""

from __future__ import annotations

from aiortc import RTCRtpReceiver

from .jitter import Playout

_ATTR = "_RTCRtpReceiver__jitter_buffer"


class _Divert:
    def __init__(self, playout: Playout) -> None:
        self.playout = playout

    def add(self, packet) -> tuple[bool, None]:
        self.playout.put(packet.payload_type, packet.timestamp, packet.payload)
        return False, None  # no picture-loss request (audio), no frame for aiortc's decoder


def divert(receiver: RTCRtpReceiver, playout: Playout) -> None:
    """Send ``receiver``'s RTP to ``playout``. Call before media flows (right after the transceiver
    is made, or in ``pc.on("track")``)."""
    if not hasattr(receiver, _ATTR):
        raise RuntimeError(f"aiortc's RTCRtpReceiver has no {_ATTR} any more: central_link/media/receiver.py "
                           "relies on aiortc 1.16's receiver; pin aiortc==1.16.0 or adapt the hook")
    setattr(receiver, _ATTR, _Divert(playout))
