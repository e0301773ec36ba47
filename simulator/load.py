"""Load: callers on the lines of a simulated card, back to back, timing the node's answers as
they hear them.

Used by ``make bench`` and by the load test (``tests/ivr/test_load.py``). Each caller is a
client of the simulator's control port, like ``simctl call``; it knows nothing of the node but
the keys its IVR flow takes and the prompts (exported as WAVs) that answer them.

Key-to-response is measured where the caller is: from the end of a key's tone on the line to
the start of the prompt that answers it, as the simulated caller hears it, so it includes the
node's DTMF detection, its work, the link in both directions and the card's playout buffer.
Both ends are read off the call's own timeline (card time from the answer, 20 ms frames, the
same clock for what the caller sends and hears): the caller queues everything it will key
before the node answers, so where each key falls is known exactly, and the simulator reports
where each prompt it recognised began.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from .client import SimClient, SimError

ACCOUNTS = {n: (f"62220{n:05d}", f"{n}4{n}9{n}3") for n in range(1, 9)}  # line -> (account, PIN)
KEY_MS = 60  # tone and gap of every key: a brisk but ordinary caller
FIRST_KEY_MS = 300  # from the answer to the first key: a caller keys once they hear the greeting
THINK_MS = 1200  # between one answer and the next key: long enough to recognise the answer


@dataclass(frozen=True)
class Flow:
    """The IVR a load caller walks: the keys it presses and the prompt (``NAME.LANG``, as the
    node's ``PromptLibrary.export`` names them) that answers each."""

    language_key: str  # picks the language
    after_language: str  # the prompt that answers it
    menu_key: str  # picks account services
    account_prompt: str  # asks for the account number
    pin_prompt: str  # asks for the PIN, after the account and #
    verified: str  # after a right PIN and #
    wrong: str  # after a wrong PIN and #

    def prompts(self) -> list[str]:
        return [self.after_language, self.account_prompt, self.pin_prompt, self.verified, self.wrong]


@dataclass
class Response:
    """One key and the answer the caller heard to it (``ms`` None: never heard)."""

    step: str  # "language", "menu", "account" (its #) or "pin" (its #: includes the PIN check)
    prompt: str
    key_end_ms: int  # on the call's timeline, from the answer
    ms: float | None = None


@dataclass
class CallerReport:
    line: int
    outcomes: list[str] = field(default_factory=list)  # "verified" / "wrong", per call, in order
    responses: list[Response] = field(default_factory=list)
    unmeasured_calls: int = 0  # answered before the caller had queued its keys (timing unknown)
    failures: list[str] = field(default_factory=list)  # calls the node did not answer or end

    def heard_ms(self, *steps: str) -> list[float]:
        return [r.ms for r in self.responses if r.ms is not None and (not steps or r.step in steps)]

    def missed(self) -> list[Response]:
        return [r for r in self.responses if r.ms is None]


def _keys_end(start_ms: int, keys: str) -> int:
    """Where the last of ``keys``, sent from ``start_ms``, stops sounding."""
    return start_ms + (len(keys) - 1) * 2 * KEY_MS + KEY_MS


async def _queue(sim: SimClient, line: int, flow: Flow, account: str, pin: str, outcome: str) -> list[Response]:
    """Queue the whole call (silences and keys) and say where each key that expects an answer ends."""
    steps = [("silence", FIRST_KEY_MS, None), ("language", flow.language_key, flow.after_language),
             ("silence", THINK_MS, None), ("menu", flow.menu_key, flow.account_prompt),
             ("silence", THINK_MS, None), ("account", account + "#", flow.pin_prompt),
             ("silence", THINK_MS, None), ("pin", pin + "#", outcome)]
    at = 0
    out = []
    for step, what, answer in steps:
        if step == "silence":
            await sim.call("silence", line=line, ms=what, wait=False)
            at += what
            continue
        await sim.call("dtmf", line=line, digits=what, on_ms=KEY_MS, off_ms=KEY_MS, wait=False)
        out.append(Response(step, answer, _keys_end(at, what)))
        at += len(what) * 2 * KEY_MS
    return out


async def _answered(sim: SimClient, line: int, timeout: float) -> bool:
    """Wait (polling the simulator) until the node has answered ``line``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (await sim.call("status"))["lines"][line - 1]["answered"]:
            return True
        await asyncio.sleep(0.05)
    return False


def _match(responses: list[Response], heard: list[dict]) -> None:
    """Each key's answer: the first time its prompt began after the key began."""
    for r in responses:
        for p in heard:
            if p["prompt"] == r.prompt and p["at_ms"] > r.key_end_ms - KEY_MS:
                r.ms = p["at_ms"] - r.key_end_ms
                break


async def _wrong_pin(sim: SimClient, line: int, flow: Flow, refs: dict[str, str]) -> dict:
    """Hang up once told the PIN was wrong (while being asked again); what the caller heard."""
    await sim.call("silence", line=line, ms=20, timeout_ms=30000)  # the keys are all out
    await sim.call("listen", line=line, ms=20)  # ... and the caller listens from here
    got = await sim.call("listen", line=line, ms=10000, prompts=refs, until=flow.wrong)
    await sim.call("hangup", line=line)
    return got


async def _verified(sim: SimClient, line: int, flow: Flow, refs: dict[str, str], report: CallerReport,
                    n: int) -> dict:
    """Wait for the node to end the call; what the caller heard."""
    done = await sim.call("wait_onhook", line=line, timeout_ms=25000)
    if not done["onhook"]:
        report.failures.append(f"call {n}: the node did not hang up after the call")
        await sim.call("hangup", line=line)
    # the call is over: this only asks which prompts the caller heard, and when
    return await sim.call("listen", line=line, ms=1000, prompts=refs, until=flow.verified)


async def caller(sim_control: str, line: int, until: float, *, flow: Flow, refs: dict[str, str],
                 wrong_every: int = 4, report: CallerReport | None = None, caller_id: str = "") -> CallerReport:
    """Calls on ``line`` until ``until`` (``time.monotonic()``): pick the language, account
    services, key account and PIN (every ``wrong_every``-th call a wrong PIN, then hang up while
    being asked again), each key after hearing the answer to the previous one.

    Callers on different lines are independent, as on a real branch: each starts at its own
    moment and pauses a while between calls (seeded by the line, so a run can be repeated).
    Identical callers started together would key their PINs in the same 100 ms, every time.
    The node must know the account of the line (``ACCOUNTS``) and answer on the second ring or
    later. ``refs`` maps the flow's prompts to WAV files of them. With ``caller_id`` each call
    sends that number as DTMF caller ID before the first ring (after a polarity reversal).
    """
    account, pin = ACCOUNTS[line]
    listen_refs = {name: refs[name] for name in flow.prompts()}
    rng = random.Random(line)
    report = report or CallerReport(line)
    n = 0
    async with SimClient.parse(sim_control) as sim:
        await asyncio.sleep(rng.uniform(0, 8))  # think time of an independent caller, not a wait
        while time.monotonic() < until:
            n += 1
            wrong = n % wrong_every == 0
            # the node must answer on the second ring or later (``answer_on_ring``, as a branch
            # whose caller ID comes between the first and second does): time to queue the call
            # before it is answered, so the keys' place on the call's timeline is known
            cid = {"number": caller_id, "mode": "dtmf"} if caller_id else None
            await sim.call("ring", line=line, cid=cid, cadence=[400, 400], wait_answer=False)
            responses = await _queue(sim, line, flow, account, *(("000000", flow.wrong) if wrong else (pin, flow.verified)))
            measured = not (await sim.call("status"))["lines"][line - 1]["answered"]
            if not await _answered(sim, line, 20):
                report.failures.append(f"call {n}: the node did not answer")
                await sim.call("hangup", line=line)
                continue
            try:
                got = await (_wrong_pin(sim, line, flow, listen_refs) if wrong
                             else _verified(sim, line, flow, listen_refs, report, n))
            except SimError as exc:  # the simulator refused a step: the call went wrong
                report.failures.append(f"call {n}: {exc}")
                await sim.call("hangup", line=line)
                continue
            report.outcomes.append("wrong" if wrong else "verified")
            if measured:  # an answer the caller did not recognise (never came, or came damaged) stays None
                _match(responses, got["prompts"])
                report.responses += responses
            else:
                report.unmeasured_calls += 1
            await asyncio.sleep(rng.uniform(0.3, 2.5))  # think time between calls, not a wait
    return report
