"""Caller ID: FSK (Bell 202 / V.23) and DTMF, receive and send, from spandsp's ADSI module."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._spandsp import check_alloc, ffi, lib
from .errors import SpanDSPError

# spandsp's adsi.h
STANDARDS = {"bell202": 1, "v23": 2, "dtmf": 5}  # CLASS (Bell 202), CLIP (ETSI V.23), CLIP_DTMF
_MDMF_CALLERID = 0x80
_F_DATETIME, _F_NUMBER, _F_ABSENCE, _F_NAME = 0x01, 0x02, 0x04, 0x07
_DTMF_NUMBER, _DTMF_TERM = ord("A"), ord("C")


@dataclass(frozen=True)
class CallerId:
    number: str = ""
    name: str = ""
    datetime: str = ""  # MMDDHHMM as sent
    mode: str = ""  # bell202, v23 or dtmf


def _standard(mode: str) -> int:
    try:
        return STANDARDS[mode]
    except KeyError:
        raise ValueError(f"unknown caller ID mode {mode!r}: use one of {sorted(STANDARDS)}") from None


class CallerIdReceiver:
    """Decodes caller ID from on-hook line audio (the window between rings, or before them)."""

    def __init__(self, mode: str = "bell202") -> None:
        self.mode = mode
        self._results: list[CallerId] = []
        self._cb = ffi.callback("put_msg_func_t", self._on_msg)
        self._s = ffi.gc(check_alloc(lib.adsi_rx_init(ffi.NULL, _standard(mode), self._cb, ffi.NULL),
                                     "caller ID receiver"), lib.adsi_rx_free)

    def _on_msg(self, _user, msg, length: int) -> None:
        if length <= 0:
            return  # spandsp reports carrier changes as negative lengths
        fields: dict[int, str] = {}
        ftype = ffi.new("uint8_t *")
        body = ffi.new("uint8_t **")
        flen = ffi.new("int *")
        pos = 0
        for _ in range(32):
            pos = lib.adsi_next_field(self._s, msg, length, pos, ftype, body, flen)
            if pos <= 0:
                break
            if body[0] != ffi.NULL and flen[0] > 0:
                fields[ftype[0]] = bytes(ffi.buffer(body[0], flen[0])).decode("latin-1")
        number = fields.get(_F_NUMBER) or fields.get(_DTMF_NUMBER, "")
        self._results.append(CallerId(number=number, name=fields.get(_F_NAME, ""),
                                      datetime=fields.get(_F_DATETIME, ""), mode=self.mode))

    def feed(self, pcm: np.ndarray) -> list[CallerId]:
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        lib.adsi_rx(self._s, ffi.from_buffer("int16_t[]", pcm), len(pcm))
        out, self._results = self._results, []
        return out


def encode_callerid(cid: CallerId, mode: str = "bell202", *, level_pad_ms: int = 0) -> np.ndarray:
    """The audio of one caller ID message (what a central office sends), via spandsp's ADSI sender."""
    std = _standard(mode)
    tx = ffi.gc(check_alloc(lib.adsi_tx_init(ffi.NULL, std), "caller ID sender"), lib.adsi_tx_free)
    msg = ffi.new("uint8_t[256]")
    if mode == "dtmf":
        # spandsp: the first field given is the terminator ("message type"), then the number
        length = lib.adsi_add_field(tx, msg, 0, _DTMF_TERM, ffi.NULL, 0)
        length = lib.adsi_add_field(tx, msg, length, _DTMF_NUMBER, cid.number.encode(), len(cid.number))
    else:
        length = lib.adsi_add_field(tx, msg, 0, _MDMF_CALLERID, ffi.NULL, 0)
        if cid.datetime:
            length = lib.adsi_add_field(tx, msg, length, _F_DATETIME, cid.datetime.encode(), len(cid.datetime))
        if cid.number:
            length = lib.adsi_add_field(tx, msg, length, _F_NUMBER, cid.number.encode(), len(cid.number))
        else:
            length = lib.adsi_add_field(tx, msg, length, _F_ABSENCE, b"O", 1)
        if cid.name:
            name = cid.name.encode("latin-1", "replace")[:50]
            length = lib.adsi_add_field(tx, msg, length, _F_NAME, name, len(name))
    if length <= 0 or lib.adsi_tx_put_message(tx, msg, length) <= 0:
        raise SpanDSPError(f"spandsp refused the caller ID message for {cid.number!r}")
    chunks = []
    buf = np.zeros(800, dtype=np.int16)
    while True:
        n = lib.adsi_tx(tx, ffi.from_buffer("int16_t[]", buf), len(buf))
        if n <= 0:
            break
        chunks.append(buf[:n].copy())
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
