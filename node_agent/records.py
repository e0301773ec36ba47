"""Call records that survive a crash: opened at the first ring, kept up to date while the call
goes on, closed with the final state before the line is released.

A record whose ``ended`` is NULL is a call in progress. A node that starts and finds such
records died with those calls up: it closes them as ``interrupted``, with what they had. The
outbox item for HQ (key ``call-ID``) is added in the same transaction as the record's final
state, whichever way it is reached, so HQ gets exactly one per call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime

from .store import Store

log = logging.getLogger("node_agent.records")


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


@dataclass
class CallRecord:
    id: str
    line: int
    started: str
    caller_number: str = ""
    caller_name: str = ""
    answered: str | None = None
    ended: str | None = None
    ivr_path: list[str] = field(default_factory=list)
    auth_outcome: str = ""
    account: str = ""
    disposition: str = ""
    ended_in: str = ""  # the node of the flow the call was in when it ended
    updated: str = ""
    agent: str = ""  # the HQ agent who took the call (a transfer)
    queue_ms: int | None = None  # time in HQ's queue (a transfer), until an agent took it or the caller left
    talk_ms: int | None = None  # time talking to the agent

    def row(self) -> dict:
        return asdict(self) | {"ivr_path": json.dumps(self.ivr_path)}


class CallLog:
    """The ``call_records`` table. Each write is one durable transaction, run in a thread of this
    log's own: a commit waits for the disk, and the final one, which the line's release waits
    for, must not queue behind the PIN checks that fill the default worker threads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="call-records")

    async def open(self, rec: CallRecord) -> None:
        await self._run(self._open, rec)

    async def update(self, rec: CallRecord) -> None:
        await self._run(self._update, rec)

    async def close(self, rec: CallRecord) -> None:
        await self._run(self._close, rec)

    async def _run(self, fn, rec: CallRecord) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, fn, rec)

    def _open(self, rec: CallRecord) -> None:
        rec.updated = now()
        with self.store.transaction() as db:
            db["call_records"].insert(rec.row())

    def _update(self, rec: CallRecord) -> None:
        """The state so far. A no-op once the record is closed, so an update that lost the race
        with the final state can never overwrite it."""
        row = rec.row() | {"updated": now()}
        del row["id"], row["ended"]
        sets = ", ".join(f"{k} = :{k}" for k in row)
        with self.store.transaction() as db:
            db.execute(f"UPDATE call_records SET {sets} WHERE id = :id AND ended IS NULL", row | {"id": rec.id})

    def _close(self, rec: CallRecord) -> None:
        """The final state, and its one outbox item for HQ, in one transaction."""
        rec.ended = rec.updated = now()
        row = rec.row()
        with self.store.transaction() as db:
            db["call_records"].upsert(row, pk="id")
            self.store.enqueue(db, "call_record", f"call-{rec.id}", row)

    def close_interrupted(self) -> list[str]:
        """Close the records a previous run left open (it died with those calls up); returns their
        ids. Run at start-up, before any call (off the event loop: it commits).

        ``ended`` is the last moment that run knew the call was up (its last update), and
        ``ended_in`` the node the call was in then.
        """
        with self.store.transaction() as db:
            rows = list(db.query("SELECT * FROM call_records WHERE ended IS NULL"))
            for row in rows:
                path = json.loads(row["ivr_path"] or "[]")
                row.update(ended=row["updated"] or row["started"], disposition="interrupted",
                           ended_in=path[-1] if path else "")
                db["call_records"].update(row["id"], {k: row[k] for k in ("ended", "disposition", "ended_in")})
                self.store.enqueue(db, "call_record", f"call-{row['id']}", row)
        for row in rows:
            log.warning("line %d: call %s was interrupted: the node stopped during it (%s)", row["line"],
                        row["id"], f"in {row['ended_in']}" if row["ended_in"] else
                        "answered" if row["answered"] else "ringing")
        return [row["id"] for row in rows]
