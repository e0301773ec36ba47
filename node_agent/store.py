"""The node's local state in SQLite (through sqlite-utils): accounts, authentication events,
alarms, call records, and the outbox of everything HQ must receive.

WAL mode with ``synchronous=FULL``: a row committed here survives a power cut, which is what
makes "the failure is on disk before the caller hears 'wrong PIN'" true. The schema is versioned
and migrated forward on open; nothing in the outbox is deleted before HQ acknowledges it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils


class StoreError(RuntimeError):
    """The database cannot be used; the message says which file and what to do."""


def _v1(db: sqlite_utils.Database) -> None:
    db["accounts"].create({"id": str, "name": str, "salt": bytes, "pin_hash": bytes, "kdf": str,
                           "disabled": int, "created": str}, pk="id", not_null={"salt", "pin_hash", "kdf"},
                          defaults={"disabled": 0, "name": ""})
    db["auth_events"].create({"id": int, "at": str, "day": str, "account": str, "known": int, "call_id": str,
                              "line": int, "outcome": str}, pk="id")
    db["auth_events"].create_index(["account", "day"])
    db["auth_events"].create_index(["call_id"])
    db["alarms"].create({"id": int, "kind": str, "account": str, "raised_at": str, "detail": str,
                         "cleared_at": str, "cleared_by": str}, pk="id")
    db["alarms"].create_index(["account", "cleared_at"])
    db["call_records"].create({"id": str, "line": int, "caller_number": str, "caller_name": str,
                               "started": str, "answered": str, "ended": str, "ivr_path": str,
                               "auth_outcome": str, "account": str, "disposition": str}, pk="id")
    db["outbox"].create({"id": int, "key": str, "kind": str, "payload": str, "created": str, "acked_at": str},
                        pk="id")
    db["outbox"].create_index(["key"], unique=True)
    db["outbox"].create_index(["acked_at"])


def _v2(db: sqlite_utils.Database) -> None:
    db["recordings"].create({"id": int, "call_id": str, "kind": str, "path": str, "ms": int,
                             "caller_number": str, "at": str}, pk="id")
    db["callbacks"].create({"id": int, "call_id": str, "number": str, "caller_number": str, "at": str}, pk="id")


ERASED_ACCOUNT = "unknown:erased"  # stands for digits that named no account, stored in clear before version 3


def _v3_erase_unknown_account_digits(db: sqlite_utils.Database) -> None:
    """Digits keyed as an account that named none were stored in clear (a PIN keyed at the account
    prompt, account and PIN run together): erase them wherever they are. Nobody can key this
    stand-in, so it is never counted or blacklisted again; the rows themselves are kept."""
    was = db.execute("PRAGMA secure_delete").fetchone()[0]
    db.execute("PRAGMA secure_delete=ON")  # the pages rewritten here keep no trace of the old text
    db.execute("UPDATE auth_events SET account = ? WHERE known = 0", [ERASED_ACCOUNT])
    unknown = "NOT IN (SELECT id FROM accounts)"
    db.execute(f"UPDATE call_records SET account = ? WHERE account <> '' AND account {unknown}", [ERASED_ACCOUNT])
    db.execute(f"UPDATE outbox SET payload = json_set(payload, '$.account', ?) WHERE kind IN ('auth_event', "
               f"'call_record') AND json_extract(payload, '$.account') <> '' "
               f"AND json_extract(payload, '$.account') {unknown}", [ERASED_ACCOUNT])
    db.execute(f"PRAGMA secure_delete={int(was)}")


def _v4_calls_in_progress(db: sqlite_utils.Database) -> None:
    """Call records opened at the first ring and kept up to date (``ended`` is NULL while the call
    is up); where the call ended; recordings whose ``ms`` is NULL while they are being made."""
    db["call_records"].add_column("updated", str)
    db["call_records"].add_column("ended_in", str)
    db["call_records"].create_index(["ended"])


def _v5_clears_by_event(db: sqlite_utils.Database) -> None:
    """A cleared blacklist alarm remembers the last attempt it covers (``cleared_event``), so the
    failures counted after it are the attempts that came later, not those with a later timestamp:
    attempts within the millisecond of the clear were counted or not by chance."""
    db["alarms"].add_column("cleared_event", int)
    db.execute("UPDATE alarms SET cleared_event = (SELECT COALESCE(MAX(id), 0) FROM auth_events "
               "WHERE auth_events.at <= alarms.cleared_at) WHERE cleared_at IS NOT NULL")


def _v6_forwarded_calls(db: sqlite_utils.Database) -> None:
    """A call transferred to HQ: the agent who took it, its time in HQ's queue and its talk time."""
    db["call_records"].add_column("agent", str)
    db["call_records"].add_column("queue_ms", int)
    db["call_records"].add_column("talk_ms", int)


def _v7_account_class(db: sqlite_utils.Database) -> None:
    """An account's class (e.g. ``vip``): a verified caller's class travels to HQ, whose queue may
    rank it (``[priorities] classes``). Empty: no class."""
    db["accounts"].add_column("account_class", str, not_null_default="")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3_erase_unknown_account_digits,
                                                               _v4_calls_in_progress, _v5_clears_by_event,
                                                               _v6_forwarded_calls, _v7_account_class]


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class OutboxItem:
    id: int
    key: str
    kind: str
    payload: dict


class Store:
    """One node's database, usable from the asyncio loop and worker threads alike.

    Each thread gets its own SQLite connection: a connection is not safe to share (sqlite-utils
    wraps queries in savepoints, which interleave with another thread's transaction). WAL lets
    readers go on while one writer commits; writers take turns through one lock.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db.execute("PRAGMA user_version")  # touches the file: a corrupt one fails here
        except (sqlite3.DatabaseError, OSError) as exc:
            self.close()
            raise StoreError(f"cannot open the node database {self.path}: {exc}. If the file is damaged, "
                             "move it aside and restore the last backup") from exc
        self._migrate()

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection (opened on first use)."""
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            with self._conns_lock:
                self._conns.append(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            db = self._local.db = sqlite_utils.Database(conn)
        return db

    def close(self) -> None:
        # after any write transaction in flight (a call record committed by its writer thread while
        # the daemon stops): closing a connection another thread is executing on crashed the process
        with self._lock, self._conns_lock:
            conns, self._conns = self._conns, []
            for conn in conns:
                conn.close()
            self._local = threading.local()

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        with self._lock:
            have = self.schema_version
            if have > len(MIGRATIONS):
                raise StoreError(f"{self.path} has schema version {have}, newer than this software "
                                 f"({len(MIGRATIONS)}): update the node software, or restore a backup")
            for version, step in enumerate(MIGRATIONS[have:], start=have + 1):
                with self.transaction():
                    step(self.db)
                    self.db.execute(f"PRAGMA user_version={version}")
            if have < len(MIGRATIONS):  # what a migration rewrote stays in no old page of the log
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One atomic, durable unit of work (committed, fsynced, on leaving the block)."""
        db = self.db
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- outbox ----------------------------------------------------------------------------------
    def enqueue(self, db: sqlite_utils.Database, kind: str, key: str, payload: dict) -> None:
        """Add to the outbox inside the caller's transaction; the same key twice is one item."""
        db["outbox"].insert({"key": key, "kind": kind, "payload": json.dumps(payload, sort_keys=True),
                             "created": now_utc(), "acked_at": None}, ignore=True)

    def outbox_pending(self, limit: int = 100) -> list[OutboxItem]:
        rows = self.db.query("SELECT id, key, kind, payload FROM outbox WHERE acked_at IS NULL ORDER BY id LIMIT ?",
                             [limit])
        return [OutboxItem(r["id"], r["key"], r["kind"], json.loads(r["payload"])) for r in rows]

    def outbox_count(self) -> int:
        """How many items still wait for HQ (without loading them)."""
        return self.db.execute("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL").fetchone()[0]

    def outbox_ack(self, keys: list[str]) -> int:
        """HQ has these: mark them (they are kept, acknowledged, for the record)."""
        with self.transaction() as db:
            stamp = now_utc()
            cur = db.execute(f"UPDATE outbox SET acked_at = ? WHERE acked_at IS NULL AND key IN "
                             f"({','.join('?' * len(keys))})", [stamp, *keys])
            return cur.rowcount
