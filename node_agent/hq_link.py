"""The node's side of the HQ link: its outbox as the uplink sees it, and the uplink built from the
``[hq]`` configuration (docs/central-link.md)."""

from __future__ import annotations

from collections.abc import Callable

from central_link.protocol import LineState, OutboxItem
from central_link.tls import client_context
from central_link.uplink import LiveHandler, NodeInfo, Uplink

from . import __version__
from .config import HqConfig
from .store import Store


class StoreOutbox:
    """The node Store's outbox table as the uplink's :class:`central_link.uplink.Outbox`: an
    acknowledged item is marked (kept for the record), never sent again."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def pending(self, limit: int) -> list[OutboxItem]:
        return [OutboxItem(i.key, i.kind, i.payload) for i in self.store.outbox_pending(limit)]

    def acked(self, key: str) -> None:
        self.store.outbox_ack([key])


def make_uplink(hq: HqConfig, node_id: str, store: Store, firmware: Callable[[], str],
                lines: Callable[[], list[LineState]], handler: LiveHandler | None = None) -> Uplink:
    ctx = client_context(hq.cert, hq.key, hq.ca)
    return Uplink(hq.url, ctx, NodeInfo(node_id, f"branchnode {__version__}", firmware, lines), StoreOutbox(store),
                  handler=handler)
