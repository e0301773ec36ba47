"""Local authentication and its store: the branch's rules, durability, and no PIN anywhere."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from node_agent.auth import Authenticator, AuthError
from node_agent.store import MIGRATIONS, Store, StoreError
from tests.conftest import ROOT

PIN = "482913"


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "node.db")
    yield s
    s.close()


@pytest.fixture
def auth(store):
    a = Authenticator(store, max_daily_failures=5, today=lambda: "2026-11-23")
    a.add_account("6222001234", PIN, name="ZHAO LEI")
    return a


async def test_right_pin_verifies(auth):
    out = await auth.verify("6222001234", PIN, call_id="c1", line=1)
    assert out.result == "verified" and not out.end_call and out.call_failures == 0


async def test_a_verified_callers_outcome_carries_the_accounts_class_a_wrong_pin_none(auth):
    auth.add_account("6222009999", PIN, account_class="vip")
    assert (await auth.verify("6222009999", PIN, call_id="c1", line=1)).account_class == "vip"
    assert (await auth.verify("6222001234", PIN, call_id="c2", line=1)).account_class == ""  # it has none
    wrong = await auth.verify("6222009999", "000000", call_id="c3", line=1)
    assert (wrong.result, wrong.account_class) == ("wrong", "")  # not even to HQ: the caller did not verify
    with pytest.raises(AuthError, match="the class 'VIP!' must be 1 to 32 lower-case letters"):
        auth.add_account("6222008888", PIN, account_class="VIP!")
    assert {r["id"]: r["account_class"] for r in auth.accounts()} == {"6222001234": "", "6222009999": "vip"}


def test_accounts_of_an_older_database_get_no_class(tmp_path):
    import sqlite_utils

    path = tmp_path / "node.db"
    db = sqlite_utils.Database(path)
    for migrate in MIGRATIONS[:6]:  # the schema before account classes, with an account in it
        migrate(db)
    db.execute("PRAGMA user_version=6")
    db["accounts"].insert({"id": "6222001234", "name": "", "salt": b"s", "pin_hash": b"h", "kdf": "x",
                           "created": "2026-01-01"})
    db.conn.close()
    s = Store(path)
    try:
        assert s.schema_version == len(MIGRATIONS)
        assert s.db.execute("SELECT account_class FROM accounts").fetchall() == [("",)]
    finally:
        s.close()


async def test_three_wrong_pins_in_one_call_end_it(auth):
    results = [await auth.verify("6222001234", "000000", call_id="c1", line=1) for _ in range(3)]
    assert [r.result for r in results] == ["wrong"] * 3
    assert [r.call_failures for r in results] == [1, 2, 3]
    assert [r.end_call for r in results] == [False, False, True]


async def test_a_success_resets_the_consecutive_count(auth):
    await auth.verify("6222001234", "000000", call_id="c1")
    await auth.verify("6222001234", "000000", call_id="c1")
    assert (await auth.verify("6222001234", PIN, call_id="c1")).result == "verified"
    assert (await auth.verify("6222001234", "000000", call_id="c1")).call_failures == 1


async def test_more_than_n_failures_in_a_day_blacklist_until_the_alarm_is_cleared(auth, store):
    outs = []
    for call in range(3):  # spread over calls and lines
        for _ in range(2):
            outs.append(await auth.verify("6222001234", "111111", call_id=f"c{call}", line=call + 1))
    assert [o.blacklisted_now for o in outs] == [False] * 5 + [True]  # the 6th failure: more than 5
    alarms = auth.alarms()
    assert len(alarms) == 1 and alarms[0]["kind"] == "blacklist" and alarms[0]["account"] == "6222001234"
    assert (await auth.verify("6222001234", PIN, call_id="c9")).result == "blacklisted"
    assert auth.accounts()[0]["blacklisted"] is True
    kinds = [i.kind for i in store.outbox_pending()]
    assert kinds.count("alarm") == 1 and kinds.count("auth_event") == 7
    auth.clear_alarm(alarms[0]["id"], by="admin")
    assert (await auth.verify("6222001234", PIN, call_id="c10")).result == "verified"
    assert auth.alarms() == [] and len(auth.alarms(include_cleared=True)) == 1
    # clearing resets the day's count: it takes another n+1 failures to blacklist again
    for _ in range(5):
        assert not (await auth.verify("6222001234", "111111", call_id="c11")).blacklisted_now
    with pytest.raises(AuthError, match="already cleared"):
        auth.clear_alarm(alarms[0]["id"], by="admin")
    with pytest.raises(AuthError, match="no alarm 99"):
        auth.clear_alarm(99, by="admin")


async def test_a_new_day_starts_a_new_count(store):
    day = ["2026-11-23"]
    auth = Authenticator(store, max_daily_failures=2, today=lambda: day[0])
    auth.add_account("6222001234", PIN)
    for _ in range(2):
        await auth.verify("6222001234", "1", call_id="a")
    day[0] = "2026-11-24"
    assert not (await auth.verify("6222001234", "1", call_id="b")).blacklisted_now


async def test_unknown_account_is_indistinguishable_from_a_wrong_pin(store, monkeypatch):
    auth = Authenticator(store, max_daily_failures=1000, today=lambda: "2026-11-23")
    auth.add_account("6222001234", PIN)
    unknown = await auth.verify("6222009999", "000000", call_id="u1")
    wrong = await auth.verify("6222001234", "000000", call_id="w1")
    assert (unknown.result, unknown.call_failures, unknown.end_call) == (wrong.result, wrong.call_failures, wrong.end_call)
    # the same work: the slow hash runs for an unknown account too, with the same parameters. Counted,
    # not timed: a timing comparison on a busy 2-core machine says more about the machine
    import node_agent.auth as auth_mod

    calls = []
    real_hash = auth_mod._hash

    def counting(pin, salt, kdf):
        calls.append((len(pin), len(salt), kdf))
        return real_hash(pin, salt, kdf)

    monkeypatch.setattr(auth_mod, "_hash", counting)
    for acct in ("6222009999", "6222001234"):
        calls.clear()
        t = time.perf_counter()
        auth.verify_sync(acct, "000000", call_id=f"t-{acct}")
        elapsed = time.perf_counter() - t
        assert calls == [(6, 16, auth.kdf)], acct
        assert elapsed > 0.02  # deliberately slow, both ways


async def test_an_unknown_account_is_locked_out_exactly_like_a_real_one(store, caplog):
    auth = Authenticator(store, max_daily_failures=2, today=lambda: "2026-11-23")
    auth.add_account("6222001234", PIN)
    real = [await auth.verify("6222001234", "000000", call_id=f"r{i}") for i in range(3)]
    unknown = [await auth.verify("6222009999", "000000", call_id=f"u{i}") for i in range(3)]
    assert [(o.result, o.blacklisted_now) for o in unknown] == [(o.result, o.blacklisted_now) for o in real] \
        == [("wrong", False), ("wrong", False), ("wrong", True)]
    # locked: refused in later calls, the real account even with its PIN
    assert (await auth.verify("6222001234", PIN, call_id="r9")).result == "blacklisted"
    assert (await auth.verify("6222009999", PIN, call_id="u9")).result == "blacklisted"
    real_alarm, unknown_alarm = auth.alarms()
    assert real_alarm["account"] == "6222001234" and real_alarm["known"] is True
    assert "unknown" not in real_alarm["detail"]
    assert unknown_alarm["known"] is False and unknown_alarm["account"] == unknown[0].account
    assert unknown_alarm["account"].startswith("unknown:") and "unknown account" in unknown_alarm["detail"]
    assert "6222009999" not in repr(auth.alarms()) + caplog.text
    assert "unknown account unknown:" in caplog.text  # the warning an admin reads names the hash
    # the admin clears it: the unknown id is counted afresh, like a real one
    auth.clear_alarm(unknown_alarm["id"], by="admin")
    assert (await auth.verify("6222009999", PIN, call_id="u10")).result == "wrong"
    assert [a["id"] for a in auth.alarms()] == [real_alarm["id"]]
    # a new day starts a new count for an unknown id too
    day = ["2026-11-23"]
    fresh = Authenticator(store, max_daily_failures=2, today=lambda: day[0])
    for _ in range(2):
        await fresh.verify("6222008888", "000000", call_id="d1")
    day[0] = "2026-11-24"
    assert not (await fresh.verify("6222008888", "000000", call_id="d2")).blacklisted_now


async def test_what_cannot_be_an_account_id_is_never_blacklisted(store):
    """Callers who key nothing (or 1-3 digits) at the account prompt must not lock each other out;
    such entries cannot be accounts, so refusing them tells nothing."""
    auth = Authenticator(store, max_daily_failures=1, today=lambda: "2026-11-23")
    outs = [await auth.verify(acct, "000000", call_id=f"c{i}") for i, acct in enumerate(["", "", "", "12", "12"])]
    assert [o.result for o in outs] == ["wrong"] * 5 and auth.alarms() == []
    assert (await auth.verify("1234", "000000", call_id="x")).result == "wrong"  # 4 digits: an id, counted
    assert (await auth.verify("1234", "000000", call_id="y")).blacklisted_now


async def test_digits_that_name_no_account_are_kept_only_as_a_keyed_hash(store, tmp_path, caplog):
    """A PIN keyed at the account prompt, account and PIN run together, a wrong account: none of
    those digits is readable in the database files (WAL included), the outbox, the logs, alarms or
    the outcome; the same digits always give the same reference, so failures still correlate."""
    auth = Authenticator(store, max_daily_failures=2, today=lambda: "2026-11-23")
    auth.add_account("6222001234", PIN)
    secrets = {"pin_as_account": PIN, "run_together": "6222001234" + PIN, "wrong_account": "6222009999"}
    outs: dict[str, list] = {name: [] for name in secrets}
    with caplog.at_level(logging.DEBUG):
        for call in range(3):
            for name, digits in secrets.items():
                outs[name].append(await auth.verify(digits, PIN, call_id=f"{name}-{call}", line=1))
    assert auth.alarms() and all(not a["known"] for a in auth.alarms())  # each went past the daily limit
    refs = {name: {o.account for o in got} for name, got in outs.items()}
    assert all(len(r) == 1 for r in refs.values()), refs  # correlated: one reference per id
    assert len({next(iter(r)) for r in refs.values()}) == 3  # and a different one for each
    events = list(store.db.query("SELECT account, known FROM auth_events"))
    assert {e["account"] for e in events} == {next(iter(r)) for r in refs.values()}
    assert {e["known"] for e in events} == {0}
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("node.db"))
    assert (tmp_path / "node.db-wal").stat().st_size > 0  # read before any checkpoint folds it away
    outbox = repr(store.outbox_pending(1000))
    shown = repr(auth.alarms(include_cleared=True)) + repr(outs) + caplog.text + outbox
    assert "6222001234" in raw.decode("latin-1")  # the real account is kept in clear: the scan reads the data
    for digits in secrets.values():
        assert digits.encode() not in raw, digits
        assert digits not in shown, digits


async def test_the_pin_is_nowhere(auth, store, tmp_path, caplog):
    with caplog.at_level(logging.DEBUG):
        await auth.verify("6222001234", "777777", call_id="c1")
        await auth.verify("6222001234", PIN, call_id="c1")
        for _ in range(6):
            await auth.verify("6222001234", "777777", call_id="c2")
    store.db.execute("PRAGMA wal_checkpoint(FULL)")
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("node.db"))
    for secret in (PIN, "777777"):
        assert secret.encode() not in raw
        assert secret not in caplog.text
        assert secret not in repr(await auth.verify("6222001234", secret, call_id="c3"))


def test_admin_input_is_checked(auth):
    with pytest.raises(AuthError, match="must be 4 to 20 digits"):
        auth.add_account("12ab", "1234")
    with pytest.raises(AuthError, match="PIN for account 62220012345 must be 4 to 12 digits"):
        auth.add_account("62220012345", "12")
    with pytest.raises(AuthError, match="exists already"):
        auth.add_account("6222001234", "1234")
    with pytest.raises(AuthError, match="no account 999999"):
        auth.set_disabled("999999")


async def test_a_disabled_account_fails_like_a_wrong_pin(auth):
    auth.set_disabled("6222001234")
    assert (await auth.verify("6222001234", PIN, call_id="c")).result == "wrong"


def test_a_failure_is_on_disk_before_verify_returns(tmp_path):
    """The process is killed (-9) right after verify returns: the failure is still counted."""
    db = tmp_path / "node.db"
    code = f"""
import os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
from node_agent.auth import Authenticator
from node_agent.store import Store
a = Authenticator(Store({str(db)!r}), today=lambda: "2026-11-23")
a.add_account("6222001234", "482913")
a.verify_sync("6222001234", "000000", call_id="k1")
os.kill(os.getpid(), signal.SIGKILL)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert res.returncode == -9
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM auth_events WHERE outcome = 'wrong'").fetchone()[0] == 1
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_outbox_keeps_items_until_acknowledged(store):
    with store.transaction() as db:
        store.enqueue(db, "call_record", "call-1", {"line": 1})
        store.enqueue(db, "call_record", "call-1", {"line": 1})  # the same key: one item
        store.enqueue(db, "call_record", "call-2", {"line": 2})
    assert [i.key for i in store.outbox_pending()] == ["call-1", "call-2"]
    assert store.outbox_count() == 2
    assert store.outbox_ack(["call-1"]) == 1
    assert store.outbox_count() == 1
    assert [i.key for i in store.outbox_pending()] == ["call-2"]
    assert store.db["outbox"].count == 2  # acknowledged items are kept, marked


def test_schema_is_migrated_once_and_a_newer_one_is_refused(tmp_path):
    path = tmp_path / "node.db"
    Store(path).close()
    s = Store(path)
    assert s.schema_version == len(MIGRATIONS) and "recordings" in s.db.table_names()
    newer = len(MIGRATIONS) + 1
    s.db.execute(f"PRAGMA user_version={newer}")
    s.close()
    with pytest.raises(StoreError, match=f"schema version {newer}, newer than this software"):
        Store(path)


def test_a_damaged_database_says_what_to_do(tmp_path):
    path = tmp_path / "node.db"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match="move it aside and restore the last backup"):
        Store(path)


def test_the_store_is_safe_from_many_threads_at_once(store):
    """Worker threads verifying PINs while the loop writes call records: each thread must get a
    connection of its own (one shared connection interleaves sqlite-utils' savepoints with another
    thread's transaction: 'no such savepoint', 'cannot start a transaction within a transaction')."""
    import threading

    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(150):
                with store.transaction() as db:
                    db["call_records"].insert({"id": f"{n}-{i}", "line": n, "disposition": "completed"})
                    store.enqueue(db, "call_record", f"call-{n}-{i}", {"n": n, "i": i})
                list(store.db.query("SELECT account FROM alarms WHERE cleared_at IS NULL"))
                store.outbox_count()
        except BaseException as exc:  # noqa: BLE001 - reported below, whatever it is
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert store.db["call_records"].count == 8 * 150
    assert store.outbox_count() == 8 * 150


async def test_failures_in_the_same_millisecond_as_the_clear_are_counted_by_order(store, monkeypatch):
    # a fast guesser (or a fast machine) keys within the millisecond an admin clears the alarm:
    # the attempts after the clear count, those before do not, whatever their timestamps say
    import node_agent.auth as auth_mod

    monkeypatch.setattr(auth_mod, "now_utc", lambda: "2026-11-23T10:00:00.000+00:00")
    auth = Authenticator(store, max_daily_failures=1, today=lambda: "2026-11-23")
    auth.add_account("6222001234", PIN)
    outs = [await auth.verify("6222001234", "111111", call_id="a") for _ in range(2)]
    assert [o.blacklisted_now for o in outs] == [False, True]
    auth.clear_alarm(auth.alarms()[0]["id"], by="admin")
    outs = [await auth.verify("6222001234", "111111", call_id="b") for _ in range(2)]
    assert [o.blacklisted_now for o in outs] == [False, True]  # two more failures: more than 1 again


def test_clears_made_before_version_5_cover_the_attempts_made_until_then(tmp_path):
    import sqlite_utils

    from node_agent.store import _v1, _v2, _v3_erase_unknown_account_digits, _v4_calls_in_progress

    path = tmp_path / "node.db"
    db = sqlite_utils.Database(path)
    for m in (_v1, _v2, _v3_erase_unknown_account_digits, _v4_calls_in_progress):
        m(db)
    db.execute("PRAGMA user_version=4")
    for i, at in enumerate(["2026-11-23T10:00:00.000", "2026-11-23T10:00:01.000", "2026-11-23T10:00:03.000"]):
        db["auth_events"].insert({"at": at, "day": "2026-11-23", "account": "6222001234", "known": 1,
                                  "call_id": f"c{i}", "line": 1, "outcome": "wrong"})
    db["alarms"].insert({"kind": "blacklist", "account": "6222001234", "raised_at": "2026-11-23T10:00:01.000",
                         "detail": "x", "cleared_at": "2026-11-23T10:00:02.000", "cleared_by": "admin"})
    db.conn.close()
    store = Store(path)
    try:
        assert store.schema_version == len(MIGRATIONS)
        assert [r["cleared_event"] for r in store.db.query("SELECT cleared_event FROM alarms")] == [2]
        auth = Authenticator(store, max_daily_failures=1, today=lambda: "2026-11-23")
        assert auth._daily_failures(store.db, "6222001234", "2026-11-23") == 1  # only the one after the clear
    finally:
        store.close()


def test_digits_stored_in_clear_before_version_3_are_erased(tmp_path):
    """A node upgraded from schema 2 had unknown ids (PINs keyed at the account prompt, account and
    PIN run together) stored in clear: the migration erases them from the rows and the file."""
    import json

    import sqlite_utils

    from node_agent.store import _v1, _v2

    path, leaked = tmp_path / "node.db", "622200123458274619"
    db = sqlite_utils.Database(path)
    _v1(db)
    _v2(db)
    db.execute("PRAGMA user_version=2")
    db["accounts"].insert({"id": "6222001234", "salt": b"s", "pin_hash": b"h", "kdf": "scrypt:n=2,r=1,p=1"})
    for i, (acct, known) in enumerate([(leaked, 0), ("6222001234", 1)]):
        db["auth_events"].insert({"at": "t", "day": "d", "account": acct, "known": known, "call_id": f"c{i}",
                                  "line": 1, "outcome": "wrong"})
        db["call_records"].insert({"id": f"c{i}", "line": 1, "account": acct, "disposition": "completed"})
        for kind in ("auth_event", "call_record"):
            db["outbox"].insert({"key": f"{kind}-{i}", "kind": kind, "payload": json.dumps({"account": acct}),
                                 "created": "t"})
    db.conn.close()
    assert leaked.encode() in path.read_bytes()
    store = Store(path)
    try:
        assert store.schema_version == len(MIGRATIONS)
        assert [r["account"] for r in store.db.query("SELECT account FROM auth_events ORDER BY id")] == \
            ["unknown:erased", "6222001234"]
        assert [r["account"] for r in store.db.query("SELECT account FROM call_records ORDER BY id")] == \
            ["unknown:erased", "6222001234"]
        assert [i.payload["account"] for i in store.outbox_pending()] == ["unknown:erased"] * 2 + ["6222001234"] * 2
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("node.db"))
        assert leaked.encode() not in raw
    finally:
        store.close()
