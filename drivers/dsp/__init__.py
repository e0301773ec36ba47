"""Telephony DSP over 8 kHz int16 numpy frames: spandsp, speexdsp's echo canceller and our DTMF detector.

>>> from drivers.dsp import DtmfGenerator, DtmfReceiver
>>> gen, rx = DtmfGenerator(), DtmfReceiver()
>>> gen.put("42")
>>> [d.digit for _ in range(20) for d in rx.feed(gen.read(160))]
['4', '2']
"""

from .callerid import CallerId, CallerIdReceiver, encode_callerid
from .dtmf import Digit, DtmfGenerator, DtmfReceiver, digit_frequencies
from .echo import EchoCanceller
from .errors import SpanDSPError
from .g711 import ALAW, G711, ULAW
from .levels import dbm0, samples_for_dbm0
from .noise import Noise
from .plc import LossConcealer
from .tones import CALL_PROGRESS, ToneDetector, ToneEvent, ToneGenerator, ToneSpec, call_progress, two_tone

__all__ = [
    "ALAW", "ULAW", "CALL_PROGRESS", "CallerId", "CallerIdReceiver", "Digit", "DtmfGenerator", "DtmfReceiver",
    "EchoCanceller", "G711", "LossConcealer", "Noise", "SpanDSPError", "ToneDetector", "ToneEvent",
    "ToneGenerator", "ToneSpec", "call_progress", "dbm0", "digit_frequencies", "encode_callerid",
    "samples_for_dbm0", "two_tone",
]
