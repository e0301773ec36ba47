"""The media path of a forwarded call: the node's side of a WebRTC audio session (aiortc).

One concept per module: ``ice`` (ICE servers, which addresses may carry media), ``codecs``
(PCMU/PCMA only), ``track`` (the line's audio to aiortc, already encoded), ``receiver`` (the hook
that takes RTP from aiortc before its jitter buffer), ``jitter`` (our playout buffer with spandsp's
PLC) and ``session`` (one call's peer connection). Nothing here knows the HQ hub: offers and
answers are SDP strings in and out.
"""
