"""A fake ``hal.Line`` and a one-line node around it: a LineRunner and the real Ivr, store and
records, without a card or simulator. The line's clock ticks in real time (20 ms frames);
prompts are silence of a chosen length, so a test decides whether it catches a prompt playing.

Run as a module it is the subprocess of the crash tests (``tests/node/test_records.py``): it
drives one call and dies by SIGKILL at a chosen instant.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import numpy as np

import hal
from hal import events as ev
from hal.audio import FRAME
from node_agent.auth import Authenticator
from node_agent.calls import LineRunner
from node_agent.config import load
from node_agent.ivr import Ivr
from node_agent.store import Store

ACCOUNT, PIN = "6222001234", "482913"
TIMEOUT_MS = 20000  # every wait in the flow: a hang-up noticed only by a timeout could not pass

CONFIG = f"""
[node]
id = "fake-branch"
card = "socket://127.0.0.1:9"
data_dir = "data"
language = "en"
answer_on_ring = 1

[lines.1]
number = "100"
flow = "main"

[prompts]
{"".join(f'{name} = {{ en = "{name}" }}' + chr(10) for name in
         ("lang", "main", "info", "account", "pin", "wrong", "locked", "beep", "cbnum", "cbok", "code",
          "busy", "bye", "invalid"))}
[flows.main]
start = "lang"
[flows.main.nodes.lang]
type = "language"
prompt = "lang"
options = {{ "3" = "en" }}
timeout_ms = {TIMEOUT_MS}
retries = 1
next = "hours"
on_fail = "hours"
[flows.main.nodes.hours]
type = "schedule"
hours = {{ mon = "00:00-24:00" }}
open = "menu"
closed = "menu"
[flows.main.nodes.menu]
type = "menu"
prompt = "main"
options = {{ "1" = "auth", "2" = "info", "3" = "message", "4" = "callback", "5" = "code", "6" = "agent", "7" = "bye" }}
invalid_prompt = "invalid"
timeout_ms = {TIMEOUT_MS}
retries = 1
on_fail = "bye"
[flows.main.nodes.info]
type = "play"
prompts = ["info"]
next = "menu"
[flows.main.nodes.auth]
type = "authenticate"
account_prompt = "account"
pin_prompt = "pin"
wrong_prompt = "wrong"
blacklisted_prompt = "locked"
goodbye_prompt = "bye"
first_digit_timeout_ms = {TIMEOUT_MS}
inter_digit_timeout_ms = {TIMEOUT_MS}
next = "bye"
on_fail = "bye"
[flows.main.nodes.message]
type = "record"
prompt = "beep"
kind = "message"
next = "bye"
[flows.main.nodes.callback]
type = "callback"
prompt = "cbnum"
confirm_prompt = "cbok"
next = "bye"
[flows.main.nodes.code]
type = "collect"
prompt = "code"
min_digits = 3
max_digits = 4
store_as = "branch_code"
first_digit_timeout_ms = {TIMEOUT_MS}
inter_digit_timeout_ms = {TIMEOUT_MS}
retries = 1
next = "bye"
on_fail = "bye"
[flows.main.nodes.agent]
type = "transfer"
prompt = "busy"
fallback = "bye"
[flows.main.nodes.bye]
type = "hangup"
prompt = "bye"
"""
MONDAY = datetime(2026, 11, 23, 10, 0)


class FakeLine(hal.Line):
    """Events are put in by the test (:meth:`emit`); once answered, a clock sends one frame out
    and brings one frame of the caller's (low noise) in every 20 ms, as a card would."""

    def __init__(self, number: int = 1) -> None:
        self.number = number
        self.audio = hal.AudioPort()
        self._events: asyncio.Queue[ev.LineEvent] = asyncio.Queue()
        self._offhook = False
        self._clock: asyncio.Task | None = None
        self.on_hangup = None  # called (synchronously) when the node sends the hang-up command
        self.released_at: float | None = None  # monotonic time of that command
        self.idle_at: float | None = None  # when the node last asked for an event with no call up

    @property
    def offhook(self) -> bool:
        return self._offhook

    def emit(self, event: ev.LineEvent) -> float:
        if isinstance(event, ev.LineDown):
            self._offhook = False  # as the HAL does: the call is gone with the line
        self._events.put_nowait(event)
        return time.monotonic()

    @property
    def pending(self) -> int:
        return self._events.qsize()

    async def events(self):
        while True:
            yield await self._events.get()

    async def next_event(self, timeout: float | None = None) -> ev.LineEvent | None:
        if not self._offhook and self._events.empty():
            self.idle_at = time.monotonic()
        try:
            return await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return None

    async def answer(self) -> None:
        self._offhook = True
        self._clock = asyncio.create_task(self._tick())

    async def hangup(self) -> None:
        self.released_at = time.monotonic()
        if self.on_hangup is not None:
            self.on_hangup()
        self._offhook = False
        self.audio.reset()
        if self._clock is not None:
            self._clock.cancel()

    async def dial(self, digits: str, mode: str = "dtmf") -> None:
        raise NotImplementedError("the fake line does not dial")

    async def flash(self, ms: int = 100) -> None:
        raise NotImplementedError("the fake line does not flash")

    async def set_gains(self, rx_db: float, tx_db: float) -> None:
        pass

    def set_rx_tap(self, tap) -> None:
        self.rx_tap = tap  # no audio comes from this fake caller

    async def _tick(self) -> None:
        rng = np.random.default_rng(self.number)
        while self._offhook:
            await asyncio.sleep(0.02)
            self.audio.next_out()
            self.audio.deliver(rng.integers(-300, 300, FRAME, dtype=np.int16))


class FakePrompts:
    """Every prompt is silence of ``ms``."""

    def __init__(self, ms: int) -> None:
        self.pcm = np.zeros(ms * 8, dtype=np.int16)

    def get(self, name: str, language: str) -> np.ndarray:
        return self.pcm


class OneLineNode:
    """The node's pieces for one fake line, real except the card and the prompts' audio."""

    def __init__(self, folder: Path, *, prompt_ms: int = 20, auth=None) -> None:
        cfg_path = folder / "branch.toml"
        if not cfg_path.exists():
            cfg_path.write_text(CONFIG, encoding="utf-8")
        self.config = load(cfg_path)
        self.store = Store(self.config.data_dir / "node.db")
        self.auth = auth or Authenticator(self.store)
        self.ivr = Ivr(self.config, FakePrompts(prompt_ms), self.auth, self.store, clock=lambda: MONDAY)
        self.line = FakeLine()
        self.runner = LineRunner(self.line, self.config.lines[1], self.ivr, self.store, answer_on_ring=1,
                                 language="en")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.store.close()

    def keys(self, digits: str) -> None:
        for d in digits:
            self.line.emit(ev.DigitReceived(1, d, 60, -10))

    def records(self) -> list[dict]:
        """Call records as committed (read through a connection of our own)."""
        s = Store(self.store.path)
        try:
            return list(s.db.query("SELECT * FROM call_records ORDER BY started"))
        finally:
            s.close()


async def until(cond, timeout: float, what: str, step: float = 0.002) -> None:
    """Wait for ``cond()``; fail saying ``what`` did not happen within ``timeout`` s."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(step)


# -- the crash tests' subprocess ------------------------------------------------------------------
async def _crash(folder: Path, kill_at: str) -> None:
    """One call that dies by SIGKILL at ``kill_at``:

    * ``hangup``: at the hang-up command (the final record committed, the line not released);
    * ``commit``: inside the final record's transaction, before it commits;
    * ``recording``: two seconds into a voice message.
    """
    node = OneLineNode(folder)
    if kill_at == "hangup":
        node.line.on_hangup = lambda: os.kill(os.getpid(), signal.SIGKILL)
    elif kill_at == "commit":
        enqueue = node.store.enqueue

        def die_on_call_record(db, kind, key, payload):
            enqueue(db, kind, key, payload)
            if kind == "call_record":
                os.kill(os.getpid(), signal.SIGKILL)
        node.store.enqueue = die_on_call_record
    node.start()
    node.line.emit(ev.Ring(1, 1))
    await until(lambda: node.runner.current is not None, 10, "the call was answered")
    call = node.runner.current
    if kill_at == "recording":
        node.keys("33")
        await until(lambda: call.doing == "recording", 10, "recording began")
        frames = node.line.audio.frames_in
        await until(lambda: node.line.audio.frames_in >= frames + 100, 10, "2 s of message")
        os.kill(os.getpid(), signal.SIGKILL)
    node.keys("31")
    await until(lambda: call.path[-1:] == ["auth"] and call.doing == "keys", 10, "the account is asked")
    node.keys(f"{ACCOUNT}#000000#")  # a wrong PIN: an auth outcome in the record
    await until(lambda: call.auth_outcome == "wrong" and call.doing == "keys", 10, "the PIN was checked")
    node.line.emit(ev.HungUp(1, "loop_drop"))
    await asyncio.sleep(10)
    raise SystemExit("the node should have been killed by now")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("kill_at", choices=("hangup", "commit", "recording"))
    args = ap.parse_args()
    asyncio.run(_crash(args.folder, args.kill_at))
