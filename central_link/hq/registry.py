"""Which nodes may connect and which are connected now (one connection per node id).

The live part is in memory (the hub's one process owns it); the store keeps what an admin sees:
connected or not, from where, the software and firmware versions, the lines and their states.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Refused(Exception):
    """A node that may not connect now; ``status`` is the HTTP answer, the message the reason logged."""

    def __init__(self, status: int, short: str, reason: str) -> None:
        self.status, self.short = status, short  # short: the HTTP reason phrase the node logs
        super().__init__(reason)


@dataclass
class Registry:
    allowed: frozenset[str]
    live: dict[str, str] = field(default_factory=dict)  # node id -> the address it is connected from

    def claim(self, node: str, address: str) -> None:
        """Take the node id for this connection, or refuse it with the reason."""
        if node not in self.allowed:
            raise Refused(403, "Unknown node", f"node {node!r} is not in the hub's node list (its certificate is the CA's, "
                               "but [hub] nodes does not name it)")
        if node in self.live:
            raise Refused(409, "Node already connected", f"node {node!r} is already connected from {self.live[node]}")
        self.live[node] = address

    def release(self, node: str) -> None:
        self.live.pop(node, None)

    def connected(self) -> list[str]:
        return sorted(self.live)
