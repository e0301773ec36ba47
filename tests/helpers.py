"""Helpers for driving a call through the simulator and the HAL in tests."""

from __future__ import annotations

import asyncio
import contextlib
import time

import hal
from hal import events as ev
from simulator.client import SimClient


async def wait_for(line: hal.Line, kind: type, timeout: float = 10.0, seen: list | None = None):
    """The next event of ``kind`` on ``line`` (others are kept in ``seen``)."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {kind.__name__} on line {line.number} within {timeout} s; saw {seen}")
        e = await line.next_event(left)
        if e is None:
            continue
        if seen is not None:
            seen.append(e)
        if isinstance(e, kind):
            return e


def wait_until(cond, timeout: float, what: str, poll_s: float = 0.02):
    """Poll ``cond()`` (blocking, for tests that drive a simulator or a card from this thread) until
    it returns something true, and return that; AssertionError naming ``what`` after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


async def collect_digits(line: hal.Line, quiet_s: float, max_s: float) -> str:
    """Digits heard until none came for ``quiet_s`` (or ``max_s`` passed)."""
    got = ""
    end = time.monotonic() + max_s
    while time.monotonic() < end:
        e = await line.next_event(quiet_s)
        if e is None:
            break
        if isinstance(e, ev.DigitReceived):
            got += e.digit
    return got


async def until_heard(client: SimClient, line_no: int, timeout: float = 5.0, min_dbm0: float = -40.0) -> None:
    """Wait until the caller on ``line_no`` hears audio (what the host wrote has come through the
    link and the card's playout buffer): short listens until one is louder than ``min_dbm0``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        level = (await client.call("listen", line=line_no, ms=60))["level_dbm0"]
        if level is not None and level > min_dbm0:
            return
    raise AssertionError(f"the caller on line {line_no} heard nothing within {timeout} s")


async def until_played(line: hal.Line, timeout: float = 10.0, after_frames: int = 10) -> None:
    """Wait until everything written to ``line`` has been sent to the card and ``after_frames``
    more 20 ms turns of the card's clock have passed (more than its playout buffer holds), so
    the caller has heard all of it."""
    await asyncio.wait_for(line.audio.drained(), timeout)
    mark = line.audio.frames_out + after_frames
    end = time.monotonic() + timeout
    while line.audio.frames_out < mark:
        if time.monotonic() > end:
            raise AssertionError(f"line {line.number}: the card's clock stopped ({line.audio.frames_out} frames out)")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def connected(sim, config: hal.BoardConfig | None = None):
    board = hal.open(sim.serial, config)
    await board.start(timeout=10)
    client = await SimClient.parse(sim.control).connect()
    try:
        yield board, client
    finally:
        await client.close()
        await board.close()


async def answered_call(board: hal.Board, client: SimClient, line_no: int = 1, **ring) -> hal.Line:
    """Ring ``line_no`` and answer it on the first ring; returns the line, off-hook."""
    line = board.lines[line_no - 1]
    ring_task = asyncio.create_task(client.call("ring", line=line_no, **ring))
    try:
        await wait_for(line, ev.Ring, timeout=15)
    except BaseException:
        ring_task.cancel()
        raise
    await line.answer()
    res = await ring_task
    assert res["answered"], res
    await wait_for(line, ev.Answered, timeout=5)
    return line
