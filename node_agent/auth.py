"""Local caller authentication: accounts with slow salted PIN hashes, and the branch's rules.

* Three consecutive failures in one call: the call ends (``outcome.end_call``).
* More than ``max_daily_failures`` failures for one account in one calendar day: the account is
  blacklisted and an alarm raised; it is refused, even with the right PIN, until an admin
  clears the alarm.
* An unknown account costs the same work and gives the same answer as a wrong PIN.
* A failure is committed to disk (and queued for HQ) before :meth:`Authenticator.verify`
  returns, so pulling the plug cannot reset the count.

PINs appear nowhere: not in the database, a log line, an exception or an outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .store import Store, now_utc

log = logging.getLogger("node_agent.auth")

KDF = "scrypt:n=16384,r=8,p=1"  # ~45 ms a verify on the appliance: slow for a guesser, fine for a caller
_KDF_RE = re.compile(r"scrypt:n=(\d+),r=(\d+),p=(\d+)$")
ACCOUNT_RE = re.compile(r"^[0-9]{4,20}$")
PIN_RE = re.compile(r"^[0-9]{4,12}$")
CALL_FAILURE_LIMIT = 3


class AuthError(ValueError):
    """A bad account or PIN given by an admin (never by a caller); says what is wrong."""


def _hash(pin: str, salt: bytes, kdf: str) -> bytes:
    m = _KDF_RE.match(kdf)
    if not m:
        raise AuthError(f"unknown PIN hash scheme {kdf!r}")
    n, r, p = (int(x) for x in m.groups())
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * 1024 * 1024, dklen=32)


@dataclass(frozen=True)
class Outcome:
    """What happened; ``result`` is verified, wrong, or blacklisted (never says whether the account exists)."""

    result: str
    account: str
    call_failures: int  # consecutive failures in this call so far
    end_call: bool  # the caller has used up their tries on this call
    blacklisted_now: bool = False  # this failure put the account on the blacklist


class Authenticator:
    def __init__(self, store: Store, *, max_daily_failures: int = 5,
                 today: Callable[[], str] = lambda: datetime.now().date().isoformat()) -> None:
        if max_daily_failures < 1:
            raise ValueError("max_daily_failures must be at least 1")
        self.store = store
        self.max_daily_failures = max_daily_failures
        self.today = today
        self._dummy_salt = os.urandom(16)
        self.verify_ms: deque[float] = deque(maxlen=10000)  # for the benchmark

    # -- administration ------------------------------------------------------------------------------
    def add_account(self, account: str, pin: str, *, name: str = "", replace: bool = False) -> None:
        if not ACCOUNT_RE.match(account):
            raise AuthError(f"account {account!r} must be 4 to 20 digits")
        if not PIN_RE.match(pin):
            raise AuthError(f"the PIN for account {account} must be 4 to 12 digits")
        salt = os.urandom(16)
        row = {"id": account, "name": name, "salt": salt, "pin_hash": _hash(pin, salt, KDF), "kdf": KDF,
               "disabled": 0, "created": now_utc()}
        with self.store.transaction() as db:
            if not replace and db["accounts"].count_where("id = ?", [account]):
                raise AuthError(f"account {account} exists already (use replace to set a new PIN)")
            db["accounts"].insert(row, replace=True)

    def set_disabled(self, account: str, disabled: bool = True) -> None:
        with self.store.transaction() as db:
            if not db["accounts"].count_where("id = ?", [account]):
                raise AuthError(f"no account {account}")
            db["accounts"].update(account, {"disabled": 1 if disabled else 0})

    def accounts(self) -> list[dict]:
        rows = self.store.db.query("SELECT id, name, disabled, created FROM accounts ORDER BY id")
        black = self.blacklisted_accounts()
        return [{**r, "disabled": bool(r["disabled"]), "blacklisted": r["id"] in black} for r in rows]

    def blacklisted_accounts(self) -> set[str]:
        return {r["account"] for r in self.store.db.query(
            "SELECT account FROM alarms WHERE kind = 'blacklist' AND cleared_at IS NULL")}

    def alarms(self, include_cleared: bool = False) -> list[dict]:
        where = "" if include_cleared else "WHERE cleared_at IS NULL"
        return list(self.store.db.query(f"SELECT * FROM alarms {where} ORDER BY id"))

    def clear_alarm(self, alarm_id: int, by: str) -> dict:
        with self.store.transaction() as db:
            rows = list(db.query("SELECT * FROM alarms WHERE id = ?", [alarm_id]))
            if not rows:
                raise AuthError(f"no alarm {alarm_id} (see `nodectl alarms list`)")
            alarm = rows[0]
            if alarm["cleared_at"]:
                raise AuthError(f"alarm {alarm_id} was already cleared at {alarm['cleared_at']} by {alarm['cleared_by']}")
            stamp = now_utc()
            db["alarms"].update(alarm_id, {"cleared_at": stamp, "cleared_by": by})
            self.store.enqueue(db, "alarm_cleared", f"alarm-cleared-{alarm_id}",
                               {"alarm": alarm_id, "account": alarm["account"], "cleared_at": stamp, "by": by})
        log.info("alarm %d (%s, account %s) cleared by %s", alarm_id, alarm["kind"], alarm["account"], by)
        return {**alarm, "cleared_at": stamp, "cleared_by": by}

    # -- callers -------------------------------------------------------------------------------------
    async def verify(self, account: str, pin: str, *, call_id: str, line: int = 0) -> Outcome:
        """Check a caller's PIN; the slow hash runs in a worker thread, off the event loop."""
        t = time.monotonic()
        out = await asyncio.to_thread(self.verify_sync, account, pin, call_id=call_id, line=line)
        self.verify_ms.append((time.monotonic() - t) * 1000)
        return out

    def verify_sync(self, account: str, pin: str, *, call_id: str, line: int = 0) -> Outcome:
        row = self.store.db.execute("SELECT salt, pin_hash, kdf, disabled FROM accounts WHERE id = ?",
                                    [account]).fetchone()
        if row is None:
            # the same work as for a real account, then the same answer as a wrong PIN
            _hash(pin, self._dummy_salt, KDF)
            good, known = False, False
        else:
            salt, want, kdf, disabled = row
            good = hmac.compare_digest(_hash(pin, salt, kdf), want) and not disabled
            known = True
        if known and account in self.blacklisted_accounts():
            return self._record(account, known, call_id, line, "blacklisted")
        return self._record(account, known, call_id, line, "verified" if good else "wrong")

    def _record(self, account: str, known: bool, call_id: str, line: int, result: str) -> Outcome:
        day = self.today()
        with self.store.transaction() as db:
            db["auth_events"].insert({"at": now_utc(), "day": day, "account": account, "known": int(known),
                                      "call_id": call_id, "line": line, "outcome": result})
            event_id = db.execute("SELECT last_insert_rowid()").fetchone()[0]
            self.store.enqueue(db, "auth_event", f"auth-{event_id}",
                               {"account": account, "call_id": call_id, "line": line, "outcome": result,
                                "day": day})
            call_failures = self._call_failures(db, call_id)
            blacklisted_now = False
            if result == "wrong" and known and self._daily_failures(db, account, day) > self.max_daily_failures:
                if not db.execute("SELECT 1 FROM alarms WHERE kind = 'blacklist' AND account = ? AND "
                                  "cleared_at IS NULL", [account]).fetchone():
                    stamp = now_utc()
                    db["alarms"].insert({"kind": "blacklist", "account": account, "raised_at": stamp,
                                         "detail": f"more than {self.max_daily_failures} PIN failures on {day}",
                                         "cleared_at": None, "cleared_by": None})
                    alarm_id = db.execute("SELECT last_insert_rowid()").fetchone()[0]
                    self.store.enqueue(db, "alarm", f"alarm-{alarm_id}",
                                       {"alarm": alarm_id, "kind": "blacklist", "account": account,
                                        "raised_at": stamp})
                    blacklisted_now = True
        if blacklisted_now:
            log.warning("account %s blacklisted: more than %d PIN failures today", account, self.max_daily_failures)
        return Outcome(result, account, call_failures, end_call=call_failures >= CALL_FAILURE_LIMIT,
                       blacklisted_now=blacklisted_now)

    @staticmethod
    def _call_failures(db, call_id: str) -> int:
        """Consecutive failures at the end of this call's attempts."""
        n = 0
        for (outcome,) in db.execute("SELECT outcome FROM auth_events WHERE call_id = ? ORDER BY id DESC",
                                     [call_id]).fetchall():
            if outcome == "verified":
                break
            n += 1
        return n

    @staticmethod
    def _daily_failures(db, account: str, day: str) -> int:
        """Today's failures for ``account`` since its last blacklist alarm was cleared."""
        cleared = db.execute("SELECT MAX(cleared_at) FROM alarms WHERE kind = 'blacklist' AND account = ?",
                             [account]).fetchone()[0]
        return db.execute("SELECT COUNT(*) FROM auth_events WHERE account = ? AND day = ? AND outcome = 'wrong' "
                          "AND at > ?", [account, day, cleared or ""]).fetchone()[0]
