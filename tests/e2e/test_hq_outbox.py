"""Acceptance 5 of issue 10 with real traffic: simulated callers on four lines (right and wrong
PINs, so call records, authentication events and blacklist alarms), the node's uplink through a
loopback proxy that kills the link three times while calls go on; at the end HQ has exactly what
the node has, each item once, and the node's outbox is empty."""

from __future__ import annotations

import asyncio
import contextlib
import time

from central_link import certs
from node_agent.config import load
from node_agent.daemon import Node
from node_agent.prompts import PromptLibrary
from node_agent.store import Store
from simulator.load import ACCOUNTS, caller
from tests.central_link.harness import CuttingProxy, make_pki, start_hub, wait_for
from tests.ivr.harness import CACHE, LOAD_FLOW, WEEKDAY_10AM, wait_idle, write_config

LINES = 4
SECONDS = 18  # of calls: each line makes two or three, the first after up to 8 s of think time


async def test_the_outbox_reaches_hq_exactly_once_through_three_cuts_during_calls(sim_factory, tmp_path):
    sim = sim_factory("--channels", str(LINES))
    pki = make_pki(tmp_path / "certs", nodes=())
    certs.make_node(pki, "test-branch")
    hub = await start_hub(tmp_path, pki, nodes=("test-branch",), heartbeat_s=0.5)
    proxy = CuttingProxy(hub.port)
    port = await proxy.start()
    crt, key = pki.node("test-branch")
    path = write_config(tmp_path, sim.serial, max_failures=1, lines=LINES, answer_on_ring=2)
    path.write_text(path.read_text() + f'\n[hq]\nurl = "wss://127.0.0.1:{port}/node"\ncert = "{crt}"\n'
                    f'key = "{key}"\nca = "{pki.ca[0]}"\n')
    cfg = load(path)
    node = Node(cfg, clock=lambda: WEEKDAY_10AM)
    node.prompts = node.ivr.prompts = PromptLibrary(cfg, cache_dir=CACHE)
    ready = asyncio.Event()
    task = asyncio.create_task(node.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        for n in range(1, LINES + 1):
            node.auth.add_account(*ACCOUNTS[n])
        for n in (1, 2):  # one failure on record already: the first wrong PIN of these lines raises an alarm
            assert node.auth.verify_sync(ACCOUNTS[n][0], "000000", call_id=f"earlier-{n}", line=n).result == "wrong"
        refs = {name: str(p) for name, p in node.prompts.export(tmp_path / "prompts", ["en", "cmn"]).items()}
        until = time.monotonic() + SECONDS
        # lines 1 and 2 key only wrong PINs
        callers = asyncio.gather(*(caller(sim.control, n, until, flow=LOAD_FLOW, refs=refs,
                                          wrong_every=1 if n <= 2 else 2) for n in range(1, LINES + 1)))
        applied_at_cut = []
        for _ in range(3):  # each cut once HQ took two more of the calls' items (~15 in all) on this connection
            seen = hub.counters.applied
            await wait_for(lambda seen=seen: hub.counters.applied >= seen + 2 and node.uplink.state.connected,
                           SECONDS + 20, "more items to reach HQ on a connection")
            assert proxy.cut() == 1
            applied_at_cut.append((hub.counters.applied, callers.done()))
        await callers
        for n in range(1, LINES + 1):
            await wait_idle(node, n, timeout=30)
        await wait_for(lambda: node.store.outbox_count() == 0, 30, "the node's outbox to empty")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.close()
    store = Store(cfg.data_dir / "node.db")
    try:
        node_counts = {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                       for t in ("call_records", "auth_events", "alarms")}
        sent = store.db.execute("SELECT key, kind FROM outbox ORDER BY id").fetchall()
    finally:
        store.close()
        hq = {kind: hub.store.items(kind, "test-branch") for kind in ("call_record", "auth_event", "alarm")}
        await hub.close()
    assert proxy.cuts == 3 and not any(done for _n, done in applied_at_cut), applied_at_cut  # cut during the calls
    assert applied_at_cut[0][0] < applied_at_cut[1][0] < applied_at_cut[2][0], applied_at_cut
    assert node_counts["alarms"] >= 1 and node_counts["auth_events"] >= 4, node_counts  # the traffic had all three
    assert {k: len(v) for k, v in hq.items()} == {"call_record": node_counts["call_records"],
                                                  "auth_event": node_counts["auth_events"],
                                                  "alarm": node_counts["alarms"]}
    for kind, rows in hq.items():
        keys = [r["key"] for r in rows]
        assert len(keys) == len(set(keys)), f"a {kind} twice at HQ"
    assert sorted(r["key"] for rows in hq.values() for r in rows) == sorted(k for k, kind in sent
                                                                           if kind in hq)
