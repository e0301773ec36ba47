"""The link end to end on 127.0.0.1: every bad frame is answered with an error and the connection
goes on (both ends); the node's outbox reaches HQ exactly once and in order with the link cut three
times mid-stream; the reconnect backoff is bounded and jittered (issue 10, acceptance 5)."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest
from aiohttp import web

from central_link.protocol import Error, HeartbeatAck, Hello, OutboxItem, Welcome, parse
from central_link.uplink import Backoff
from node_agent.hq_link import StoreOutbox
from node_agent.store import Store
from tests.central_link.harness import CuttingProxy, MemoryOutbox, node_context, start_hub, uplink, wait_for

BAD_FRAMES = [  # (frame, the error's code, words its detail must have)
    ("not json", "malformed", "not JSON"),
    ("[1, 2]", "malformed", "a message is a JSON object, not list"),
    ('{"v": 2, "type": "heartbeat", "seq": 1}', "unknown_version", "version 2 is not spoken here"),
    ('{"type": "heartbeat", "seq": 1}', "unknown_version", "version null"),
    ('{"v": 1, "type": "teleport"}', "unknown_type", 'type "teleport" is not one of'),
    ('{"v": 1, "type": "heartbeat"}', "bad_field", "heartbeat: seq is missing"),
    ('{"v": 1, "type": "heartbeat", "seq": "7"}', "bad_field", "heartbeat.seq must be int, not a string of 1 character"),
    ('{"v": 1, "type": "heartbeat", "seq": 1, "colour": "red"}', "bad_field", "unknown field \"colour\""),
    ('{"v": 1, "type": "outbox", "key": "k1", "kind": "gossip", "payload": {}}', "bad_field", 'kind "gossip"'),
    ('{"v": 1, "type": "ack", "key": "k1"}', "unexpected", "ack is sent by the hub, not to it"),
    (b"\x00\x01", "malformed", "not a binary one"),
    ("x" * 300_000, "malformed", "at most"),
]


@pytest.fixture
async def hub(tmp_path, pki):
    hub = await start_hub(tmp_path, pki)
    yield hub
    await hub.close()


async def test_every_bad_frame_is_answered_with_an_error_and_the_connection_goes_on(hub, pki):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"wss://127.0.0.1:{hub.port}/node", ssl=node_context(pki, "node-a"),
                                      heartbeat=None, max_msg_size=0) as ws:
            await ws.send_str('{"v": 1, "type": "heartbeat", "seq": 1}')  # before hello
            first = parse((await ws.receive(timeout=5)).data)
            assert (first.code, first.detail) == ("unexpected", "heartbeat before hello: send hello first")
            await ws.send_str(Hello("node-a", "t", "fw", []).to_json())
            assert isinstance(parse((await ws.receive(timeout=5)).data), Welcome)
            for frame, code, words in BAD_FRAMES:
                await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
                answer = parse((await ws.receive(timeout=5)).data)
                assert isinstance(answer, Error), frame[:40]
                assert answer.code == code and words in answer.detail, (frame[:40], answer)
            await ws.send_str('{"v": 1, "type": "heartbeat", "seq": 7}')
            assert parse((await ws.receive(timeout=5)).data) == HeartbeatAck(7)
    assert hub.counters.errors_sent == len(BAD_FRAMES) + 1


async def test_the_node_answers_a_bad_frame_from_hq_with_an_error_and_stays_connected():
    """A hub of the test's own (plain ws on 127.0.0.1) that sends the node garbage."""
    seen: list[object] = []
    done = asyncio.Event()

    async def fake_hub(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert isinstance(parse((await ws.receive()).data), Hello)
        await ws.send_str(Welcome("fake", 0.05).to_json())
        await ws.send_str('{"v": 1, "type": "ack"}')  # no key
        await ws.send_str('{"v": 9, "type": "ack", "key": "a"}')
        async for frame in ws:
            msg = parse(frame.data)
            seen.append(msg)
            if msg.TYPE == "heartbeat":
                await ws.send_str(HeartbeatAck(msg.seq).to_json())
            if sum(isinstance(m, Error) for m in seen) == 2 and sum(m.TYPE == "heartbeat" for m in seen) >= 5:
                done.set()  # two errors, and the heartbeats went on after them
        return ws

    app = web.Application()
    app.router.add_get("/node", fake_hub)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    up = uplink(f"ws://127.0.0.1:{port}/node", False, "node-a", MemoryOutbox())
    task = asyncio.create_task(up.run())
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
    errors = [m for m in seen if isinstance(m, Error)]
    assert [e.code for e in errors] == ["bad_field", "unknown_version"]
    assert "ack: key is missing" in errors[0].detail and "version 9" in errors[1].detail
    assert up.state.connects == 1  # one connection throughout


def _fill(store: Store, n: int) -> list[str]:
    kinds = ["call_record", "auth_event", "alarm", "callback", "recording", "alarm_cleared"]
    keys = []
    for i in range(n):
        key = f"item-{i:04d}"
        with store.transaction() as db:
            store.enqueue(db, kinds[i % len(kinds)], key, {"n": i, "note": "x" * 150})
        keys.append(key)
    return keys


async def test_the_outbox_reaches_hq_exactly_once_and_in_order_through_three_cuts(tmp_path, pki):
    hub = await start_hub(tmp_path, pki)
    store = Store(tmp_path / "node" / "node.db")
    keys = _fill(store, 250)
    # each connection is killed after this many bytes from the node (the handshake and hello take ~4 kB; an item ~300 B; what the hub had read but not applied when the link died is lost with it, and sent again)
    proxy = CuttingProxy(hub.port, [12000, 20000, 28000])
    port = await proxy.start()
    delays: list[float] = []

    async def sleep(d: float) -> None:
        delays.append(d)
        await asyncio.sleep(d)
    up = uplink(f"wss://127.0.0.1:{port}/node", node_context(pki, "node-a"), "node-a", StoreOutbox(store),
                sleep=sleep)
    task = asyncio.create_task(up.run())
    try:
        await wait_for(lambda: store.outbox_count() == 0, 30, "the node's outbox to empty")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    try:
        assert proxy.cuts == 3 and proxy.connections == 4
        await wait_for(lambda: len(hub.counters.per_connection) == 4, 5, "the hub to close the last connection")
        applied = [n for _node, n in hub.counters.per_connection]
        assert all(n > 0 for n in applied) and sum(applied) == len(keys), applied  # each cut came mid-traffic
        rows = hub.store.db.execute("SELECT key FROM applied WHERE node = 'node-a' ORDER BY rowid").fetchall()
        assert [r[0] for r in rows] == keys  # each once, in the outbox's order
        got = []
        for kind in ("call_record", "auth_event", "alarm", "callback", "recording", "alarm_cleared"):
            got += [(r["key"], r["payload"]["n"]) for r in hub.store.items(kind, "node-a")]
        assert sorted(got) == [(k, i) for i, k in enumerate(keys)]  # no item twice in any table
        assert hub.counters.applied == len(keys)
        assert hub.counters.repeats > 0  # acks were lost in the cuts: the hub got items again, and applied none twice
        assert len(delays) == 3 and all(0.025 <= d <= 0.05 for d in delays), delays  # reset after each welcome
    finally:
        await proxy.close()
        store.close()
        await hub.close()


def test_backoff_doubles_to_its_cap_with_jitter_and_resets():
    b = Backoff(base=0.5, cap=8.0, rng=random.Random(1))
    delays = [b.next() for _ in range(12)]
    ceilings = [min(8.0, 0.5 * 2 ** n) for n in range(12)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert max(delays) <= 8.0 and delays[-1] >= 4.0  # bounded, and it got there
    assert len({round(d / c, 6) for d, c in zip(delays, ceilings, strict=True)}) == 12  # jittered, not fixed
    other = Backoff(base=0.5, cap=8.0, rng=random.Random(2))
    assert [other.next() for _ in range(12)] != delays  # two nodes do not come back in step
    b.reset()
    assert 0.25 <= b.next() <= 0.5


async def test_the_uplink_waits_the_backoff_between_attempts_on_a_fake_clock(pki):
    """Nothing listens on the port: each attempt fails at once; the fake clock records each wait."""
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # a free port, closed again: connections are refused
    waits: list[float] = []

    class Stop(Exception):
        pass

    async def clock(d: float) -> None:
        waits.append(d)
        if len(waits) == 8:
            raise Stop

    up = uplink(f"wss://127.0.0.1:{port}/node", node_context(pki, "node-a"), "node-a", MemoryOutbox(),
                backoff=Backoff(base=1.0, cap=10.0, rng=random.Random(7)), sleep=clock)
    with pytest.raises(Stop):
        await asyncio.wait_for(up.run(), 10)
    ceilings = [min(10.0, 2.0 ** n) for n in range(8)]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True)), waits
    assert waits[-1] <= 10.0 and "Connect" in up.state.last_error


async def test_a_hub_that_answers_no_heartbeat_is_left_and_the_node_reconnects():
    """A hub of the test's own that welcomes the node and then answers nothing."""
    connections: list[int] = []

    async def mute_hub(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connections.append(1)
        await ws.receive()
        await ws.send_str(Welcome("mute", 0.05).to_json())
        async for _frame in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/node", mute_hub)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    up = uplink(f"ws://127.0.0.1:{port}/node", False, "node-a", MemoryOutbox())
    task = asyncio.create_task(up.run())
    try:
        await wait_for(lambda: len(connections) >= 2, 10, "the node to give up on the mute hub and come back")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
    assert "answered none of the last 3 heartbeats" in up.state.last_error


async def test_the_hub_drops_a_node_that_goes_silent(tmp_path, pki, hub_log):
    hub = await start_hub(tmp_path, pki, heartbeat_s=0.1)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"wss://127.0.0.1:{hub.port}/node", ssl=node_context(pki, "node-a"),
                                          heartbeat=None) as ws:
                await ws.send_str(Hello("node-a", "t", "fw", []).to_json())
                assert isinstance(parse((await ws.receive(timeout=5)).data), Welcome)
                closed = await ws.receive(timeout=5)  # then silence: the hub closes after 3 intervals
                assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closed
        await wait_for(lambda: hub.registry.connected() == [], 5, "the hub to release the node id")
        assert any("node node-a sent nothing for 0.3 s" in line for line in hub_log.lines), hub_log.lines
    finally:
        await hub.close()


async def test_a_fault_in_the_outbox_does_not_stop_the_uplink(hub, pki):
    """The node's calls must not depend on the link: an outbox that fails is logged, the link
    backs off and comes back, and delivers once the outbox works again."""
    class Flaky(MemoryOutbox):
        fail = 2

        def pending(self, limit):
            if self.fail:
                self.fail -= 1
                raise RuntimeError("database is busy")
            return super().pending(limit)

    outbox = Flaky([OutboxItem("k-1", "callback", {"number": "x"})])
    up = uplink(f"wss://127.0.0.1:{hub.port}/node", node_context(pki, "node-a"), "node-a", outbox)
    task = asyncio.create_task(up.run())
    try:
        await wait_for(lambda: not outbox.items, 15, "the item to be delivered after the faults")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert up.state.connects == 3 and [r["key"] for r in hub.store.items("callback")] == ["k-1"]
