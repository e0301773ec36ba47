"""accounts import: an existing account changes only with --replace, and an import stopped halfway
leaves whole rows (or none, with --all-or-nothing) that a rerun completes."""

from __future__ import annotations

import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from node_agent.auth import _hash
from node_agent.cli import main
from tests.conftest import ROOT
from tests.node.test_config import GOOD


def nodectl(cfg, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node_agent.cli", "-c", str(cfg), *args], cwd=ROOT,
                          capture_output=True, text=True, input=stdin, timeout=300)


def inproc(capsys, cfg, *args) -> subprocess.CompletedProcess:
    """nodectl in this process (the same main(); the hashing still runs in worker processes)."""
    rc = main(["-c", str(cfg), *args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out, err)


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "branch.toml"
    p.write_text(GOOD, encoding="utf-8")
    return p


def stored(tmp_path) -> dict[str, tuple]:
    with sqlite3.connect(tmp_path / "data" / "node.db") as db:
        return {r[0]: r[1:] for r in db.execute("SELECT id, name, salt, pin_hash, kdf, disabled FROM accounts")}


def pin_is(row: tuple, pin: str) -> bool:
    _name, salt, pin_hash, kdf, _disabled = row
    return _hash(pin, salt, kdf) == pin_hash


def test_an_accounts_class_is_imported_added_listed_and_changed_only_with_replace(capsys, cfg, tmp_path):
    csv = tmp_path / "accounts.csv"
    csv.write_text("account,pin,class\n6222001234,482913,vip\n6222005678,111111,\n6222009012,778899,Gold\n",
                   encoding="utf-8")
    res = inproc(capsys, cfg, "accounts", "import", str(csv))
    assert res.returncode == 1  # the bad row is reported, the good ones imported
    assert f"{csv}:4: account 6222009012: the class 'Gold' must be 1 to 32 lower-case letters" in res.stderr
    listed = {r["id"]: r["account_class"] for r in json.loads(inproc(capsys, cfg, "accounts", "list", "--json").stdout)}
    assert listed == {"6222001234": "vip", "6222005678": ""}
    table = inproc(capsys, cfg, "accounts", "list").stdout
    assert "class" in table.splitlines()[0] and "vip" in table

    csv.write_text("account,pin,class\n6222001234,482913,\n6222005678,111111,staff\n", encoding="utf-8")
    res = inproc(capsys, cfg, "accounts", "import", str(csv))  # an empty class keeps vip; staff is a change
    assert res.returncode == 1
    assert f"{csv}:3: account 6222005678 exists already with another class (''): not changed" in res.stderr
    assert "1 already as in the file" in res.stdout
    assert inproc(capsys, cfg, "accounts", "import", str(csv), "--replace").returncode == 0
    listed = {r["id"]: r["account_class"] for r in json.loads(inproc(capsys, cfg, "accounts", "list", "--json").stdout)}
    assert listed == {"6222001234": "vip", "6222005678": "staff"}
    assert pin_is(stored(tmp_path)["6222005678"], "111111")  # --replace with the same PIN keeps it

    res = nodectl(cfg, "accounts", "add", "6222004321", "--pin-stdin", "--class", "staff", stdin="482913\n")
    assert res.returncode == 0, res.stderr
    listed = {r["id"]: r["account_class"] for r in json.loads(inproc(capsys, cfg, "accounts", "list", "--json").stdout)}
    assert listed["6222004321"] == "staff"


def test_reimport_refuses_to_change_an_account_unless_replace(capsys, cfg, tmp_path):
    csv = tmp_path / "accounts.csv"
    csv.write_text("account,pin,name\n6222001234,482913,ZHAO LEI\n6222005678,111111,WANG FANG\n", encoding="utf-8")
    assert inproc(capsys, cfg, "accounts", "import", str(csv)).returncode == 0
    assert inproc(capsys, cfg, "accounts", "disable", "6222005678").returncode == 0
    before = stored(tmp_path)

    # a new PIN for one, a new name for the other, one new account, one row as it was
    csv.write_text("account,pin,name\n6222001234,999999,ZHAO LEI\n6222005678,111111,WANG F.\n"
                   "6222009012,778899,LI NA\n", encoding="utf-8")
    res = inproc(capsys, cfg, "accounts", "import", str(csv))
    assert res.returncode == 1
    assert f"{csv}:2: account 6222001234 exists already with another PIN: not changed (use --replace" in res.stderr
    assert f"{csv}:3: account 6222005678 exists already with another name ('WANG FANG'): not changed" in res.stderr
    assert "imported 1 new account(s); 2 refused (exist already; --replace to change them)" in res.stdout
    after = stored(tmp_path)
    assert after["6222001234"] == before["6222001234"] and after["6222005678"] == before["6222005678"]
    assert pin_is(after["6222001234"], "482913") and after["6222009012"][0] == "LI NA"
    assert "999999" not in res.stdout + res.stderr and "482913" not in res.stdout + res.stderr

    res = inproc(capsys, cfg, "accounts", "import", str(csv), "--replace")
    assert res.returncode == 0, res.stderr
    assert "imported 0 new account(s); 2 replaced; 1 already as in the file" in res.stdout
    after = stored(tmp_path)
    assert pin_is(after["6222001234"], "999999") and not pin_is(after["6222001234"], "482913")
    assert after["6222005678"][0] == "WANG F." and after["6222005678"][4] == 1  # still disabled

    # all-or-nothing: one refused row and nothing is imported
    csv.write_text("account,pin\n6222001234,123456\n6222000001,123456\n", encoding="utf-8")
    res = inproc(capsys, cfg, "accounts", "import", str(csv), "--all-or-nothing")
    assert res.returncode == 1 and "1 row(s) would change existing accounts: nothing imported" in res.stderr
    assert "6222000001" not in stored(tmp_path)
    listed = json.loads(inproc(capsys, cfg, "accounts", "list", "--json").stdout)
    assert [a["id"] for a in listed] == ["6222001234", "6222005678", "6222009012"]


ROWS = 60  # enough hashing (1.5 s at best on 2 cores) to see the progress line
# the interrupted import: 30 s of hashing at best, so that a Ctrl-C sent after the first progress
# line still lands in the middle of it on a busy machine (60 rows had ended before it once)
INTERRUPTED_ROWS = 1200


def write_csv(tmp_path, rows: int = ROWS):
    csv = tmp_path / "accounts.csv"
    csv.write_text("account,pin\n" + "".join(f"{6222000000 + i},{100000 + i}\n" for i in range(rows)),
                   encoding="utf-8")
    return csv


def count(tmp_path) -> int:
    try:
        with sqlite3.connect(f"file:{tmp_path / 'data' / 'node.db'}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM accounts").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def wait_for(what: str, cond, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"the import ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def test_an_import_killed_mid_hash_leaves_whole_rows_and_a_rerun_finishes(cfg, tmp_path):
    csv = write_csv(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "node_agent.cli", "-c", str(cfg), "accounts", "import", str(csv)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("first committed batch", lambda: count(tmp_path) > 0, proc)
        proc.kill()  # SIGKILL: no chance to clean up
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    rows = stored(tmp_path)
    assert 0 < len(rows) < ROWS, f"{len(rows)} rows: the import was not stopped in the middle"
    # every committed row is whole: spot-check that its hash is of its PIN (a hash costs ~50 ms)
    for acct in sorted(rows)[:: max(1, len(rows) // 3)]:
        assert pin_is(rows[acct], str(100000 + int(acct) - 6222000000)), acct

    res = nodectl(cfg, "accounts", "import", str(csv))
    assert res.returncode == 0, res.stderr
    assert f"imported {ROWS - len(rows)} new account(s); {len(rows)} already as in the file" in res.stdout
    assert len(stored(tmp_path)) == ROWS


def test_an_all_or_nothing_import_interrupted_imports_nothing(cfg, tmp_path):
    """Ctrl-C in the middle of hashing (seen in the progress line, which only a terminal gets)."""
    csv = write_csv(tmp_path, INTERRUPTED_ROWS)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "node_agent.cli", "-c", str(cfg), "accounts", "import", str(csv),
                             "--all-or-nothing"], cwd=ROOT, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the other end closed
                return
            if not chunk:
                return
            seen.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for("progress line", lambda: b"left" in b"".join(seen), proc)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        reader.join(timeout=10)
        os.close(master)
    err = b"".join(seen).decode()
    assert "\rhashing PINs: " in err and f" of {INTERRUPTED_ROWS:,} (" in err and "left" in err
    assert proc.returncode == 130, err
    assert "interrupted: nothing was imported (--all-or-nothing)" in err and "Traceback" not in err
    assert count(tmp_path) == 0 and b"imported" not in out


def test_no_progress_line_off_a_terminal(cfg, tmp_path):
    csv = tmp_path / "accounts.csv"
    csv.write_text("account,pin\n6222001234,482913\n", encoding="utf-8")
    res = nodectl(cfg, "accounts", "import", str(csv))
    assert res.returncode == 0 and "\r" not in res.stderr and "hashing PINs:" not in res.stderr
    assert f"{csv}: 1 good row(s); hashing their PINs on" in res.stderr
