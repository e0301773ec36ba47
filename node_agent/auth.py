"""Local caller authentication: accounts with slow salted PIN hashes, and the branch's rules.

* Three consecutive failures in one call: the call ends (``outcome.end_call``).
* More than ``max_daily_failures`` failures for one account in one calendar day: the account is
  blacklisted and an alarm raised; it is refused, even with the right PIN, until an admin
  clears the alarm.
* An unknown account is indistinguishable to a caller from a real one with a wrong PIN: the same
  work, the same answers, and the same lockout (its failures are counted per day under its keyed
  hash, and past the limit it is "blacklisted" like a real account, with an alarm that says
  "unknown account": an attack signal).
* Digits that name no account (a PIN keyed at the account prompt, account and PIN run together)
  are kept only as a keyed hash (:mod:`.keyed_hash`), never in clear.
* A failure is committed to disk (and queued for HQ) before :meth:`Authenticator.verify`
  returns, so pulling the plug cannot reset the count.

PINs appear nowhere: not in the database, a log line, an exception or an outcome; nor do
digits keyed as an account that names none.

:func:`collect_and_check` is the caller's side of these rules: ask for account and PIN, check
them, tell the caller the result, until verified, locked or out of tries. The IVR's
``authenticate`` node and the agent's secure capture (:mod:`.verify`) both run it, each with
its own :class:`KeyPad` (how prompts are played and keys read), so the two cannot drift apart.
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
import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .keyed_hash import KeyedHash, is_ref
from .store import Store, now_utc

log = logging.getLogger("node_agent.auth")

KDF = "scrypt:n=16384,r=8,p=1"  # ~45 ms a verify on the appliance: slow for a guesser, fine for a caller
_KDF_RE = re.compile(r"scrypt:n=(\d+),r=(\d+),p=(\d+)$")
ACCOUNT_RE = re.compile(r"^[0-9]{4,20}$")
PIN_RE = re.compile(r"^[0-9]{4,12}$")
CLASS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")  # an account class as HQ's [priorities] classes names it


def class_problem(account_class: str) -> str | None:
    """What is wrong with an account class (empty: none), or None (shared with the CSV import)."""
    if account_class and not CLASS_RE.match(account_class):
        return (f"the class {account_class[:40]!r} must be 1 to 32 lower-case letters, digits, '-' or '_', "
                "starting with a letter (as in HQ's [priorities] classes)")
    return None
CALL_FAILURE_LIMIT = 3
FIELDS = ("account", "pin")  # what a caller keys to authenticate, in the order asked
MAX_DIGITS = {"account": 20, "pin": 12}  # an entry ends at this many digits (the longest account id / PIN)


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
    account: str  # the account id if it exists, else the keyed hash of what was keyed (never those digits)
    call_failures: int  # consecutive failures in this call so far
    end_call: bool  # the caller has used up their tries on this call
    blacklisted_now: bool = False  # this failure put the account on the blacklist
    account_class: str = ""  # the account's class, only when verified (HQ's queue may rank it)


class Authenticator:
    """The branch's accounts and rules over one store.

    ``keyed_hash`` defaults to the node's key in the store's directory (made on first use);
    ``kdf`` is the PIN hash for new accounts and for the stand-in work done for unknown ones.
    """

    def __init__(self, store: Store, *, max_daily_failures: int = 5,
                 today: Callable[[], str] = lambda: datetime.now().date().isoformat(),
                 keyed_hash: KeyedHash | None = None, kdf: str = KDF) -> None:
        if max_daily_failures < 1:
            raise ValueError("max_daily_failures must be at least 1")
        self.store = store
        self.max_daily_failures = max_daily_failures
        self.today = today
        self.keyed_hash = keyed_hash or KeyedHash.for_data_dir(store.path.parent)
        self.kdf = kdf
        self._dummy_salt = os.urandom(16)
        self.verify_ms: deque[float] = deque(maxlen=10000)  # for the benchmark

    # -- administration ------------------------------------------------------------------------------
    def add_account(self, account: str, pin: str, *, name: str = "", account_class: str = "",
                    replace: bool = False) -> None:
        if not ACCOUNT_RE.match(account):
            raise AuthError(f"account {account!r} must be 4 to 20 digits")
        if not PIN_RE.match(pin):
            raise AuthError(f"the PIN for account {account} must be 4 to 12 digits")
        if problem := class_problem(account_class):
            raise AuthError(f"account {account}: {problem}")
        salt = os.urandom(16)
        row = {"id": account, "name": name, "salt": salt, "pin_hash": _hash(pin, salt, self.kdf), "kdf": self.kdf,
               "disabled": 0, "created": now_utc(), "account_class": account_class}
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
        rows = self.store.db.query("SELECT id, name, account_class, disabled, created FROM accounts ORDER BY id")
        black = self.blacklisted_accounts()
        return [{**r, "disabled": bool(r["disabled"]), "blacklisted": r["id"] in black} for r in rows]

    def blacklisted_accounts(self) -> set[str]:
        """Account ids and keyed hashes (of unknown ids) refused until their alarm is cleared."""
        return {r["account"] for r in self.store.db.query(
            "SELECT account FROM alarms WHERE kind = 'blacklist' AND cleared_at IS NULL")}

    def alarms(self, include_cleared: bool = False) -> list[dict]:
        """Alarms, oldest first; ``known`` is False where ``account`` is the keyed hash of digits naming none."""
        where = "" if include_cleared else "WHERE cleared_at IS NULL"
        return [{**r, "known": not is_ref(r["account"] or "")}
                for r in self.store.db.query(f"SELECT * FROM alarms {where} ORDER BY id")]

    def clear_alarm(self, alarm_id: int, by: str) -> dict:
        with self.store.transaction() as db:
            rows = list(db.query("SELECT * FROM alarms WHERE id = ?", [alarm_id]))
            if not rows:
                raise AuthError(f"no alarm {alarm_id} (see `nodectl alarms list`)")
            alarm = rows[0]
            if alarm["cleared_at"]:
                raise AuthError(f"alarm {alarm_id} was already cleared at {alarm['cleared_at']} by {alarm['cleared_by']}")
            stamp = now_utc()
            last = db.execute("SELECT COALESCE(MAX(id), 0) FROM auth_events").fetchone()[0]
            db["alarms"].update(alarm_id, {"cleared_at": stamp, "cleared_by": by, "cleared_event": last})
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
        row = self.store.db.execute("SELECT salt, pin_hash, kdf, disabled, account_class FROM accounts WHERE id = ?",
                                    [account]).fetchone()
        ref = self.keyed_hash.ref(account)  # computed either way: the same work for both
        # digits that cannot be an account id (none, too short) tell a caller nothing by being refused:
        # they are never blacklisted, so callers who key nothing do not lock out every such caller
        countable = ACCOUNT_RE.match(account) is not None
        if row is None:
            # the same work as for a real account, then the same answers as a wrong PIN, counted
            # under the keyed hash: the digits may be a PIN keyed at the wrong prompt
            _hash(pin, self._dummy_salt, self.kdf)
            good, key = False, ref
        else:
            salt, want, kdf, disabled, _cls = row
            good = hmac.compare_digest(_hash(pin, salt, kdf), want) and not disabled
            key = account
        del pin, account
        if self._blacklisted(self.store.db, key):
            return self._record(key, row is not None, countable, call_id, line, "blacklisted")
        out = self._record(key, row is not None, countable, call_id, line, "verified" if good else "wrong")
        return dataclasses.replace(out, account_class=row[4]) if good else out

    @staticmethod
    def _blacklisted(db, key: str) -> bool:
        return db.execute("SELECT 1 FROM alarms WHERE kind = 'blacklist' AND account = ? AND cleared_at IS NULL",
                          [key]).fetchone() is not None

    def _record(self, key: str, known: bool, countable: bool, call_id: str, line: int, result: str) -> Outcome:
        """Commit one attempt under ``key`` (the account id if it exists, else its keyed hash)."""
        day = self.today()
        with self.store.transaction() as db:
            db["auth_events"].insert({"at": now_utc(), "day": day, "account": key, "known": int(known),
                                      "call_id": call_id, "line": line, "outcome": result})
            event_id = db.execute("SELECT last_insert_rowid()").fetchone()[0]
            self.store.enqueue(db, "auth_event", f"auth-{event_id}",
                               {"account": key, "known": known, "call_id": call_id, "line": line,
                                "outcome": result, "day": day})
            call_failures = self._call_failures(db, call_id)
            blacklisted_now = False
            if (result == "wrong" and countable and self._daily_failures(db, key, day) > self.max_daily_failures
                    and not self._blacklisted(db, key)):
                stamp = now_utc()
                what = "" if known else "unknown account, an attack signal: "
                db["alarms"].insert({"kind": "blacklist", "account": key, "raised_at": stamp,
                                     "detail": f"{what}more than {self.max_daily_failures} PIN failures on {day}",
                                     "cleared_at": None, "cleared_by": None})
                alarm_id = db.execute("SELECT last_insert_rowid()").fetchone()[0]
                self.store.enqueue(db, "alarm", f"alarm-{alarm_id}",
                                   {"alarm": alarm_id, "kind": "blacklist", "account": key, "known": known,
                                    "raised_at": stamp})
                blacklisted_now = True
        if blacklisted_now:
            log.warning("%s %s blacklisted: more than %d PIN failures today", "account" if known else "unknown account",
                        key, self.max_daily_failures)
        return Outcome(result, key, call_failures, end_call=call_failures >= CALL_FAILURE_LIMIT,
                       blacklisted_now=blacklisted_now)

    def call_failures(self, call_id: str) -> int:
        """Consecutive failures at the end of this call's attempts (the IVR's and captures' alike)."""
        return self._call_failures(self.store.db, call_id)

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
        """Today's failures for ``account`` (an id or a keyed hash) since its last blacklist alarm was cleared:
        the attempts after the last one that clear covered (by order, not by timestamp)."""
        after = db.execute("SELECT COALESCE(MAX(cleared_event), 0) FROM alarms WHERE kind = 'blacklist' "
                           "AND account = ?", [account]).fetchone()[0]
        return db.execute("SELECT COUNT(*) FROM auth_events WHERE account = ? AND day = ? AND outcome = 'wrong' "
                          "AND id > ?", [account, day, after]).fetchone()[0]


# -- the caller's side: ask, check, answer ------------------------------------------------------------
@dataclass(frozen=True)
class AuthPrompts:
    """The prompt names of an authentication (those of an ``authenticate`` flow node)."""

    account: str
    pin: str
    wrong: str
    blacklisted: str
    goodbye: str

    @classmethod
    def from_node(cls, node) -> AuthPrompts:
        return cls(node["account_prompt"], node["pin_prompt"], node["wrong_prompt"], node["blacklisted_prompt"],
                   node["goodbye_prompt"])

    def ask(self, field: str) -> str:
        return self.account if field == "account" else self.pin


class AskAgain(Exception):
    """Raised by a :class:`KeyPad` while a field is asked: start again from ``field`` (that field
    and those after it are asked again; what was keyed in them is dropped)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"ask again from {field}")
        self.field = field


class KeyPad(Protocol):
    """How :func:`collect_and_check` talks to the caller."""

    async def ask(self, field: str, prompt: str, max_digits: int) -> str | None:
        """Play ``prompt`` (keys may interrupt it), then the digits keyed up to '#', ``max_digits``
        or a pause; None if nothing was keyed. May raise :class:`AskAgain`."""

    async def tell(self, prompts: list[str]) -> None:
        """Play ``prompts`` to their end; keys pressed meanwhile are dropped."""

    def discard(self) -> None:
        """Drop keys typed ahead (after a refusal they are not meant for the next question)."""


async def collect_and_check(auth: Authenticator, pad: KeyPad, prompts: AuthPrompts, *, call_id: str, line: int,
                            fields: tuple[str, ...] = FIELDS, known: dict[str, str] | None = None,
                            goodbye: bool = True,
                            on_attempt: Callable[[str, Outcome], None] | None = None) -> tuple[str, Outcome]:
    """Ask for ``fields`` (``known`` gives the others, e.g. the account of a caller asked only for
    the PIN), check, and tell the caller, until the caller is verified, the account is
    blacklisted, or the call has used up its tries. Returns ("verified" | "locked" | "failed",
    the last outcome). ``on_attempt(result, outcome)`` follows each check ("verified", "wrong",
    "blacklisted") and the end of the tries ("failed"). ``goodbye``: whether the goodbye prompt
    ends a refusal (the IVR's call ends there; a capture may hand the caller back to its agent)."""
    while True:
        entered = dict(known or {})
        i = 0
        while i < len(fields):
            field = fields[i]
            try:
                entered[field] = await pad.ask(field, prompts.ask(field), MAX_DIGITS[field])
            except AskAgain as again:
                pad.discard()
                i = min(i, fields.index(again.field)) if again.field in fields else i
                for f in fields[i:]:
                    entered.pop(f, None)
                continue
            i += 1
        # an empty or timed-out entry is checked like any other: same prompts, same count
        outcome = await auth.verify(entered.get("account") or "", entered.get("pin") or "", call_id=call_id,
                                    line=line)
        del entered  # keyed digits go no further than the Authenticator
        if on_attempt is not None:
            on_attempt(outcome.result, outcome)
        if outcome.result == "verified":
            return "verified", outcome
        pad.discard()
        if outcome.result == "blacklisted":
            await pad.tell([prompts.blacklisted] + ([prompts.goodbye] if goodbye else []))
            return "locked", outcome
        await pad.tell([prompts.wrong])
        if outcome.end_call:
            if on_attempt is not None:
                on_attempt("failed", outcome)
            if goodbye:
                await pad.tell([prompts.goodbye])
            return "failed", outcome
