"""ICE settings of the node's media (central_link.media.ice): validation with clear errors, no
STUN server unless configured (and so no STUN packet to anyone but the peer), loopback-only
candidates when restricted, TURN passed through to aioice."""

from __future__ import annotations

import asyncio

import aioice.ice
import pytest
from aiortc import RTCPeerConnection

from central_link.media.ice import IceConfig, IceConfigError, IceServer
from central_link.media.session import MediaSession

from .peers import Agent, Line

TURN = IceServer("turn:turn.example.net:3478?transport=udp", "node-7", "s3cret")


def connection(pc: RTCPeerConnection):
    return pc.getTransceivers()[0].sender.transport.transport.iceGatherer._connection


async def test_the_default_asks_no_server_while_aiortcs_default_asks_a_public_one():  # aiortc wants a loop
    assert IceConfig().rtc_configuration().iceServers == []
    ours, theirs = RTCPeerConnection(IceConfig().rtc_configuration()), RTCPeerConnection()
    ours.addTransceiver("audio")
    theirs.addTransceiver("audio")
    assert connection(ours).stun_server is None and connection(ours).turn_server is None
    assert connection(theirs).stun_server is not None  # what an RTCConfiguration left at None does


async def test_turn_settings_reach_aioice():  # aiortc wants a running loop
    pc = RTCPeerConnection(IceConfig((TURN, IceServer("stun:stun.example.net"))).rtc_configuration())
    pc.addTransceiver("audio")
    conn = connection(pc)
    assert conn.turn_server == ("turn.example.net", 3478) and conn.turn_username == "node-7"
    assert conn.stun_server == ("stun.example.net", 3478)
    turns = RTCPeerConnection(IceConfig((IceServer("turns:turn.example.net:5349", "n", "p"),), relay_only=True)
                              .rtc_configuration())
    turns.addTransceiver("audio")
    assert connection(turns).turn_ssl and connection(turns).turn_transport == "tcp"


@pytest.mark.parametrize("make,message", [
    (lambda: IceServer("turn.example.net"), "write stun:HOST"),
    (lambda: IceServer("turn:turn.example.net"), "needs a username and a credential"),
    (lambda: IceServer("stun:s.example.net", "u", "p"), "takes no username"),
    (lambda: IceServer("turn:t.example.net:99999", "u", "p"), "not 1-65535"),
    (lambda: IceServer("turns:t.example.net?transport=udp", "u", "p"), "use \\?transport=tcp"),
    (lambda: IceConfig((TURN, IceServer("turn:b.example.net", "u", "p"))), "keep one TURN server"),
    (lambda: IceConfig(relay_only=True), "relay_only needs a TURN server"),
    (lambda: IceConfig(networks=("127.0.0.1/99",)), "not a network"),
    (lambda: IceConfig.from_dict({"server": []}), r"\[media.ice\]: unknown setting\(s\) server"),
    (lambda: IceConfig.from_dict({"servers": [{"url": "turn:x"}]}), r"servers\[0\]: .*needs a username"),
    (lambda: IceConfig.from_dict({"networks": "127.0.0.0/8"}), "a list of CIDRs"),
])
def test_bad_settings_are_refused_naming_the_setting(make, message):
    with pytest.raises(IceConfigError, match=message):
        make()


def test_from_dict_reads_a_deployment_table():
    cfg = IceConfig.from_dict({"servers": [{"url": TURN.url, "username": "node-7", "credential": "s3cret"}],
                               "relay_only": True})
    assert cfg.servers == (TURN,) and cfg.relay_only and cfg.networks == ()


def test_far_end_candidates_outside_the_networks_are_removed():
    sdp = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
           "a=candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host\r\n"
           "a=candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host\r\n"
           "a=candidate:3 1 udp 2122260223 4d1b8c2e-1.local 50002 typ host\r\n"
           "a=rtpmap:0 PCMU/8000\r\n")
    kept = IceConfig.loopback().filter_sdp(sdp)
    assert "127.0.0.1 50001" in kept and "192.168.1.20" not in kept and ".local" not in kept
    assert "a=rtpmap:0 PCMU/8000" in kept
    assert IceConfig().filter_sdp(sdp) == sdp  # unrestricted: the far end's SDP as it came


def test_loopback_gathers_127_0_0_1_which_aioice_alone_skips():
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    assert IceConfig.loopback().host_addresses() == ["127.0.0.1"]


class _Listener(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagram_received(self, data: bytes, addr) -> None:
        self.got.append(data)


async def test_no_stun_packet_goes_anywhere_but_the_peer_unless_a_server_is_configured(monkeypatch):
    sent: list[tuple[str, int]] = []
    real = aioice.ice.StunProtocol.send_stun

    def spy(self, message, addr):
        sent.append(addr[:2])
        return real(self, message, addr)

    monkeypatch.setattr(aioice.ice.StunProtocol, "send_stun", spy)  # every STUN packet aioice sends
    line, agent = Line(), Agent(IceConfig.loopback())
    node = MediaSession(line.port, ice=IceConfig.loopback())
    try:
        await node.accept_answer(await agent.answer(await node.offer()))
        await node.wait_connected(10)
        agent_ports = {int(c.split()[5]) for c in agent.pc.localDescription.sdp.splitlines()
                       if c.startswith("a=candidate:")}
        node_ports = {int(c.split()[5]) for c in node.pc.localDescription.sdp.splitlines()
                      if c.startswith("a=candidate:")}
        assert sent  # the connectivity checks were seen ...
        assert set(sent) <= {("127.0.0.1", p) for p in agent_ports | node_ports}  # ... and went to the peers only
    finally:
        await node.close()
        await agent.close()
    # the same spy does see a query once a STUN server is configured (a local listener stands in)
    loop = asyncio.get_running_loop()
    transport, listener = await loop.create_datagram_endpoint(_Listener, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    sent.clear()
    node = MediaSession(Line().port, ice=IceConfig((IceServer(f"stun:127.0.0.1:{port}"),), ("127.0.0.0/8",)))
    try:
        gathering = asyncio.ensure_future(node.offer())
        deadline = loop.time() + 10
        while not listener.got and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert ("127.0.0.1", port) in sent and listener.got  # a binding request reached the "server"
        gathering.cancel()
    finally:
        await node.close()
        transport.close()
