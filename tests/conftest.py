"""Shared fixtures: a simulated card in its own process, reached only through its URLs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class SimProcess:
    serial: str
    control: str
    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_sim(tmp_path: Path, *args: str) -> SimProcess:
    info = tmp_path / f"sim-{time.monotonic_ns()}.json"
    log = tmp_path / f"sim-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "simulator", "-v", "card", "--control-port", "0", "--info-file", str(info), *args]
    fh = log.open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + 20
    while not info.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"simulator did not start: {log.read_text()}")
        time.sleep(0.05)
    try:
        data = json.loads(info.read_text())
    except (OSError, ValueError):
        proc.kill()  # never leave a simulator behind
        raise
    return SimProcess(data["serial"], data["control"], proc, log)


def stop_sim(sim: SimProcess) -> None:
    sim.proc.terminate()
    try:
        sim.proc.wait(10)
    except subprocess.TimeoutExpired:
        sim.proc.kill()


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator:
    started: list[SimProcess] = []

    def make(*args: str) -> SimProcess:
        sim = start_sim(tmp_path, *args)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        stop_sim(sim)


# The suite runs on two workers (pytest-xdist, `-n 2`, set in pyproject.toml): most real-time
# tests spend their time waiting on the card's clock, so two at once fit a 2-core machine. The
# ones that hold the node to real-time limits with a core busy (eight lines with no underrun, the
# 200 ms release) run alone: while one runs, the other worker waits. Tests whose checks do not
# depend on the node keeping time (the faster-clock BER and talk-off runs: what they check travels
# card -> host, where nothing is lost by waiting; flashing; the HQ outbox) run beside others.
EXCLUSIVE = (
    "tests/ivr/test_load.py",
    "tests/e2e/test_eight_channels.py",
    "tests/ivr/test_ivr_flows.py::test_hang_up_in_every_node_type",
    "tests/node/test_hangup.py",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(EXCLUSIVE):
            item.add_marker(pytest.mark.exclusive)


@pytest.fixture(autouse=True)
def _one_exclusive_test_at_a_time(request, tmp_path_factory) -> Iterator[None]:
    """Between workers: a test marked exclusive runs with no other test running beside it.

    Every test passes a gate and then holds a shared lock; an exclusive test holds the gate (so no
    new test starts) while it waits for the shared holders to finish, then holds the lock alone.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield  # one process: tests run one at a time anyway
        return
    import fcntl

    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker of this run
    with open(shared / "exclusive.gate", "a+") as gate, open(shared / "exclusive.lock", "a+") as lock:
        exclusive = request.node.get_closest_marker("exclusive") is not None
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
