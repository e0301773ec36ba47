"""The payload of an image: the files the card stores, as a sequence of entries.

Layout (all little-endian), walkable by the card with ``struct.unpack_from`` on a memoryview,
without building a list::

    u16 count                       number of entries
    count times:
        u8  name length  (1..255)
        u32 data length
        name             ASCII path on the card's filesystem, e.g. ``card/app.mpy``
        data             the file's bytes

Entries are sorted by name and names are unique, so one set of files has exactly one payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import ImageError

COUNT = "<H"
ENTRY = "<BI"  # name length, data length
COUNT_LEN = struct.calcsize(COUNT)
ENTRY_LEN = struct.calcsize(ENTRY)
MAX_ENTRIES = 0xFFFF


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes


def pack(entries: list[Entry]) -> bytes:
    """The payload of ``entries`` (in any order; written sorted by name)."""
    ordered = sorted(entries, key=lambda e: e.name.encode("ascii", "replace"))
    names = [e.name for e in ordered]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ImageError(f"payload: the name(s) {', '.join(dup)} appear twice: each file goes in once")
    if len(ordered) > MAX_ENTRIES:
        raise ImageError(f"payload: {len(ordered)} files, at most {MAX_ENTRIES} fit")
    out = bytearray(struct.pack(COUNT, len(ordered)))
    for e in ordered:
        raw = _name(e.name)
        out += struct.pack(ENTRY, len(raw), len(e.data)) + raw + e.data
    return bytes(out)


def parse(buf: bytes) -> list[Entry]:
    """The entries of a payload, checked: every length in bounds, sorted unique names, nothing after."""
    if len(buf) < COUNT_LEN:
        raise ImageError(f"payload: {len(buf)} bytes, too short for its entry count: the image is damaged; build it again")
    (count,) = struct.unpack_from(COUNT, buf, 0)
    pos = COUNT_LEN
    entries: list[Entry] = []
    for i in range(count):
        if pos + ENTRY_LEN > len(buf):
            raise ImageError(f"payload: entry {i} of {count} starts at byte {pos}, past the end ({len(buf)} bytes): "
                             "the image is damaged; build it again")
        nlen, dlen = struct.unpack_from(ENTRY, buf, pos)
        start = pos + ENTRY_LEN
        end = start + nlen + dlen
        if nlen == 0 or end > len(buf):
            raise ImageError(f"payload: entry {i} at byte {pos} (name {nlen} bytes, data {dlen} bytes) does not fit "
                             f"in the payload's {len(buf)} bytes: the image is damaged; build it again")
        try:
            name = bytes(buf[start:start + nlen]).decode("ascii")
        except UnicodeDecodeError:
            raise ImageError(f"payload: entry {i} at byte {pos} has a name that is not ASCII: the image is damaged") from None
        if entries and name.encode() <= entries[-1].name.encode():
            raise ImageError(f"payload: entry {i} {name!r} is not after {entries[-1].name!r} (names are sorted and "
                             "unique): the image was not made by these tools")
        entries.append(Entry(name, bytes(buf[start + nlen:end])))
        pos = end
    if pos != len(buf):
        raise ImageError(f"payload: {len(buf) - pos} bytes after the last of its {count} entries: the image is damaged")
    return entries


def _name(name: str) -> bytes:
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise ImageError(f"payload: the file name {name!r} is not ASCII: rename it") from None
    if not 1 <= len(raw) <= 255 or raw.startswith(b"/") or b"\\" in raw or b".." in raw.split(b"/"):
        raise ImageError(f"payload: the file name {name!r} must be a relative path of 1 to 255 characters, "
                         "with / between folders and no ..")
    return raw
