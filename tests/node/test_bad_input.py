"""The bad-input corpus for nodectl and the daemon: every input gets a message that names its place
and a non-zero exit, never a traceback.

Most cases run ``node_agent.cli.main(argv)`` in-process (the same code path as the console script:
``nodectl`` and ``python -m node_agent`` are this function); an exception escaping a command would
come back as exit 70, "unexpected error", so each case also proves its input is handled on purpose.
A few cases run as subprocesses, to show the top-level guard of the real commands.
"""

from __future__ import annotations

import codecs
import io
import json
import sqlite3
import subprocess
import sys
import time

import pytest

from node_agent import account_import
from node_agent.cli import main
from tests.conftest import ROOT
from tests.node.test_config import BAD_CONFIGS, GOOD


def nodectl(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse refuses the command line
        rc = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "branch.toml"
    p.write_text(GOOD, encoding="utf-8")
    return p


# -- configurations: config check and run -------------------------------------------------------------
@pytest.mark.parametrize("command", [["config", "check"], ["run"]])
@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_configuration(capsys, tmp_path, name, command):
    text, want = BAD_CONFIGS[name]
    path = tmp_path / "branch.toml"
    path.write_text(text, encoding="utf-8")
    rc, out, err = nodectl(capsys, "-c", str(path), *command)
    assert rc == 2, err
    assert f"nodectl: {path}:" in err and want in err


def test_a_directory_as_configuration(capsys, tmp_path):
    rc, _, err = nodectl(capsys, "-c", str(tmp_path), "config", "check")
    assert rc == 2 and f"{tmp_path}: 1 problem" in err and "this is a directory" in err


def test_a_missing_configuration_says_how_to_give_one(capsys, tmp_path):
    rc, _, err = nodectl(capsys, "-c", str(tmp_path / "nope.toml"), "status")
    assert rc == 2 and "the file does not exist: give the configuration with -c FILE or $BRANCHNODE_CONFIG" in err


@pytest.mark.parametrize("card, want", [("http://127.0.0.1:7000", "no HAL backend for 'http://127.0.0.1:7000'"),
                                        ("socket://127.0.0.1:99999", "a port 1-65535")])
def test_run_with_a_bad_card_url(capsys, cfg, card, want):
    rc, _, err = nodectl(capsys, "-c", str(cfg), "run", "--card", card)
    assert rc == 2 and err.startswith("nodectl: --card: card") and want in err


# -- CSV files for accounts import ------------------------------------------------------------------------
BAD_CSVS = {  # name: (bytes, what the error says; every one also names the file)
    "a field over 128 KiB": (b"account,pin,name\n6222001234,482913," + b"x" * 140_000 + b"\n",
                             ":2: not a CSV row (field larger than field limit"),
    "an unclosed quote": (b'account,pin,name\n6222001234,482913,"ZHAO\n6222001235,482913,WANG\n',
                          ":2: not a CSV row"),
    "Latin-1": ("account,pin,name\n6222001234,482913,José\n".encode("latin-1"),
                ":2: byte 0xe9 at column 22 is not UTF-8"),
    "UTF-16 with a BOM": (codecs.BOM_UTF16_LE + "account,pin\n6222001234,482913\n".encode("utf-16-le"),
                          ": the file is UTF-16: save it as UTF-8"),
    "UTF-16 without a BOM": ("account,pin\n6222001234,482913\n".encode("utf-16-le"),
                             ":1: a NUL byte at column 2: this is a binary or UTF-16 file"),
    "binary": (bytes(range(256)) * 8, "a NUL byte at column 1"),
    "no header": (b"6222001234,482913\n", ":1: the first line must name the columns account,pin[,name]"),
    "an unknown column": (b"account,pin,email\n", ":1: unknown column(s) 'email': the columns are account,pin[,name]"),
    "a column twice": (b"account,pin,pin\n", ":1: column(s) pin named twice"),
    "empty": (b"", ":1: the first line must name the columns"),
}


@pytest.mark.parametrize("name", list(BAD_CSVS))
def test_bad_csv(capsys, cfg, tmp_path, name):
    data, want = BAD_CSVS[name]
    path = tmp_path / "accounts.csv"
    path.write_bytes(data)
    rc, _, err = nodectl(capsys, "-c", str(cfg), "accounts", "import", str(path))
    assert rc == 2, err
    assert f"nodectl: {path}" in err and want in err
    assert json.loads(nodectl(capsys, "-c", str(cfg), "accounts", "list", "--json")[1]) == []


@pytest.mark.parametrize("make", ["directory", "missing"])
def test_csv_that_cannot_be_read(capsys, cfg, tmp_path, make):
    path = tmp_path / "accounts.csv"
    if make == "directory":
        path.mkdir()
    rc, _, err = nodectl(capsys, "-c", str(cfg), "accounts", "import", str(path))
    assert rc == 2 and f"nodectl: {path}: cannot read it: " in err


def test_rows_are_numbered_as_in_the_file_and_names_kept_whole(capsys, cfg, tmp_path):
    path = tmp_path / "accounts.csv"
    path.write_text('account,pin,name\n6222001234,482913,"ZHAO\nLEI"\n6222001235,482913,WANG\u2028FANG\n'
                    '6222001236,482913,"LI, NA"\n62x2,1234,BAD\n\n6222001237,12,SHORT\n', encoding="utf-8")
    rc, out, err = nodectl(capsys, "-c", str(cfg), "accounts", "import", str(path))
    assert rc == 1
    # the quoted line break belongs to the row of line 2; the rows after it keep their own lines
    assert err.splitlines()[:3] == [
        f"{path}:2: account 6222001234: the name contains the control character U+000A (a line break?): remove it",
        f"{path}:6: account '62x2' must be 4 to 20 digits",
        f"{path}:8: account 6222001237: the PIN must be 4 to 12 digits"]
    listed = json.loads(nodectl(capsys, "-c", str(cfg), "accounts", "list", "--json")[1])
    assert [(a["id"], a["name"]) for a in listed] == [("6222001235", "WANG\u2028FANG"), ("6222001236", "LI, NA")]


def test_a_utf8_bom_is_not_part_of_the_header(capsys, cfg, tmp_path):
    path = tmp_path / "accounts.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"account,pin,name\n6222001234,482913,ZHAO LEI\n")
    rc, out, err = nodectl(capsys, "-c", str(cfg), "accounts", "import", str(path))
    assert rc == 0 and "imported 1 new account(s)" in out, err


def test_100000_rows_are_checked_in_seconds(tmp_path):
    """The duplicate check was quadratic (376 s for 100,000 rows): checking is one linear pass."""
    path = tmp_path / "accounts.csv"
    rows = [f"{6222000000 + i},{100000 + i},NAME {i}\n" for i in range(100_000)]
    rows[99_999] = rows[17]  # one duplicate, found at the end
    path.write_text("account,pin,name\n" + "".join(rows), encoding="utf-8")
    t = time.monotonic()
    checked = account_import.read_rows(path)
    elapsed = time.monotonic() - t
    assert len(checked.rows) == 99_999
    assert checked.errors == [f"{path}:100001: account 6222000017 appears twice (first on line 19)"]
    assert elapsed < 10, f"checking 100,000 rows took {elapsed:.1f} s"


# -- arguments ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, want", [
    (["alarms", "clear", "18446744073709551616"], "argument id: 18446744073709551616 is out of range"),
    (["alarms", "clear", "x"], "argument id: 'x' is not a number"),
    (["calls", "--limit", "18446744073709551616"], "argument --limit: 18446744073709551616 is out of range"),
    (["calls", "--limit", "0"], "argument --limit: 0 is out of range"),
    (["calls", "--lock-wait", "-1"], "argument --lock-wait: -1 is out of range"),
    (["accounts", "add", "6222001234", "--pin-stdin", "--name", "A\nB"], "--name: the name contains the control"),
    (["accounts", "add", "62x2", "--pin-stdin"], "account '62x2' must be 4 to 20 digits"),
    (["accounts", "add", "6222001234", "--pin-stdin", "--class", "Gold Club"], "--class: the class 'Gold Club' must"),
    (["alarms", "clear", "7"], "no alarm 7"),
    (["prompts", "export", "wavs", "--language", "fr"], "--language 'fr': callers of"),
])
def test_bad_arguments(capsys, monkeypatch, cfg, argv, want):
    monkeypatch.setattr(sys, "stdin", io.StringIO("482913\n"))
    rc, _, err = nodectl(capsys, "-c", str(cfg), *argv)
    assert rc == 2 and want in err


def test_a_pin_on_stdin_that_is_not_text(capsys, monkeypatch, cfg):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe4829\n"), encoding="utf-8"))
    rc, _, err = nodectl(capsys, "-c", str(cfg), "accounts", "add", "6222001234", "--pin-stdin")
    assert rc == 2 and "--pin-stdin: standard input is not text" in err


def test_a_data_dir_that_is_a_file(capsys, cfg, tmp_path):
    (tmp_path / "afile").write_text("x")
    rc, _, err = nodectl(capsys, "-c", str(cfg), "--data-dir", str(tmp_path / "afile"), "accounts", "list")
    assert rc == 2 and f"cannot open the node database {tmp_path / 'afile' / 'node.db'}" in err


def test_prompts_export_under_a_file(capsys, cfg, tmp_path):
    (tmp_path / "afile").write_text("x")
    rc, _, err = nodectl(capsys, "-c", str(cfg), "prompts", "export", str(tmp_path / "afile" / "wavs"))
    assert rc == 2 and f"nodectl: {tmp_path / 'afile' / 'wavs'}: Not a directory" in err


@pytest.mark.parametrize("content", ['{"updated": "soon"}', "[1, 2]", '{"updated": 1e300}', '"status"',
                                     '{"updated": 1e300, "node": "x", "version": 1, "uptime_s": 1, "pid": 1, '
                                     '"card": 5}'])
def test_a_corrupt_status_file(capsys, cfg, tmp_path, content):
    status = tmp_path / "data" / "status.json"
    status.parent.mkdir()
    status.write_text(content)
    rc, _, err = nodectl(capsys, "-c", str(cfg), "status")
    assert rc == 2 and f"nodectl: {status} is damaged or from another version of the node" in err
    assert "if none is running, delete the file" in err


def test_a_database_locked_by_another_writer(capsys, monkeypatch, cfg, tmp_path):
    assert nodectl(capsys, "-c", str(cfg), "accounts", "list")[0] == 0  # the database exists
    other = sqlite3.connect(tmp_path / "data" / "node.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        monkeypatch.setattr(sys, "stdin", io.StringIO("482913\n"))
        t = time.monotonic()
        rc, _, err = nodectl(capsys, "-c", str(cfg), "accounts", "add", "6222001234", "--pin-stdin",
                             "--lock-wait", "0.3")
        waited = time.monotonic() - t
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert rc == 75
    assert f"the node database in {tmp_path / 'data'} is locked by another writer" in err
    assert "stayed so for 0.3 s: try again when it is done, or give --lock-wait more seconds" in err
    assert waited < 10


# -- the real commands, as subprocesses: the top-level guard -------------------------------------------------
def run(*args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, stdin=stdin,
                          timeout=60)


def test_the_daemon_refuses_a_bad_configuration_cleanly(tmp_path):
    path = tmp_path / "branch.toml"
    path.write_text(GOOD.replace('start = "language"', 'start = ["language"]'), encoding="utf-8")
    res = run("-m", "node_agent", "-c", str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"nodectl: {path}: 1 problem" in res.stderr and "[flows.main] start ['language']" in res.stderr


def test_the_daemon_refuses_a_bad_card_url_cleanly(cfg):
    res = run("-m", "node_agent", "-c", str(cfg), "--card", "http://127.0.0.1:7000")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--card: card: no HAL backend for 'http://127.0.0.1:7000'" in res.stderr


def test_accounts_add_without_a_terminal_or_pin_stdin(cfg):
    res = run("-m", "node_agent.cli", "-c", str(cfg), "accounts", "add", "6222001234")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "there is no terminal to ask for the PIN: give it on standard input with --pin-stdin" in res.stderr


def test_config_check_of_a_directory_as_a_command(tmp_path):
    res = run("-m", "node_agent.cli", "-c", str(tmp_path), "config", "check")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "this is a directory" in res.stderr
