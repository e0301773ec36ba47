"""nodectl: help, config check, accounts import with bad rows, alarms; all without a card."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.node.test_config import GOOD


def nodectl(cfg, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node_agent.cli", "-c", str(cfg), *args], cwd=ROOT,
                          capture_output=True, text=True, input=stdin, timeout=60)


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "branch.toml"
    p.write_text(GOOD, encoding="utf-8")
    return p


@pytest.mark.parametrize("sub", ["run", "status", "accounts", "alarms", "calls", "config", "prompts"])
def test_help(cfg, sub):
    res = nodectl(cfg, sub, "--help")
    assert res.returncode == 0 and f"nodectl {sub}" in res.stdout


def test_config_check(cfg, tmp_path):
    ok = nodectl(cfg, "config", "check")
    assert ok.returncode == 0 and "OK — node sz-futian-01, 1 line(s)" in ok.stdout
    cfg.write_text(GOOD.replace('"0" = "agent"', '"0" = "agnet"'), encoding="utf-8")
    bad = nodectl(cfg, "config", "check")
    assert bad.returncode == 2
    assert f"{cfg}: 2 problems" in bad.stderr
    assert "option '0' goes to 'agnet', which is not a node of this flow" in bad.stderr


def test_import_reports_bad_rows_by_line_and_keeps_the_good_ones(cfg, tmp_path):
    csv = tmp_path / "accounts.csv"
    csv.write_text("account,pin,name\n6222001234,482913,ZHAO LEI\n62x2,1234,BAD\n6222005678,12,SHORT PIN\n"
                   "6222009012,778899,\n6222001234,111111,TWICE\n", encoding="utf-8")
    res = nodectl(cfg, "accounts", "import", str(csv))
    assert res.returncode == 1
    assert f"{csv}:3: account '62x2' must be 4 to 20 digits" in res.stderr
    assert f"{csv}:4: account 6222005678: the PIN must be 4 to 12 digits" in res.stderr
    assert f"{csv}:6: account 6222001234 appears twice (first on line 2)" in res.stderr
    assert "imported 2 new account(s); 3 bad row(s) skipped" in res.stdout
    listed = json.loads(nodectl(cfg, "accounts", "list", "--json").stdout)
    assert [a["id"] for a in listed] == ["6222001234", "6222009012"]
    assert "482913" not in res.stdout + res.stderr + json.dumps(listed)


def test_import_all_or_nothing(cfg, tmp_path):
    csv = tmp_path / "accounts.csv"
    csv.write_text("account,pin\n6222001234,482913\n12,34\n", encoding="utf-8")
    res = nodectl(cfg, "accounts", "import", str(csv), "--all-or-nothing")
    assert res.returncode == 1 and "nothing imported (--all-or-nothing)" in res.stderr
    assert json.loads(nodectl(cfg, "accounts", "list", "--json").stdout) == []
    csv.write_text("acct;pin\n", encoding="utf-8")
    res = nodectl(cfg, "accounts", "import", str(csv))
    assert res.returncode == 2 and "the first line must name the columns account,pin[,name]" in res.stderr


def test_add_disable_and_status_without_a_node(cfg):
    assert nodectl(cfg, "accounts", "add", "6222001234", "--pin-stdin", stdin="482913\n").returncode == 0
    dup = nodectl(cfg, "accounts", "add", "6222001234", "--pin-stdin", stdin="482913\n")
    assert dup.returncode == 2 and "exists already" in dup.stderr
    assert nodectl(cfg, "accounts", "disable", "6222001234").returncode == 0
    assert "yes" in nodectl(cfg, "accounts", "list").stdout
    st = nodectl(cfg, "status")
    assert st.returncode == 1 and "is not running" in st.stdout
    assert "no open alarms" in nodectl(cfg, "alarms", "list").stdout
    assert "no calls yet" in nodectl(cfg, "calls").stdout
