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
