"""The host link: bad frames are counted and logged, never raised; loop:// takes the real path."""

from __future__ import annotations

import asyncio
import logging
import struct
import time

import pytest

from drivers.linecard import LineCardLink, LinkDown, LinkListener, SerialTransport, TransportError
from firmware.card import wire


class Recorder(LinkListener):
    def __init__(self) -> None:
        self.events = []
        self.audio_frames = []
        self.ups = []

    def link_up(self, hello, reset):
        self.ups.append((hello, reset))

    def card_event(self, ev):
        self.events.append(ev)

    def audio(self, channel, seq, echo_ref, payload):
        self.audio_frames.append((channel, seq, echo_ref, payload))


def hello(boot=1):
    return bytes(wire.encode(wire.T_HELLO, wire.BROADCAST, 0,
                             struct.pack(wire.HELLO, wire.PROTO_VERSION, 1, 0, 0, 8, wire.LAW_ULAW, 0, boot, b"TEST")))


async def test_bad_frames_are_counted_logged_and_dropped(caplog):
    rec = Recorder()
    link = LineCardLink("loop://", rec)
    link._on_bytes(hello())
    assert link.is_up and rec.ups
    good = bytes(wire.encode(wire.T_AUDIO, 2, 5, b"\xff\xff" + b"\x55" * 160))
    bad_crc = bytearray(good)
    bad_crc[10] ^= 0x01
    unknown = bytes(wire.encode(0x42, 0, 0, b"abc"))
    truncated = bytes(wire.encode(wire.T_EVENT, 0, 0, b"\x01\x02"))
    oversized = b"\x07" * 2000 + b"\x00"
    with caplog.at_level(logging.WARNING, logger="drivers.linecard"):
        for chunk in (bytes(bad_crc), unknown, truncated, oversized, b"\x00\x00\x00", good):
            link._on_bytes(chunk)  # must not raise
    bad = link.counters.bad_frames
    assert bad["bad CRC"] + bad["bad COBS encoding"] == 1
    assert bad["unknown frame type"] == 1
    assert bad["truncated frame"] == 1
    assert bad["oversized frame"] == 1
    text = caplog.text
    for name in ("bad CRC", "unknown frame type", "truncated frame", "oversized frame"):
        if bad[name]:
            assert f"dropped a frame: {name}" in text
    assert rec.audio_frames == [(2, 5, None, b"\x55" * 160)]  # after all of that; NO_SEQ: None


async def test_bad_frame_log_is_summarised_not_flooded(caplog):
    link = LineCardLink("loop://", Recorder())
    with caplog.at_level(logging.WARNING, logger="drivers.linecard"):
        for _ in range(500):
            link._on_bytes(b"\x05abcd\x00")
    assert link.counters.bad_frames["truncated frame"] == 500
    assert caplog.text.count("dropped a frame") <= 10


async def test_card_events_are_acknowledged_and_delivered_once():
    rec = Recorder()
    link = LineCardLink("loop://", rec)
    link._on_bytes(hello())
    ev = bytes(wire.encode(wire.T_EVENT, 1, 77, struct.pack(wire.EVENT, wire.EV_RING_ON, 1, 1234)))
    for _ in range(3):  # the card retried: we ack each, deliver one
        link._on_bytes(ev)
    assert [(e.channel, e.name, e.value) for e in rec.events] == [(1, "ring_on", 1)]
    assert link.counters.duplicate_events == 2


async def test_a_new_boot_id_is_reported_as_a_card_reset():
    rec = Recorder()
    downs = []
    rec.link_down = downs.append
    link = LineCardLink("loop://", rec)
    link._on_bytes(hello(boot=1))
    link._on_bytes(hello(boot=2))
    assert downs == ["card reset"]
    assert rec.ups[-1][1] is True and link.counters.card_resets == 1


async def test_wrong_protocol_version_is_refused_with_a_reason():
    link = LineCardLink("loop://", Recorder())
    link._on_bytes(bytes(wire.encode(wire.T_HELLO, wire.BROADCAST, 0, struct.pack(
        wire.HELLO, 99, 1, 0, 0, 8, 1, 0, 1, b"X"))))
    assert not link.is_up
    assert "protocol 99" in link.last_error and "flash matching firmware" in link.last_error


async def test_loop_url_moves_bytes_through_pyserial():
    loop = asyncio.get_running_loop()
    got = asyncio.Queue()
    t = SerialTransport("loop://", 921600, loop, got.put_nowait, lambda why: None)
    try:
        t.write(b"abc\x00")
        data = b""
        while len(data) < 4:
            data += await asyncio.wait_for(got.get(), 2)
        assert data == b"abc\x00"
    finally:
        t.close()


async def test_closing_a_socket_port_does_not_hold_up_the_loop():
    """pyserial's socket:// handler sleeps 0.3 s in close(): done on the loop, that held every line's
    audio at each reconnect (and a Ctrl-C'd nodectl) for as long."""
    accepted: list = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    t = SerialTransport(f"socket://127.0.0.1:{port}", 921600, loop, lambda data: None, lambda why: None)
    try:
        while not accepted:
            await asyncio.sleep(0.01)  # the server's side of the connection
        t0 = time.monotonic()
        t.close()
        assert time.monotonic() - t0 < 0.05
    finally:
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


async def test_unopenable_port_names_the_port():
    with pytest.raises(TransportError, match="/dev/ttyNOPE"):
        SerialTransport("/dev/ttyNOPE", 921600, asyncio.get_running_loop(), print, print)


async def test_no_card_gives_a_clear_error():
    link = LineCardLink("socket://127.0.0.1:9", Recorder())
    with pytest.raises(LinkDown, match="no line card answered on socket://127.0.0.1:9"):
        await link.start(timeout=0.5)
    await link.close()
