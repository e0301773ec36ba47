"""All eight lines busy with IVR calls for two minutes: every call ends with the right result,
and every caller hears the node answer each of its keys. The node answers on the second ring, as
the demo branch does, so each call's caller ID window streams on-hook first; lines 5-8 send DTMF
caller ID before the first ring, which every call record keeps."""

from __future__ import annotations

import asyncio
import json
import os
import time

from simulator.load import ACCOUNTS, caller
from tests.ivr.harness import LOAD_FLOW, branch, records, wait_idle

SECONDS = int(os.environ.get("LOAD_SECONDS", "120"))
CALLER_ID = {n: f"07558888100{n}" for n in (5, 6, 7, 8)}  # DTMF caller ID before the first ring


async def test_eight_lines_of_ivr_calls_for_two_minutes(sim_factory, tmp_path):
    sim = sim_factory("--channels", "8")
    async with branch(sim, tmp_path, lines=8, answer_on_ring=2) as (node, _client, refs):
        for account, pin in ACCOUNTS.values():
            node.auth.add_account(account, pin)
        until = time.monotonic() + SECONDS
        reports = await asyncio.gather(*(caller(sim.control, n, until, flow=LOAD_FLOW, refs=refs, wrong_every=4,
                                                caller_id=CALLER_ID.get(n, "")) for n in range(1, 9)))
        for n in range(1, 9):  # the last calls cleared and their records written
            await wait_idle(node, n, timeout=30)
        stats = await node.board.stats()
    failures = [f"line {rep.line}: {f}" for rep in reports for f in rep.failures]
    assert not failures, failures[:3]
    expected = [r.outcomes for r in reports]
    rec = records(node)
    by_line = {n: [r for r in rec if r["line"] == n] for n in range(1, 9)}
    for n in range(1, 9):
        got = [r["auth_outcome"] for r in by_line[n]]
        wrong = [(i, r) for i, (r, want) in enumerate(zip(by_line[n], expected[n - 1])) if r["auth_outcome"] != want]
        assert got == expected[n - 1], f"line {n}: {len(got)} records for {len(expected[n - 1])} calls; first wrong: {wrong[:1]}"
        for r, want in zip(by_line[n], expected[n - 1]):
            path = json.loads(r["ivr_path"])
            if want == "verified":
                assert r["disposition"] == "completed" and path[-2:] == ["ok", "bye"], r
            else:
                assert r["disposition"] == "caller_hangup" and path[-1] == "auth", r
    total = sum(len(e) for e in expected)
    assert total >= 8 * SECONDS // 20  # each line kept busy: a call takes about 12 s
    for n in range(1, 9):
        # on-hook streaming (caller ID windows) never crowds the calls' audio off the link
        card = stats["card"][f"line{n}"]
        assert card["overruns"] == 0, (n, card)
    for n in range(1, 9):  # the DTMF caller ID sent before the first ring is in every call's record
        numbers = [r["caller_number"] for r in by_line[n]]
        assert all(numbers) if n in CALLER_ID else not any(numbers), (n, numbers)
        # under this load the caller ID receiver now and then merges a repeated digit ("8888" heard
        # as "888", with no frame lost): at most one such call a line, not the record's fault
        wrong = [x for x in numbers if x != CALLER_ID.get(n, "")]
        assert len(wrong) <= 1, (n, numbers, stats["lines"][n])
    # the callers heard the node answer their keys (the latency targets are `make bench`'s)
    timed = [r for rep in reports for r in rep.responses]
    assert len(timed) >= 4 * (total - 8), "the callers could not time most of their calls"
    missed = [(rep.line, r) for rep in reports for r in rep.missed()]
    # an answer whose first half second came damaged is not recognised: on a loaded machine the
    # odd one can be, and the audio counters above say why; more than that is a fault
    assert len(missed) <= len(timed) // 50, f"{len(missed)} of {len(timed)} answers not heard: {missed[:3]}"
    heard = [r.ms for r in timed if r.ms is not None]
    assert all(0 < ms < 2000 for ms in heard), sorted(heard)[-3:]
