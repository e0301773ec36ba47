"""The hub's own SQLite (sqlite-utils): the node registry, what the nodes' outboxes delivered, agents and
their login sessions.

``applied`` is the unique-key table that makes delivery exactly once: an item is applied (its row
in its kind's table) in the same transaction that records its key, and a key seen before is only
acknowledged again. Durable (WAL, ``synchronous=FULL``) before the ack leaves, because the node
drops the item when it has the ack.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
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
        if "agents" not in self.db.table_names():  # a hub database from before agents gets them too
            self.db["agents"].create({"name": str, "role": str, "salt": bytes, "hash": bytes, "created": str},
                                     pk="name")
            self.db["sessions"].create({"token_hash": str, "agent": str, "created": str, "expires": float},
                                       pk="token_hash", foreign_keys=[("agent", "agents", "name")])

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

    # -- agents: scrypt with a salt of its own per agent; sessions by the SHA-256 of a random token --
    def add_agent(self, name: str, role: str, password: str) -> None:
        if not AGENT_NAME_RE.fullmatch(name):
            raise ValueError(f"agent name {name[:40]!r}: use 1 to 32 letters, digits, '.', '_' or '-'")
        if len(password) < PASSWORD_MIN:
            raise ValueError(f"the password must have at least {PASSWORD_MIN} characters")
        if list(self.db.query("SELECT name FROM agents WHERE name = ?", [name])):
            raise ValueError(f"agent {name!r} exists already")
        salt = secrets.token_bytes(16)
        self.db["agents"].insert({"name": name, "role": role, "salt": salt, "hash": _scrypt(password, salt),
                                  "created": now()})

    def agents(self) -> list[dict]:
        return list(self.db.query("SELECT name, role, created FROM agents ORDER BY name"))

    def check_password(self, name: str, password: str) -> str | None:
        """The agent's role when the password is right, else None; as slow for an unknown name."""
        rows = list(self.db.query("SELECT role, salt, hash FROM agents WHERE name = ?", [name]))
        row = rows[0] if rows else {"role": None, "salt": b"\0" * 16, "hash": b""}
        ok = hmac.compare_digest(_scrypt(password, row["salt"]), row["hash"])
        return row["role"] if ok and rows else None

    def new_session(self, agent: str, lifetime_s: float, clock: float) -> str:
        """A fresh random token for the cookie; only its hash is kept."""
        token = secrets.token_urlsafe(32)
        self.db["sessions"].insert({"token_hash": _token_hash(token), "agent": agent, "created": now(),
                                    "expires": clock + lifetime_s})
        return token

    def session(self, token: str, clock: float) -> dict | None:
        """The session's agent and role, or None (unknown or expired token)."""
        rows = list(self.db.query("SELECT s.agent, s.expires, a.role FROM sessions s JOIN agents a ON a.name = "
                                  "s.agent WHERE s.token_hash = ?", [_token_hash(token)]))
        if not rows or rows[0]["expires"] <= clock:
            return None
        return {"agent": rows[0]["agent"], "role": rows[0]["role"]}

    def end_session(self, token: str) -> None:
        self.db.execute("DELETE FROM sessions WHERE token_hash = ?", [_token_hash(token)])

    def end_sessions(self, agent: str) -> None:
        self.db.execute("DELETE FROM sessions WHERE agent = ?", [agent])


AGENT_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")
PASSWORD_MIN = 8
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}  # the interactive-login parameters (RFC 7914)


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, **SCRYPT)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _lines(lines: list[LineState]) -> str:
    return json.dumps([{"line": ln.line, "number": ln.number, "state": ln.state} for ln in lines])
