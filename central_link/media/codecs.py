"""PCMU / PCMA only: the codec preferences a call's transceiver gets, and the law an SDP settled on.

The card's audio is G.711 and the node decodes it once (the echo canceller needs linear audio)
and encodes it once for the agent: offering Opus or G.722 would add a transcode and a resample.
The line's own law is preferred, the other G.711 law accepted.
"""

from __future__ import annotations

from aiortc import RTCRtpSender, sdp
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from drivers.dsp import ALAW, ULAW

MIME = {ULAW: "audio/PCMU", ALAW: "audio/PCMA"}


class CodecError(ValueError):
    """The far end's SDP has no G.711 audio: the message says what was offered."""


def preferences(law: int) -> list[RTCRtpCodecCapability]:
    """For ``transceiver.setCodecPreferences``: ``law`` first, then the other G.711 law, nothing else."""
    order = [MIME[law], MIME[ALAW if law == ULAW else ULAW]]
    caps = {c.mimeType.lower(): c for c in RTCRtpSender.getCapabilities("audio").codecs}
    return [caps[m.lower()] for m in order]


def audio_codecs(text: str) -> list[str]:
    """The codec mime types of the first audio m-line of an SDP, in its order."""
    for media in sdp.SessionDescription.parse(text).media:
        if media.kind == "audio":
            return [c.mimeType for c in media.rtp.codecs]
    return []


def negotiated_law(text: str, prefer: int) -> int:
    """The law both sides send with, as aiortc settles it: the first of our preferences that the
    answer (or the offer we answer) lists."""
    offered = {c.lower() for c in audio_codecs(text)}
    for law in (prefer, ALAW if prefer == ULAW else ULAW):
        if MIME[law].lower() in offered:
            return law
    raise CodecError(f"the far end's SDP offers no PCMU or PCMA audio (it offers {sorted(offered) or 'no audio'}): "
                     "the node speaks G.711 only")
