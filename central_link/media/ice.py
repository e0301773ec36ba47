"""ICE for the node's media, in one place: which STUN/TURN servers, which addresses may carry media.

aiortc's defaults are wrong for a branch node: with no ``iceServers`` it asks a public STUN
server (a packet to the internet per call), and aioice never offers 127.0.0.1 as a host candidate
(so loopback tests cannot connect). :class:`IceConfig` fixes both:

- no server unless configured (``servers``): TURN (``turn:``/``turns:``, with credentials) for
  real deployments behind NAT, optionally STUN; aiortc uses at most one of each;
- ``networks`` (CIDRs, e.g. ``127.0.0.0/8`` in tests) restricts ICE: only local addresses inside
  them are gathered (127.0.0.1 included, which aioice skips), remote candidates outside them are
  removed from the far end's SDP, and connectivity checks from outside them are ignored (aioice
  would otherwise learn and nominate a peer-reflexive address);
- ``relay_only`` sends media through TURN alone (no host candidates).

The restriction is applied per connection (:meth:`IceConfig.restrict`), by wrapping two methods of
each aioice ``Connection`` aiortc made (``get_component_candidates``, ``request_received``): no
module of aioice or aiortc is patched.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

_URL = re.compile(r"(?P<scheme>stuns?|turns?):(?P<host>[^?:/\s]+)(:(?P<port>\d+))?(\?transport=(?P<transport>\w+))?")


class IceConfigError(ValueError):
    """A media ICE setting is wrong: the message names the setting and what to write instead."""


@dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server, as in WebRTC's ``RTCIceServer``."""

    url: str  # stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp], turns:HOST[:PORT][?transport=tcp]
    username: str | None = None  # TURN only
    credential: str | None = None  # TURN only (a password)

    def __post_init__(self) -> None:
        m = _URL.fullmatch(self.url or "")
        if m is None:
            raise IceConfigError(f"ICE server url {self.url!r}: write stun:HOST[:PORT] or "
                                 "turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT]?transport=tcp")
        if m["port"] and not 0 < int(m["port"]) < 65536:
            raise IceConfigError(f"ICE server url {self.url!r}: port {m['port']} is not 1-65535")
        transport = m["transport"]
        if m["scheme"] == "stuns":
            raise IceConfigError(f"ICE server url {self.url!r}: aiortc has no STUN over TLS: use stun: or turns:")
        if m["scheme"] == "turn" and transport not in (None, "udp", "tcp"):
            raise IceConfigError(f"ICE server url {self.url!r}: turn: takes ?transport=udp or ?transport=tcp")
        if m["scheme"] == "turns" and transport not in (None, "tcp"):
            raise IceConfigError(f"ICE server url {self.url!r}: turns: runs over TLS on TCP: use ?transport=tcp")
        if self.is_turn and not (self.username and self.credential):
            raise IceConfigError(f"ICE server {self.url!r}: a TURN server needs a username and a credential")
        if not self.is_turn and (self.username or self.credential):
            raise IceConfigError(f"ICE server {self.url!r}: a STUN server takes no username or credential: "
                                 "remove them (or use a turn: url)")

    @property
    def is_turn(self) -> bool:
        return self.url.startswith("turn")

    def rtc(self) -> RTCIceServer:
        url = self.url
        if url.startswith("turns:") and "?transport=" not in url:
            url += "?transport=tcp"  # aiortc's default for turns: is udp, which it then refuses
        return RTCIceServer(urls=url, username=self.username, credential=self.credential)


@dataclass(frozen=True)
class IceConfig:
    """The node's ICE settings for every call. The default asks no server and uses every local
    address; :meth:`loopback` is what tests use."""

    servers: tuple[IceServer, ...] = ()
    networks: tuple[str, ...] = ()  # CIDRs media may use; () = any
    relay_only: bool = False
    _nets: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        servers = tuple(self.servers)
        object.__setattr__(self, "servers", servers)
        for s in servers:
            if not isinstance(s, IceServer):
                raise IceConfigError(f"ICE servers: {s!r} is not an IceServer: give url, username, credential")
        for kind, many in (("TURN", [s for s in servers if s.is_turn]), ("STUN", [s for s in servers if not s.is_turn])):
            if len(many) > 1:
                raise IceConfigError(f"ICE servers: {len(many)} {kind} servers given ({', '.join(s.url for s in many)}): "
                                     f"aiortc uses only one of each: keep one {kind} server")
        if self.relay_only and not any(s.is_turn for s in servers):
            raise IceConfigError("ICE relay_only needs a TURN server in servers: add one, or set relay_only = false")
        nets = []
        for n in self.networks:
            try:
                nets.append(ipaddress.ip_network(n, strict=False))
            except ValueError:
                raise IceConfigError(f"ICE networks: {n!r} is not a network: write a CIDR such as "
                                     "'127.0.0.0/8' or '10.1.0.0/16'") from None
        object.__setattr__(self, "networks", tuple(self.networks))
        object.__setattr__(self, "_nets", tuple(nets))

    @classmethod
    def loopback(cls) -> IceConfig:
        """ICE on 127.0.0.0/8 only, no server: what tests and the one-machine demo use."""
        return cls(networks=("127.0.0.0/8",))

    @classmethod
    def from_dict(cls, data: dict, where: str = "[media.ice]") -> IceConfig:
        """From a configuration table: ``servers = [{url, username, credential}]``, ``networks``,
        ``relay_only``. Errors name ``where`` and the setting."""
        known = {"servers", "networks", "relay_only"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise IceConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}: the settings are "
                                 f"{', '.join(sorted(known))}")
        servers = []
        for i, s in enumerate(data.get("servers", [])):
            if not isinstance(s, dict) or not set(s) <= {"url", "username", "credential"} or "url" not in s:
                raise IceConfigError(f"{where} servers[{i}]: write {{ url = \"turn:HOST:3478\", username = \"...\", "
                                     "credential = \"...\" }}")
            try:
                servers.append(IceServer(**s))
            except IceConfigError as exc:
                raise IceConfigError(f"{where} servers[{i}]: {exc}") from None
        networks = data.get("networks", [])
        if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks):
            raise IceConfigError(f"{where} networks: write a list of CIDRs such as [\"127.0.0.0/8\"]")
        relay_only = data.get("relay_only", False)
        if not isinstance(relay_only, bool):
            raise IceConfigError(f"{where} relay_only: write true or false")
        try:
            return cls(tuple(servers), tuple(networks), relay_only)
        except IceConfigError as exc:
            raise IceConfigError(f"{where}: {exc}") from None

    # -- applying it ---------------------------------------------------------------------------
    def allows(self, address: str) -> bool:
        if not self._nets:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False  # a hostname or an mDNS name: not an address we can check
        return any(ip in n for n in self._nets)

    def rtc_configuration(self) -> RTCConfiguration:
        """For ``RTCPeerConnection(configuration=...)``: an empty server list is passed explicitly,
        since ``None`` means aiortc's public STUN server."""
        return RTCConfiguration(
            iceServers=[s.rtc() for s in self.servers],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL)

    def host_addresses(self) -> list[str]:
        """The local addresses ICE gathers on: aioice's list plus 127.0.0.1, inside ``networks``."""
        found = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) + ["127.0.0.1"]
        return [a for a in dict.fromkeys(found) if self.allows(a)]

    def restrict(self, pc: RTCPeerConnection) -> None:
        """Hold every ICE connection of ``pc`` made so far to these settings. Call it after the
        transceivers exist and before ``setLocalDescription`` (which gathers)."""
        for t in pc.getTransceivers():
            conn = t.sender.transport.transport.iceGatherer._connection  # aiortc: one per transport
            if getattr(conn, "_branchnode_restricted", False) or not self._nets:
                continue
            ours = self.host_addresses()
            gather = conn.get_component_candidates
            checked = conn.request_received

            async def get_component_candidates(component, addresses=None, timeout=5, _g=gather, _a=ours):
                return await _g(component=component, addresses=_a, timeout=timeout)

            def request_received(message, addr, protocol, *rest, _r=checked):
                if self.allows(addr[0]):  # a check from elsewhere would become a peer-reflexive pair
                    _r(message, addr, protocol, *rest)

            if not self.relay_only:  # relay-only gathers no host candidate at all
                conn.get_component_candidates = get_component_candidates
            conn.request_received = request_received
            conn._branchnode_restricted = True

    def filter_sdp(self, sdp: str) -> str:
        """The far end's SDP without candidates outside ``networks`` (a browser offers every address
        it has; mDNS ``.local`` names are dropped too when networks are set)."""
        if not self._nets:
            return sdp
        keep = []
        for line in sdp.splitlines():
            if line.startswith("a=candidate:"):
                parts = line.split()
                if len(parts) < 5 or not self.allows(parts[4]):
                    continue
            keep.append(line)
        return "\r\n".join(keep) + "\r\n"

