"""Mutual TLS at the hub: a node is let in only with a certificate of the deployment's CA, not
revoked, naming a node of the hub's list that is not connected already; every refusal is logged
at the hub with its reason (issue 10, acceptance 4, the link's half)."""

from __future__ import annotations

import ssl

import aiohttp
import pytest

from central_link import certs
from central_link.protocol import Hello, Welcome, parse
from tests.central_link.harness import make_pki, node_context, start_hub, wait_for


async def _connect(port: int, ctx: ssl.SSLContext):
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(f"wss://127.0.0.1:{port}/node", ssl=ctx, heartbeat=None)
    except BaseException:
        await session.close()
        raise
    return session, ws


async def _hello(ws, node: str) -> object:
    await ws.send_str(Hello(node, "t", "fw", []).to_json())
    return parse((await ws.receive(timeout=5)).data)


@pytest.fixture
async def hub(tmp_path, pki):
    hub = await start_hub(tmp_path, pki)
    yield hub
    await hub.close()


async def test_a_node_with_its_certificate_is_welcomed_and_registered(hub, pki):
    session, ws = await _connect(hub.port, node_context(pki, "node-a"))
    try:
        assert isinstance(await _hello(ws, "node-a"), Welcome)
        row = hub.store.node("node-a")
        assert row["connected"] == 1 and row["software"] == "t" and row["firmware"] == "fw"
        assert hub.registry.connected() == ["node-a"]
    finally:
        await ws.close()
        await session.close()
    await wait_for(lambda: hub.registry.connected() == [], 5, "the hub to see the node go")
    assert hub.store.node("node-a")["connected"] == 0


async def _refused(hub, hub_log, ctx, reason: str) -> None:
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        session, ws = await _connect(hub.port, ctx)
        try:  # TLS 1.3: the client may finish its side before the hub refuses its certificate
            await _hello(ws, "node-a")
            raise AssertionError("the hub let the node in")
        finally:
            await session.close()
    await wait_for(lambda: any(reason in line for line in hub_log.lines), 5, f"the hub to log {reason!r}")
    assert hub.registry.connected() == []


async def test_no_certificate_is_refused_and_logged(hub, pki, hub_log):
    ctx = ssl.create_default_context(cafile=pki.ca[0])
    await _refused(hub, hub_log, ctx, "no client certificate")


async def test_a_certificate_from_another_ca_is_refused_and_logged(hub, pki, hub_log, tmp_path):
    other = make_pki(tmp_path / "other", nodes=("node-a",))  # same node id, another CA
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(*other.node("node-a"))
    ctx.load_verify_locations(pki.ca[0])  # it trusts the real hub
    await _refused(hub, hub_log, ctx, "certificate not signed by this deployment's CA")


async def test_a_revoked_certificate_is_refused_and_logged(hub, pki, hub_log):
    certs.revoke(pki, "node-a")  # while the hub runs: the next handshake sees the new CRL
    await _refused(hub, hub_log, node_context(pki, "node-a"), "certificate revoked")
    session, ws = await _connect(hub.port, node_context(pki, "node-b"))  # another node still gets in
    try:
        assert isinstance(await _hello(ws, "node-b"), Welcome)
    finally:
        await session.close()


async def test_a_node_not_in_the_list_is_refused_and_logged(hub, pki, hub_log):
    certs.make_node(pki, "node-z")
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await _connect(hub.port, node_context(pki, "node-z"))
    assert exc.value.status == 403
    assert any("node 'node-z' is not in the hub's node list" in line for line in hub_log.lines), hub_log.lines


async def test_a_second_connection_with_a_connected_node_id_is_refused_and_logged(hub, pki, hub_log):
    session, ws = await _connect(hub.port, node_context(pki, "node-a"))
    try:
        assert isinstance(await _hello(ws, "node-a"), Welcome)
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await _connect(hub.port, node_context(pki, "node-a"))
        assert exc.value.status == 409
        assert any("node 'node-a' is already connected from 127.0.0.1:" in line for line in hub_log.lines)
        # the first connection is untouched by the refusal
        assert isinstance(await _hello(ws, "node-a"), Welcome)
    finally:
        await session.close()


async def test_a_hello_for_another_node_id_is_an_error_not_a_registration(hub, pki):
    session, ws = await _connect(hub.port, node_context(pki, "node-a"))
    try:
        answer = await _hello(ws, "node-b")
        assert answer.code == "bad_field" and "not this certificate's node id 'node-a'" in answer.detail
        assert hub.store.node("node-b")["connected"] == 0
        assert isinstance(await _hello(ws, "node-a"), Welcome)  # the same connection goes on
    finally:
        await session.close()
