"""The command lines: helpful --help, clear errors, a scripted call reported as JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("sub", ["card", "call", "status", "fault", "reset"])
def test_simctl_help(sub):
    res = run("-m", "simulator", sub, "--help")
    assert res.returncode == 0
    assert "usage: simctl " + sub in res.stdout
    assert "--sim" in res.stdout or sub == "card"


def test_node_help():
    res = run("-m", "node_agent", "--help")
    assert res.returncode == 0 and "--card" in res.stdout


def test_simctl_call_without_a_simulator_says_what_to_do():
    res = run("-m", "simulator", "call", "--sim", "127.0.0.1:9")
    assert res.returncode == 2
    assert "is `simctl card` running?" in res.stderr


def test_node_without_a_card_says_what_to_do_and_keeps_trying(tmp_path):
    """The daemon waits for its card (a branch powers up in any order) and says why it waits."""
    import signal
    import threading
    import time

    proc = subprocess.Popen([sys.executable, "-m", "node_agent", "-c", str(ROOT / "config" / "demo-branch.toml"),
                             "--data-dir", str(tmp_path), "--card", "socket://127.0.0.1:9"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        # it first builds its prompts (a fresh data directory), then tries the card for 10 s:
        # wait for the first "retrying" however long a loaded machine takes to get there
        deadline = time.monotonic() + 120
        while not any("retrying" in line for line in lines) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the node gave up instead of waiting for its card"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        reader.join(timeout=5)
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "no line card answered on socket://127.0.0.1:9" in err and "retrying" in err
    assert "start the simulator" in err
    assert "Traceback" not in err


def test_scripted_call_report(sim_factory, tmp_path):
    sim = sim_factory("--channels", "1")
    # nobody answers: the report says so and the exit status is 1
    res = run("-m", "simulator", "call", "--sim", sim.control, "--answer-timeout", "1", "--digits", "1")
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert report["ok"] is False and report["error"] == "the node did not answer"
    assert report["steps"][0]["op"] == "ring" and report["steps"][0]["answered"] is False
    bad = tmp_path / "bad.json"
    bad.write_text('{"op": "ring"}')
    res = run("-m", "simulator", "call", "--sim", sim.control, "--script", str(bad))
    assert res.returncode == 2 and "a script is a JSON list of steps" in res.stderr


def test_control_port_rejects_garbage_with_a_reason(sim_factory):
    import socket

    sim = sim_factory("--channels", "1")
    host, port = sim.control.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        f = s.makefile("rwb")
        for line, want in [(b"not json\n", "request is not JSON"), (b'{"op": "explode"}\n', 'not "explode"'),
                           (b'{"op": "dtmf", "line": 9, "digits": "1"}\n', "line must be a line number from 1 to 1"),
                           (b'{"op": "hangup", "mode": "slam"}\n', "mode must be one of 'loop_break'")]:
            f.write(line)
            f.flush()
            resp = json.loads(f.readline())
            assert resp["ok"] is False and want in resp["error"], resp
