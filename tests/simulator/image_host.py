"""A small host for the simulated card's image ops, written from the wire format alone
(``firmware.card.wire``): SYNC/HELLO, IMAGE frames answered by IMAGE_ACK or SLOTS, CMD RESET.

It stands in for the host driver in the simulator's own tests: stop-and-wait, one IMAGE frame
at a time, no retries beyond resending a frame whose answer did not come.
"""

from __future__ import annotations

import binascii
import socket
import struct
import time
from dataclasses import dataclass

from firmware.card import image_header as ih
from firmware.card import wire

ANSWER_S = 2.0  # an IMAGE frame is answered within a few ms; FINISH reads 32 KB back at 1 KB a pass
SYNC_EVERY_S = 0.25  # the protocol's SYNC interval


class LinkLost(ConnectionError):
    """The card's port closed (it reset or lost power) or stopped answering."""


@dataclass
class Hello:
    version: tuple[int, int, int]
    channels: int
    boot_id: int
    board: bytes


@dataclass
class Slots:
    running: int
    active: int
    boots_left: int
    reason: str
    reverted_slot: int | None
    states: tuple[str, str]
    versions: tuple[tuple[int, int, int], tuple[int, int, int]]


class ImageHost:
    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("socket://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.deframer = wire.Deframer()
        self.seq = 0
        self.frames: list[tuple] = []

    def close(self) -> None:
        self.sock.close()

    def _send(self, ftype: int, seq: int, body: bytes = b"") -> None:
        try:
            self.sock.sendall(wire.encode(ftype, wire.BROADCAST, seq, body))
        except OSError as exc:
            raise LinkLost(f"the card's port closed ({exc})") from None

    def _receive(self, until: float) -> None:
        self.sock.settimeout(max(0.001, until - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except OSError as exc:
            raise LinkLost(f"the card's port closed ({exc})") from None
        if not data:
            raise LinkLost("the card's port closed")
        for code, ftype, ch, seq, body in self.deframer.feed(data):
            if code != wire.OK:
                continue
            if ftype == wire.T_EVENT:  # reliable: acknowledge, or the card keeps resending
                self._send(wire.T_ACK, seq, bytes([wire.ST_OK]))
            self.frames.append((ftype, ch, seq, body))

    def _wait(self, pick, timeout: float, resend=None):
        end = time.monotonic() + timeout
        next_resend = time.monotonic() + SYNC_EVERY_S if resend else None
        while True:
            for i, f in enumerate(self.frames):
                got = pick(f)
                if got is not None:
                    del self.frames[: i + 1]
                    return got
            self.frames.clear()
            now = time.monotonic()
            if now >= end:
                raise LinkLost(f"no answer within {timeout:g} s")
            if next_resend is not None and now >= next_resend:
                resend()
                next_resend = now + SYNC_EVERY_S
            self._receive(min(end, next_resend or end))

    def sync(self, timeout: float = 10.0) -> Hello:
        self._send(wire.T_SYNC, 0)

        def hello(f):
            if f[0] == wire.T_HELLO:
                h = struct.unpack(wire.HELLO, f[3])
                return Hello((h[1], h[2], h[3]), h[4], h[7], h[8])
            return None

        return self._wait(hello, timeout, resend=lambda: self._send(wire.T_SYNC, 0))

    def image_op(self, op: int, offset: int = 0, data: bytes = b"", crc: int | None = None) -> tuple[int, int]:
        """One IMAGE frame -> (result IR_*, the offset the card expects next)."""
        self.seq = (self.seq + 1) & 0xFFFF
        seq = self.seq
        body = struct.pack(wire.IMAGE, op, offset, binascii.crc32(data) if crc is None else crc) + data

        def ack(f):
            if f[0] == wire.T_IMAGE_ACK and f[2] == seq:
                a_op, res, nxt = struct.unpack(wire.IMAGE_ACK, f[3])
                return res, nxt
            return None

        self._send(wire.T_IMAGE, seq, body)
        return self._wait(ack, ANSWER_S, resend=lambda: self._send(wire.T_IMAGE, seq, body))

    def slots(self) -> Slots:
        self.seq = (self.seq + 1) & 0xFFFF
        seq = self.seq
        body = struct.pack(wire.IMAGE, wire.IMG_STATUS, 0, 0)

        def slots(f):
            if f[0] == wire.T_SLOTS and f[2] == seq:
                v = struct.unpack(wire.SLOTS, f[3])
                return Slots(v[0], v[1], v[2], wire.REV_NAMES[v[3]], None if v[4] == 0xFF else v[4],
                             (wire.SLOT_NAMES[v[5]], wire.SLOT_NAMES[v[11]]), (v[6:9], v[12:15]))
            return None

        self._send(wire.T_IMAGE, seq, body)
        return self._wait(slots, ANSWER_S, resend=lambda: self._send(wire.T_IMAGE, seq, body))

    def send_image(self, image: bytes, chunk: int = wire.IMAGE_DATA_MAX) -> int:
        """BEGIN (or resume), every chunk from the card's offset, FINISH -> FINISH's result."""
        res, at = self.image_op(wire.IMG_BEGIN, 0, image[:ih.HEADER_LEN])
        if res != wire.IR_OK:
            return res
        while at < len(image):
            res, nxt = self.image_op(wire.IMG_CHUNK, at, image[at:at + chunk])
            if res not in (wire.IR_OK, wire.IR_OFFSET):
                return res
            at = nxt
        return self.image_op(wire.IMG_FINISH)[0]

    def reset(self) -> None:
        """CMD RESET, until the card acknowledges it; then it reboots (its port closes)."""
        self.seq = (self.seq + 1) & 0xFFFF
        seq = self.seq
        body = struct.pack(wire.CMD, wire.OP_RESET, 0, 0)
        self._send(wire.T_CMD, seq, body)
        try:
            self._wait(lambda f: True if f[0] == wire.T_ACK and f[2] == seq else None, ANSWER_S,
                       resend=lambda: self._send(wire.T_CMD, seq, body))
        except LinkLost:
            pass  # the port closed: the card is resetting (its ACK may not have made it out first)


def connect(url: str, timeout: float = 10.0) -> tuple[ImageHost, Hello]:
    """Open the card's port and sync, retrying while the card boots (its port closes at each reset)."""
    end = time.monotonic() + timeout
    while True:
        host = None
        try:
            host = ImageHost(url)
            return host, host.sync(max(0.5, end - time.monotonic()))
        except (LinkLost, OSError):
            if host is not None:
                host.close()
            if time.monotonic() >= end:
                raise
            time.sleep(0.05)  # the port is back within BOOT_MS of a reset
