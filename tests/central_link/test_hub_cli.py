"""`python -m central_link.hq`: --help, and a bad configuration named setting by setting (exit 2,
no traceback); a good one serves nodes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from central_link.hq.__main__ import main
from central_link.hq.config import load
from central_link.hq.store import HubStore
from central_link.protocol import LineState
from tests.central_link.harness import hub_config

ROOT = Path(__file__).resolve().parent.parent.parent


def run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--config" in out and "wss://127.0.0.1:PORT/node" in out


@pytest.mark.parametrize(("text", "want"), [
    ("[hub]\nport = 70000\n", "[hub] port must be a whole number from 0 to 65535"),
    ("[hub]\nport = 1\n", "[hub] certs is missing"),
    ("[hub]\nconsole_port = -1\n", "[hub] console_port must be a whole number from 0 to 65535"),
    ("[hub]\nport = 9000\nconsole_port = 9000\n", "console_port 9000 is the nodes' port too"),
    ('[hub]\ncerts = "nowhere"\n', "hub.crt does not exist: make it with `nodectl certs hub`"),
    ('[hub]\ncerts = "nowhere"\n', "ca.crl does not exist: make it with `nodectl certs ca`"),
    ("[hub]\nheartbeat_s = 0\n", "heartbeat_s must be a number of seconds from 0.05 to 300, not 0"),
    ('[hub]\nnodes = "sz-01"\n', "[hub] nodes must be a list of node ids"),
    ('[hub]\nnodes = ["sz 01"]\n', "[hub] nodes: 'sz 01' is not a node id"),
    ('[hub]\nnodes = ["a", "a"]\n', "a node id is listed twice"),
    ("[hub]\nlisten = 1\n", "[hub] unknown setting 'listen'"),
    ("[hubs]\n", "[hubs] unknown section"),
    ("hub = 5\n", "[hub] must be a table"),
    ("[hub\n", "not valid TOML"),
])
def test_a_bad_configuration_is_named(capsys, tmp_path, text, want):
    path = tmp_path / "hq.toml"
    path.write_text(text)
    rc, err = run(capsys, "-c", str(path))
    assert rc == 2 and err.startswith(f"central_link.hq: {path}:") and want in err, err
    assert "Traceback" not in err


def test_a_missing_configuration_and_a_certificate_that_does_not_load(capsys, tmp_path, pki):
    rc, err = run(capsys, "-c", str(tmp_path / "none.toml"))
    assert rc == 2 and "the file does not exist" in err
    pki.hub[1].write_text("not a key")
    rc, err = run(capsys, "-c", str(hub_config(tmp_path, pki, ("a",))))
    assert rc == 2 and f"{pki.hub[0]} / {pki.hub[1]}: not a certificate and its private key" in err


def test_the_hub_runs_prints_its_url_and_stops_on_sigterm(tmp_path, pki):
    cfg = hub_config(tmp_path, pki, ("a",))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "central_link.hq", "-c", str(cfg)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # the hub prints it once it listens (the pipe ends if it dies)
        assert line.startswith("hub up: wss://127.0.0.1:") and line.rstrip().endswith("/node"), line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_nodes_prints_the_registry(capsys, tmp_path, pki):
    """What the hub keeps of each node, read from its database (the hub may be running)."""
    cfg = load(hub_config(tmp_path, pki, ("node-a", "node-b")))
    store = HubStore(cfg.data_dir / "hq.db")
    store.allow(cfg.nodes)
    store.connected("node-a", "127.0.0.1:5555", "branchnode 0.1.0", "1.4.0", [LineState(1, "100", "idle"),
                                                                           LineState(2, "200", "ivr")])
    store.close()
    assert main(["-c", str(cfg.path), "--nodes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("node-a: connected from 127.0.0.1:5555; software branchnode 0.1.0, firmware 1.4.0; "
                             "lines 1 idle, 2 ivr; last seen 20")
    assert out[1] == "node-b: not connected; software -, firmware -; lines -; last seen never"
