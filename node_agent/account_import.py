"""Caller accounts from a CSV file (``account,pin[,name][,class]``), for ``nodectl accounts import``.

Checking the file is one linear pass: UTF-8 only (with or without a BOM), every row reported by
its line in the file as a spreadsheet shows it (a quoted line break inside a field counts), names
kept whole (a U+2028 in a name is part of the name, not a line break).

Hashing the PINs is slow by design (scrypt, see :mod:`node_agent.auth`), so it runs in one worker
process per core. An account that exists already is only changed with ``replace``; one whose PIN,
name and class are as in the file is counted as already imported, which is what makes a rerun of an
interrupted import finish the job instead of refusing what the first run did.

Without ``all_or_nothing`` the rows are committed in batches as they are hashed: an import stopped
halfway (Ctrl-C, kill, power cut) leaves whole rows, and the rest not started. With it, everything
is committed in one transaction at the end, or nothing is.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hmac
import io
import multiprocessing
import os
import signal
import threading
import time
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .auth import ACCOUNT_RE, KDF, PIN_RE, _hash, class_problem
from .store import Store, now_utc

MAX_FILE_BYTES = 256 * 1024 * 1024  # ~6 million rows; a bigger file is not an accounts list
MAX_NAME_CHARS = 100
COLUMNS = ("account", "pin", "name", "class")
BATCH_ROWS = 256  # rows per transaction (default mode): a batch is whole or absent after a crash
BATCH_SECONDS = 1.0  # ... and at most this much hashing is lost by an interruption
SMALL = 8  # rows per worker process below which starting one does not pay


class CsvError(ValueError):
    """The file cannot be read as an accounts CSV at all; the message names the file and place."""


@dataclass(frozen=True)
class Row:
    line: int  # the row's first line in the file
    account: str
    pin: str = field(repr=False)
    name: str
    account_class: str = ""


@dataclass
class Checked:
    rows: list[Row]
    errors: list[str]  # "FILE:LINE: what is wrong", in file order


@dataclass
class Result:
    added: int = 0
    replaced: int = 0
    unchanged: int = 0  # exist already with this PIN and name (a rerun)
    refused: list[str] = field(default_factory=list)  # "FILE:LINE: account ... exists already ..."
    committed: int = 0  # rows written so far (what an interruption leaves)


def name_problem(name: str) -> str | None:
    """What is wrong with an account holder's name, or None (shared with ``accounts add``)."""
    if len(name) > MAX_NAME_CHARS:
        return f"the name is {len(name)} characters long: at most {MAX_NAME_CHARS}"
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs", "Cn"):
            return f"the name contains the control character U+{ord(ch):04X} (a line break?): remove it"
    return None


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """(line, column) of a byte offset, both from 1."""
    return data.count(b"\n", 0, offset) + 1, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


def decode(path: Path, data: bytes) -> str:
    """The text of a UTF-8 CSV (a BOM is dropped); CsvError saying what the file is otherwise."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise CsvError(f"{path}: the file is UTF-32: save it as UTF-8 (in a spreadsheet: CSV UTF-8)")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CsvError(f"{path}: the file is UTF-16: save it as UTF-8 (in a spreadsheet: CSV UTF-8; "
                       "or iconv -f UTF-16 -t UTF-8)")
    nul = data.find(b"\0")
    if nul >= 0:
        line, col = _position(data, nul)
        raise CsvError(f"{path}:{line}: a NUL byte at column {col}: this is a binary or UTF-16 file, not a "
                       "CSV text: export the accounts as CSV UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, col = _position(data, exc.start)
        raise CsvError(f"{path}:{line}: byte 0x{data[exc.start]:02x} at column {col} is not UTF-8 (a Latin-1 "
                       "or other legacy file?): save it as UTF-8 (in a spreadsheet: CSV UTF-8; or "
                       "iconv -f LATIN1 -t UTF-8)") from None


def read_rows(path: Path) -> Checked:
    """Every row of the file checked, in one pass; CsvError if the file as a whole is unusable."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CsvError(f"{path}: {size} bytes is too large for an accounts file (at most "
                           f"{MAX_FILE_BYTES // 2**20} MiB): split it")
        data = path.read_bytes()
    except OSError as exc:
        raise CsvError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    return check_text(path, decode(path, data))


def check_text(path: Path, text: str) -> Checked:
    # newline="": only \n, \r\n and \r end a line (U+2028 and friends do not), and the csv module
    # sees quoted line breaks; line_num counts the file's lines, so a row starts one after the last
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[Row] = []
    errors: list[str] = []
    first_line: dict[str, int] = {}
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise CsvError(f"{path}:1: the header is not a CSV row ({exc})") from None
    names = [h.strip().lower() for h in header or []]
    if "account" not in names or "pin" not in names:
        raise CsvError(f"{path}:1: the first line must name the columns account,pin[,name][,class]")
    unknown = [h for h in names if h not in COLUMNS]
    twice = sorted({h for h in names if names.count(h) > 1})
    if unknown or twice:
        what = f"unknown column(s) {', '.join(repr(h[:30]) for h in unknown)}" if unknown else \
            f"column(s) {', '.join(twice)} named twice"
        raise CsvError(f"{path}:1: {what}: the columns are account,pin[,name][,class]")
    ia, ip, iname = names.index("account"), names.index("pin"), names.index("name") if "name" in names else None
    icls = names.index("class") if "class" in names else None
    last = reader.line_num
    while True:
        line = last + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # the csv module cannot go on after a broken row (an unclosed quote swallows the rest):
            # the file as a whole is refused, so no row after this one goes missing unnoticed
            raise CsvError(f"{path}:{line}: not a CSV row ({exc}): fix this row (its quotes, or a field "
                           "that is far too long) and import again; nothing was imported") from None
        last = reader.line_num
        if not any(f.strip() for f in fields):
            continue  # a blank line
        if len(fields) > len(names):
            errors.append(f"{path}:{line}: {len(fields)} fields, but the header names {len(names)}: "
                          "is a name with a comma missing its quotes?")
            continue
        fields += [""] * (len(names) - len(fields))
        acct, pin = fields[ia].strip(), fields[ip].strip()
        name = fields[iname].strip() if iname is not None else ""
        cls = fields[icls].strip() if icls is not None else ""
        if not ACCOUNT_RE.fullmatch(acct):
            shown = repr(acct) if len(acct) <= 24 else repr(acct[:24]) + "…"
            errors.append(f"{path}:{line}: account {shown} must be 4 to 20 digits")
        elif not PIN_RE.fullmatch(pin):
            errors.append(f"{path}:{line}: account {acct}: the PIN must be 4 to 12 digits")
        elif problem := name_problem(name) or class_problem(cls):
            errors.append(f"{path}:{line}: account {acct}: {problem}")
        elif acct in first_line:
            errors.append(f"{path}:{line}: account {acct} appears twice (first on line {first_line[acct]})")
        else:
            first_line[acct] = line
            rows.append(Row(line, acct, pin, name, cls))
    return Checked(rows, errors)


# -- hashing, in worker processes ---------------------------------------------------------------------
def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: the parent decides what an interruption means
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def orphaned() -> None:  # a parent killed with -9 cannot stop its workers: they notice and leave
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()


def _work(job: tuple) -> tuple[bool, bytes | None, bytes | None]:
    """(same PIN as stored, new salt, new hash): a new account gets a hash; an existing one is checked
    against its stored hash first, and hashed anew only when it is to be replaced with another PIN."""
    pin, stored, replace = job
    if stored is not None:
        salt, want, kdf = stored
        if hmac.compare_digest(_hash(pin, salt, kdf), want):
            return True, None, None
        if not replace:
            return False, None, None
    salt = os.urandom(16)
    return False, salt, _hash(pin, salt, KDF)


def cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class Progress:
    """``hashing PINs: 1,234 of 100,000 (1%), about 35 min left`` on a terminal, rewritten in place;
    nothing on anything else (a log file must not fill with carriage returns)."""

    def __init__(self, total: int, stream, *, every: float = 0.5) -> None:
        self.total, self.stream, self.every = total, stream, every
        self.on = bool(getattr(stream, "isatty", lambda: False)())
        self.t0 = self.shown = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.on or (now - self.shown < self.every and done < self.total):
            return
        self.shown = now
        left = (now - self.t0) / done * (self.total - done) if done else 0.0
        eta = f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
        self.stream.write(f"\rhashing PINs: {done:,} of {self.total:,} ({100 * done // max(1, self.total)}%), "
                          f"about {eta} left   ")
        self.stream.flush()

    def close(self) -> None:
        if self.on:
            self.stream.write("\n")
            self.stream.flush()


def import_rows(store: Store, rows: list[Row], path: Path, *, replace: bool, all_or_nothing: bool,
                progress: Progress | None = None, workers: int | None = None,
                result: Result | None = None) -> Result:
    """Hash and store ``rows`` (checked by :func:`read_rows`). ``result`` is filled in as rows are
    committed, so a caller interrupted (KeyboardInterrupt) can still say how far it got."""
    out = result if result is not None else Result()
    stored = {r["id"]: r for r in store.db.query("SELECT id, name, account_class, salt, pin_hash, kdf FROM accounts")}
    jobs = [(r.pin, (stored[r.account]["salt"], stored[r.account]["pin_hash"], stored[r.account]["kdf"])
             if r.account in stored else None, replace) for r in rows]
    hashed: list[tuple[Row, tuple]] = []
    last_commit = time.monotonic()
    n = min(workers or cores(), max(1, len(jobs) // SMALL))
    with contextlib.ExitStack() as stack:
        if n > 1:  # (a few rows are hashed here: starting worker processes would cost more than it saves)
            ctx = multiprocessing.get_context("spawn")  # workers start clean: no copy of our database connection
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init))
            stack.callback(pool.shutdown, wait=False, cancel_futures=True)  # an interruption stops them at once
            results = pool.map(_work, jobs, chunksize=4)
        else:
            results = map(_work, jobs)
        if progress:
            stack.callback(progress.close)
        for done, (row, res) in enumerate(zip(rows, results), start=1):
            hashed.append((row, res))
            if progress:
                progress.update(done)
            if not all_or_nothing and (len(hashed) >= BATCH_ROWS or time.monotonic() - last_commit >= BATCH_SECONDS):
                _commit(store, _decide(hashed, stored, path, replace), path, out)
                hashed.clear()
                last_commit = time.monotonic()
    plan = _decide(hashed, stored, path, replace)
    if all_or_nothing and plan.refused:
        out.refused += plan.refused
        return out
    _commit(store, plan, path, out)
    return out


@dataclass
class _Plan:
    inserts: list[dict] = field(default_factory=list)
    updates: list[tuple[str, dict]] = field(default_factory=list)
    unchanged: int = 0
    refused: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # account -> line, for messages


def _decide(hashed: list[tuple[Row, tuple]], stored: dict, path: Path, replace: bool) -> _Plan:
    """What each hashed row does: a new account, a change (only with ``replace``), nothing, or a refusal."""
    plan = _Plan()
    for row, (same, salt, pin_hash) in hashed:
        plan.lines[row.account] = row.line
        old = stored.get(row.account)
        if old is None:
            plan.inserts.append({"id": row.account, "name": row.name, "account_class": row.account_class,
                                 "salt": salt, "pin_hash": pin_hash, "kdf": KDF, "disabled": 0, "created": now_utc()})
            continue
        name = row.name or old["name"]  # an empty name (or class) in the file keeps the account's
        cls = row.account_class or old["account_class"]
        if same and name == old["name"] and cls == old["account_class"]:
            plan.unchanged += 1
        elif not replace:
            what = ("another PIN" if not same else f"another name ({old['name'] or ''!r})" if name != old["name"]
                    else f"another class ({old['account_class'] or ''!r})")
            plan.refused.append(f"{path}:{row.line}: account {row.account} exists already with {what}: "
                                "not changed (use --replace to set it from this file)")
        else:  # keeps disabled and created: a new PIN does not re-enable a disabled account
            change = {"name": name, "account_class": cls}
            if not same:
                change |= {"salt": salt, "pin_hash": pin_hash, "kdf": KDF}
            plan.updates.append((row.account, change))
    return plan


def _commit(store: Store, plan: _Plan, path: Path, out: Result) -> None:
    """One batch in one transaction: after a crash it is there whole, or not at all."""
    with store.transaction() as db:
        # someone may have added one of these meanwhile (`accounts add`): refuse it rather than overwrite
        ids = [r["id"] for r in plan.inserts]
        taken: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            taken |= {r[0] for r in db.execute(
                f"SELECT id FROM accounts WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()}
        inserts = [r for r in plan.inserts if r["id"] not in taken]
        db["accounts"].insert_all(inserts)
        for acct, change in plan.updates:
            db["accounts"].update(acct, change)
    out.added += len(inserts)
    out.replaced += len(plan.updates)
    out.unchanged += plan.unchanged
    out.refused += plan.refused + [
        f"{path}:{plan.lines[a]}: account {a} was added by someone else during the import: not changed "
        "(rerun to see how it differs)" for a in sorted(taken)]
    out.committed += len(inserts) + len(plan.updates)


__all__ = ["Checked", "CsvError", "Progress", "Result", "Row", "cores", "decode", "import_rows", "name_problem",
           "read_rows"]
