"""The hub's own SQLite (sqlite-utils): the node registry and what the nodes' outboxes delivered.

``applied`` is the unique-key table that makes delivery exactly once: an item is applied (its row
in its kind's table) in the same transaction that records its key, and a key seen before is only
acknowledged again. Durable (WAL, ``synchronous=FULL``) before the ack leaves, because the node
drops the item when it has the ack.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from ..protocol import OUTBOX_KINDS, LineState

TABLES = {"call_record": "call_records", "auth_event": "auth_events", "alarm": "alarms",
          "alarm_cleared": "alarms_cleared", "recording": "recordings", "callback": "callbacks"}
assert set(TABLES) == set(OUTBOX_KINDS)  # a new kind needs its table


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class HubStore:
    """Used from one thread at a time (the hub runs every call in its single database thread)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.Lock()
        if "nodes" not in self.db.table_names():
            self.db["nodes"].create({"id": str, "allowed": int, "connected": int, "address": str, "software": str,
                                     "firmware": str, "lines": str, "connected_at": str, "last_seen": str}, pk="id")
            self.db["applied"].create({"node": str, "key": str, "kind": str, "at": str}, pk=("node", "key"))
            for table in TABLES.values():  # no key constraint here: `applied` alone decides
                self.db[table].create({"id": int, "node": str, "key": str, "received": str, "payload": str}, pk="id")

    def close(self) -> None:
        self.db.conn.close()

    def allow(self, nodes: tuple[str, ...]) -> None:
        """The configured node list; every node starts disconnected (a hub that starts has no link)."""
        with self.db.conn:
            self.db.execute("UPDATE nodes SET allowed = 0, connected = 0")
            for n in nodes:
                self.db["nodes"].upsert({"id": n, "allowed": 1, "connected": 0}, pk="id")

    def connected(self, node: str, address: str, software: str, firmware: str, lines: list[LineState]) -> None:
        stamp = now()
        self.db["nodes"].upsert({"id": node, "connected": 1, "address": address, "software": software,
                                 "firmware": firmware, "lines": _lines(lines), "connected_at": stamp,
                                 "last_seen": stamp}, pk="id")

    def seen(self, node: str, lines: list[LineState]) -> None:
        self.db["nodes"].update(node, {"lines": _lines(lines), "last_seen": now()})

    def disconnected(self, node: str) -> None:
        self.db["nodes"].update(node, {"connected": 0, "last_seen": now()})

    def node(self, node: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM nodes WHERE id = ?", [node]))
        return rows[0] | {"lines": json.loads(rows[0]["lines"] or "[]")} if rows else None

    def apply(self, node: str, key: str, kind: str, payload: dict) -> bool:
        """Apply one outbox item once; False when it was applied before (then only ack it again)."""
        stamp = now()
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                cur = self.db.execute("INSERT OR IGNORE INTO applied (node, key, kind, at) VALUES (?, ?, ?, ?)",
                                      [node, key, kind, stamp])
                fresh = cur.rowcount == 1
                if fresh:
                    self.db.execute(f"INSERT INTO [{TABLES[kind]}] (node, key, received, payload) VALUES (?, ?, ?, ?)",
                                    [node, key, stamp, json.dumps(payload, sort_keys=True)])
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        return fresh

    def items(self, kind: str, node: str | None = None) -> list[dict]:
        where, args = ("WHERE node = ?", [node]) if node else ("", [])
        return [r | {"payload": json.loads(r["payload"])}
                for r in self.db.query(f"SELECT * FROM [{TABLES[kind]}] {where} ORDER BY id", args)]


def _lines(lines: list[LineState]) -> str:
    return json.dumps([{"line": ln.line, "number": ln.number, "state": ln.state} for ln in lines])
