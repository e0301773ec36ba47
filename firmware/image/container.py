"""A whole image file: the header (``firmware.card.image_header``), the payload and the signature trailer."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from firmware.card import image_header as ih

from .errors import ImageError

BOARD_ID_LEN = 8


@dataclass(frozen=True)
class Header:
    board_id: str
    version: tuple[int, int, int]
    security_counter: int
    payload_len: int
    sha256: bytes
    flags: int = 0

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)

    def __bytes__(self) -> bytes:
        return ih.pack(board_bytes(self.board_id), self.version, self.security_counter, self.payload_len,
                       self.sha256, self.flags)


@dataclass(frozen=True)
class Image:
    header: Header
    payload: bytes
    signature: bytes | None = None  # Ed25519 over bytes(header) + payload; None: unsigned

    @property
    def signed_part(self) -> bytes:
        return bytes(self.header) + self.payload

    def with_signature(self, signature: bytes | None) -> Image:
        return replace(self, signature=signature)

    def __bytes__(self) -> bytes:
        out = self.signed_part
        if self.signature is not None:
            out += struct.pack(ih.SIG_TRAILER, ih.SIG_MAGIC, len(self.signature)) + self.signature
        return out


def board_bytes(board_id: str) -> bytes:
    raw = board_id.encode("ascii", "replace")
    if not 1 <= len(raw) <= BOARD_ID_LEN or b"\0" in raw or not board_id.isascii():
        raise ImageError(f"board id {board_id!r}: 1 to {BOARD_ID_LEN} ASCII characters (as the card's HELLO "
                         "reports it, e.g. BNLC-8FX)")
    return raw.ljust(BOARD_ID_LEN, b"\0")


def make(board_id: str, version: tuple[int, int, int], security_counter: int, payload: bytes) -> Image:
    major, minor, patch = version
    if not (0 <= major <= 0xFF and 0 <= minor <= 0xFF and 0 <= patch <= 0xFFFF):
        raise ImageError(f"version {major}.{minor}.{patch}: major and minor are 0..255, patch 0..65535 "
                         "(the header's fields); set FW_VERSION in firmware/card/board.py within them")
    if not 0 <= security_counter <= 0xFFFFFFFF:
        raise ImageError(f"security counter {security_counter}: 0..4294967295 (a u32 in the header)")
    board_bytes(board_id)
    return Image(Header(board_id, tuple(version), security_counter, len(payload), hashlib.sha256(payload).digest()),
                 payload)


def read(data: bytes, where: str = "image") -> Image:
    """The image in ``data``, checked (header, lengths, payload digest, trailer) but not its signature."""
    if len(data) < ih.HEADER_LEN:
        raise ImageError(f"{where}: truncated: {len(data)} bytes, not even the {ih.HEADER_LEN}-byte header: "
                         "copy the image again from its source")
    try:
        h = ih.unpack(data)
    except ValueError as exc:
        raise ImageError(f"{where}: {exc}: is this the right file? Build it with `nodectl image build`") from None
    length = h[ih.H_LENGTH]
    end = ih.HEADER_LEN + length
    if len(data) < end:
        raise ImageError(f"{where}: truncated: the header announces a {length}-byte payload, the file holds "
                         f"{len(data) - ih.HEADER_LEN}: copy the image again from its source")
    payload = bytes(data[ih.HEADER_LEN:end])
    board = h[ih.H_BOARD].rstrip(b"\0").decode("ascii", "replace")
    header = Header(board, (h[ih.H_MAJOR], h[ih.H_MINOR], h[ih.H_PATCH]), h[ih.H_SECURITY], length,
                    h[ih.H_SHA256], h[ih.H_FLAGS])
    if hashlib.sha256(payload).digest() != header.sha256:
        raise ImageError(f"{where}: the payload's SHA-256 does not match the header's (digest mismatch): the file "
                         "was damaged or changed after it was built; copy it again or build it again")
    return Image(header, payload, _signature(data[end:], where))


def _signature(trailer: bytes, where: str) -> bytes | None:
    if not trailer:
        return None
    if len(trailer) < ih.SIG_TRAILER_LEN:
        raise ImageError(f"{where}: truncated: {len(trailer)} bytes after the payload, too few for a signature "
                         "trailer: copy the image again from its source")
    magic, length = struct.unpack_from(ih.SIG_TRAILER, trailer, 0)
    if magic != ih.SIG_MAGIC:
        raise ImageError(f"{where}: {len(trailer)} bytes after the payload that are not a signature trailer "
                         "(bad trailer magic): the file was damaged or appended to; copy it again")
    sig = bytes(trailer[ih.SIG_TRAILER_LEN:])
    if len(sig) != length:
        what = "truncated" if len(sig) < length else "has bytes after its signature"
        raise ImageError(f"{where}: {what}: the trailer announces a {length}-byte signature, {len(sig)} bytes "
                         "follow: copy the image again from its source")
    if length != ih.ED25519_SIG_LEN:
        raise ImageError(f"{where}: a {length}-byte signature; Ed25519 signatures are {ih.ED25519_SIG_LEN}: "
                         "sign the image again with `nodectl image sign`")
    return sig


def load(path: str | Path) -> Image:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{p}: cannot read the image ({exc.strerror or exc}): check the path") from None
    return read(data, str(p))
