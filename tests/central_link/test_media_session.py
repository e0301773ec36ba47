"""The node's media session against a plain aiortc peer (the agent), both on 127.0.0.1, in real
time: tones both ways at the right frequency through the line's hal.AudioPort, G.711 only,
loopback candidates only, and a lost packet that adds no lasting delay on our receive path."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.codecs.g711 import PcmEncoder

import hal
from central_link.media.codecs import audio_codecs
from central_link.media.ice import IceConfig
from central_link.media.session import MediaError, MediaSession
from central_link.media.track import LineTrack
from drivers.dsp import ALAW, G711, ULAW, dbm0
from drivers.dsp.receive import RxFrame

from .peers import Agent, Line, dominant, tone, until

ICE = IceConfig.loopback()
WAIT = 10  # seconds for anything that takes ~40 ms unloaded: connecting, a second of audio


def candidates(sdp: str) -> list[str]:
    return [line for line in sdp.splitlines() if line.startswith("a=candidate:")]


def payload_types(sdp: str) -> set[str]:
    m = re.search(r"^m=audio \d+ \S+ (.*)$", sdp, re.M)
    return set(m.group(1).split())


@pytest.mark.parametrize("law,mime", [(ULAW, "audio/PCMU"), (ALAW, "audio/PCMA")])
async def test_tones_cross_both_ways_in_the_lines_law(law, mime, monkeypatch):
    encoded: Counter[int] = Counter()  # aiortc's G.711 encoder calls, per encoder
    real_encode = PcmEncoder.encode

    def counting(self, frame, force_keyframe=False):
        encoded[id(self)] += 1
        return real_encode(self, frame, force_keyframe)

    monkeypatch.setattr(PcmEncoder, "encode", counting)
    line, agent = Line(600), Agent(ICE, 1000)
    node = MediaSession(line.port, law=law, ice=ICE)
    line.start(node)  # the line ticks from the start, as a real one does
    try:
        offer = await node.offer()
        assert audio_codecs(offer)[0] == mime  # the line's law first: no transcode for the card
        await node.accept_answer(await agent.answer(offer))
        await node.wait_connected(WAIT)
        assert node.law == law
        start = len(line.played)
        await until(lambda: len(agent.heard) >= 60 and len(line.played) >= start + 60, WAIT, "a second of audio")
        # the right tone at its level (-10 dBm0): audio decoded in the other law would be at about +2 dBm0;
        # purity is loose because concealment on a busy machine spreads the spectrum a little
        freq, purity = dominant(agent.heard[-40:])
        level = dbm0(np.concatenate(agent.heard[-40:]))
        assert abs(freq - 600) <= 10 and purity > 0.6 and abs(level + 10) < 3, (freq, purity, level)
        freq, purity = dominant(line.played[-40:])
        level = dbm0(np.concatenate(line.played[-40:]))
        assert abs(freq - 1000) <= 10 and purity > 0.6 and abs(level + 10) < 3, (freq, purity, level)
        assert node.stats()["received"] >= 40
        ours = node.transceiver.sender._RTCRtpSender__encoder
        assert ours is not None and encoded[id(ours)] == 0  # aiortc's encoder never ran for the node ...
        assert sum(encoded.values()) >= 40  # ... while the plain peer's did, frame by frame
    finally:
        await line.stop()
        await node.close()
        await agent.close()


@pytest.mark.parametrize("law", [ULAW, ALAW])
async def test_the_track_hands_aiortc_20_ms_packets_encoded_once_in_the_calls_law(law):
    track = LineTrack(ULAW, depth=3)
    track.law = law  # as negotiation settles it
    frames = [np.full(160, 900 * k, dtype=np.int16) for k in range(5)]
    for f in frames:
        track.push(f)
    got = [await track.recv() for _ in range(3)]
    assert all(isinstance(p, av.Packet) for p in got)
    assert [bytes(p) for p in got] == [G711(law).encode(f) for f in frames[2:]]  # the oldest two dropped
    assert [p.pts for p in got] == [320, 480, 640] and got[0].time_base == Fraction(1, 8000)
    assert track.dropped == 2


async def test_muted_the_agent_gets_comfort_noise_from_the_next_slot_and_the_line_again_after():
    node, codec = MediaSession(Line().port, ice=ICE, track=LineTrack(depth=8)), G711(ULAW)
    gen = tone(600)
    try:
        node.on_line_frame(RxFrame(0, gen.read(160), False))
        node.mute()
        for k in range(1, 3):
            node.on_line_frame(RxFrame(k * 20, gen.read(160), False))  # e.g. a DTMF tone: must not pass
        node.mute(False)
        node.on_line_frame(RxFrame(60, gen.read(160), False))
        sent = [codec.decode(bytes(await asyncio.wait_for(node.track.recv(), WAIT))) for _ in range(4)]
        rms = [float(np.sqrt(np.mean(f.astype(float) ** 2))) for f in sent]
        assert rms[0] > 1000 and rms[3] > 1000  # the tone, before and after
        assert 0 < rms[1] < 30 and 0 < rms[2] < 30  # comfort noise (about -65 dBm0), not the tone, not silence
    finally:
        await node.close()


async def test_sdp_has_only_g711_and_loopback_candidates_both_as_offer_and_answer():
    node, agent = MediaSession(Line().port, ice=ICE), Agent(ICE)
    try:
        offer = await node.offer()
        assert payload_types(offer) == {"0", "8"}
        assert set(audio_codecs(offer)) == {"audio/PCMU", "audio/PCMA"}
        assert candidates(offer) and all(c.split()[4].startswith("127.") for c in candidates(offer))
        assert all(c.split()[7] == "host" for c in candidates(offer))  # no server-reflexive, no relay
    finally:
        await node.close()
        await agent.close()
    node, agent = MediaSession(Line().port, ice=ICE), Agent(ICE)
    try:
        agent_offer = await agent.offer()
        assert "opus" in agent_offer.lower()  # aiortc offers Opus and G.722 first ...
        answer = await node.answer(agent_offer)
        assert payload_types(answer) <= {"0", "8"} and audio_codecs(answer)[0] == "audio/PCMU"  # ... we do not
        assert candidates(answer) and all(c.split()[4].startswith("127.") for c in candidates(answer))
        await agent.accept_answer(answer)
        await node.wait_connected(WAIT)
        ended = asyncio.ensure_future(node.wait_ended())
        await asyncio.sleep(0)
        assert not ended.done()  # connected: the call's media goes on
        await agent.close()  # the agent hangs up
        assert await asyncio.wait_for(ended, WAIT) in ("closed", "failed")
    finally:
        await node.close()
        await agent.close()


async def test_an_sdp_without_g711_or_without_audio_is_refused_clearly():
    node = MediaSession(Line().port, ice=ICE)
    try:
        agent = Agent(ICE)
        offer = await agent.offer()
        await agent.close()
        opus_only = re.sub(r"^(m=audio \d+ \S+) .*$", r"\1 111", offer, flags=re.M)
        opus_only = "\r\n".join(ln for ln in opus_only.splitlines()
                                if not re.match(r"a=(rtpmap|fmtp|rtcp-fb):(?!111 )", ln)) + "\r\n"
        with pytest.raises(MediaError, match="no PCMU or PCMA"):
            await node.answer(opus_only)
        with pytest.raises(MediaError, match="not an SDP with audio"):
            await node.answer("hello")
    finally:
        await node.close()


async def test_a_lost_packet_adds_no_lasting_delay_on_our_receive_path():
    """In lock step, so that a busy machine cannot blur it: the agent sends one packet (a real RTP
    packet over loopback, through SRTP and the receiver hook), the line ticks once it arrived.
    Every frame must play on the tick right after it came, before and after one lost packet."""
    port, sent = hal.AudioPort(), LineTrack()
    node, agent = MediaSession(port, ice=ICE), Agent(ICE, track=sent)
    stats = node.playout.buffer.stats
    drop = {"armed": False, "dropped": 0}
    send_rtp = agent.transceiver.sender.transport._send_rtp

    async def lossy(data: bytes) -> None:  # the network drops one of the agent's RTP packets, once armed
        if drop["armed"] and not drop["dropped"]:
            drop["dropped"] = 1
            return
        await send_rtp(data)

    agent.transceiver.sender.transport._send_rtp = lossy
    gen, line_audio, slot = tone(1000), np.zeros(160, dtype=np.int16), 0

    def tick() -> None:
        nonlocal slot
        node.on_line_frame(RxFrame(slot * 20, line_audio, False))
        port.next_out()  # the card takes the frame played
        slot += 1

    try:
        await node.accept_answer(await agent.answer(await node.offer()))
        await node.wait_connected(WAIT)
        for _ in range(50):  # the agent's sender starts a little after connecting: push until it sends
            sent.push(gen.read(160))
            with contextlib.suppress(AssertionError):
                await until(lambda: stats.received, 0.2, "the agent's first packet")
                break
        assert stats.received, "the node received none of the agent's packets within 10 s"
        while node.playout.buffer.depth:
            tick()
        depths, silent = [], []
        held, lost = stats.held, stats.lost
        for k in range(100):
            played, got = stats.played, stats.received
            drop["armed"] = k == 50
            sent.push(gen.read(160))
            if drop["armed"]:
                await until(lambda: drop["dropped"], WAIT, "the agent to send the packet the network loses")
            else:
                await until(lambda got=got: stats.received > got, WAIT, f"the agent's packet {k}")
            tick()
            depths.append(node.playout.buffer.depth)
            if stats.played == played:
                silent.append(k)
        assert depths == [0] * 100  # no frame ever waited a tick: before the loss and after it
        assert silent == [50]  # the lost one's slot concealed, every other tick played its frame
        assert (stats.held - held, stats.lost - lost, stats.late, drop["dropped"]) == (1, 1, 0, 1)
    finally:
        await node.close()
        await agent.close()
