"""The node's side wired as the daemon wires it: the [hq] section of its configuration, its Store's
outbox, the certificate files `nodectl certs` made; what the node had queued reaches the hub and is
marked acknowledged in the node's database (kept, never sent again)."""

from __future__ import annotations

import asyncio

from central_link import certs
from central_link.protocol import LineState
from node_agent.config import load
from node_agent.hq_link import make_uplink
from node_agent.store import Store
from tests.central_link.harness import start_hub, wait_for
from tests.node.test_config import GOOD


async def test_a_configured_node_delivers_its_outbox_to_the_hub(tmp_path, pki):
    hub = await start_hub(tmp_path, pki, nodes=("sz-futian-01",))
    certs.make_node(pki, "sz-futian-01")
    crt, key = pki.node("sz-futian-01")
    path = tmp_path / "branch.toml"
    path.write_text(GOOD + f'\n[hq]\nurl = "wss://127.0.0.1:{hub.port}/node"\ncert = "{crt}"\nkey = "{key}"\n'
                    f'ca = "{pki.ca[0]}"\n', encoding="utf-8")
    cfg = load(path)
    store = Store(tmp_path / "node.db")
    with store.transaction() as db:
        store.enqueue(db, "call_record", "call-1", {"id": "1", "line": 1})
        store.enqueue(db, "alarm", "alarm-1", {"alarm": 1, "kind": "blacklist"})
    up = make_uplink(cfg.hq, cfg.node_id, store, lambda: "1.4.0", lambda: [LineState(1, "0755-8888-0001", "idle")])
    task = asyncio.create_task(up.run())
    try:
        await wait_for(lambda: store.outbox_count() == 0, 15, "the node's outbox to empty")
        row = hub.store.node("sz-futian-01")
        assert row["connected"] == 1 and row["firmware"] == "1.4.0" and row["software"].startswith("branchnode ")
        assert row["lines"] == [{"line": 1, "number": "0755-8888-0001", "state": "idle"}]
        assert [r["key"] for r in hub.store.items("call_record")] == ["call-1"]
        assert [r["payload"] for r in hub.store.items("alarm")] == [{"alarm": 1, "kind": "blacklist"}]
        acked = store.db.execute("SELECT key FROM outbox WHERE acked_at IS NOT NULL ORDER BY id").fetchall()
        assert [k for (k,) in acked] == ["call-1", "alarm-1"]  # marked, kept for the record
        assert up.state.connected and up.state.sent == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()
        await hub.close()


async def test_the_daemon_runs_the_uplink_only_with_an_hq_section(tmp_path, pki):
    """The node daemon on a fake card: with [hq] the hub sees it and its lines, and status() says
    so; the same node without [hq] has no uplink."""
    from node_agent.daemon import Node
    from tests.drivers.fakecard import FakeCard
    from tests.hal.test_linecard import board_on

    hub = await start_hub(tmp_path, pki, nodes=("sz-futian-01",))
    certs.make_node(pki, "sz-futian-01")
    crt, key = pki.node("sz-futian-01")
    path = tmp_path / "branch.toml"
    path.write_text(GOOD, encoding="utf-8")
    alone = Node(load(path))
    try:
        assert alone.config.hq is None and alone.status()["hq"] is None
    finally:
        alone.store.close()
    path.write_text(GOOD + f'\n[hq]\nurl = "wss://127.0.0.1:{hub.port}/node"\ncert = "{crt}"\nkey = "{key}"\n'
                    f'ca = "{pki.ca[0]}"\n', encoding="utf-8")
    node = Node(load(path))
    node.board = board_on(FakeCard())
    ready = asyncio.Event()
    task = asyncio.create_task(node.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)  # prompts are synthesised first
        await wait_for(lambda: node.uplink is not None and node.uplink.state.connected, 15, "the uplink to connect")
        row = hub.store.node("sz-futian-01")
        assert row["connected"] == 1 and row["lines"] == [{"line": 1, "number": "0755-8888-0001", "state": "idle"}]
        assert node.status()["hq"]["connected"] is True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await hub.close()
