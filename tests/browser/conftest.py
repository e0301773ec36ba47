"""One Chromium for all the console tests, in a network namespace with only loopback in it.

The browser is started once per test session (``browser``, ~1 s) from inside the namespace; each
test gets a fresh hub (with a scripted node as its CallControl) and a fresh browser context (a
clean cookie jar, ~50 ms). All of it runs on one event loop (pytest-asyncio's session loop):
Playwright's connection belongs to the loop it was made on. Under xdist the tests are one group
(``xdist_group("browser")`` in the module), so a single worker runs them with a single browser.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from playwright.async_api import expect

from central_link.hq.config import load
from central_link.hq.hub import Hub
from central_link.hq.routing import RoutingConfig
from tests.browser.chromium import CHROMIUM, args, tone_wav
from tests.browser.fake_node import FakeNode
from tests.browser.netns import NetNamespace
from tests.central_link.harness import hub_config, make_pki

MIC_HZ = 1000  # the agent's fake microphone: the node must hear this
NODE_HZ = 600  # the caller's tone from the fake node: the page must hear this
PASSWORDS = {"alice": "alice-secret-1", "sue": "sue-secret-22"}
WRAP_UP_S = 2.0


@pytest.fixture(scope="session")
def netns() -> Iterator[NetNamespace]:
    ns = NetNamespace()
    yield ns
    ns.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(netns, tmp_path_factory) -> AsyncIterator:
    if not CHROMIUM.exists():
        pytest.fail(f"no {CHROMIUM}: install Debian's chromium (`make setup` does: it is in the Makefile's APT list)")
    from playwright.async_api import async_playwright

    mic = tone_wav(tmp_path_factory.mktemp("mic") / f"mic-{MIC_HZ}hz.wav", MIC_HZ)
    with netns.inside():  # the driver and the browser it starts are born in the namespace
        pw = await async_playwright().start()
        try:
            chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=args(mic), headless=True)
        except BaseException:
            await pw.stop()
            raise
    yield chromium
    await chromium.close()
    await pw.stop()


@pytest.fixture(autouse=True)
def _inside(netns) -> Iterator[None]:
    """The test's thread in the namespace: the hub's and the node's sockets are made there."""
    with netns.inside():
        yield


@dataclass
class HQ:
    hub: Hub
    node: FakeNode
    url: str  # the console page


@pytest_asyncio.fixture(loop_scope="session")
async def hq(tmp_path) -> AsyncIterator[HQ]:
    pki = make_pki(tmp_path / "certs", ("sz-futian-01",))
    hub = Hub(load(hub_config(tmp_path, pki, ("sz-futian-01",))))
    hub.router.config = RoutingConfig(offer_timeout_s=60, wrap_up_s=WRAP_UP_S, max_no_answer=3)
    hub.store.add_agent("alice", "agent", PASSWORDS["alice"])
    hub.store.add_agent("sue", "supervisor", PASSWORDS["sue"])
    node = FakeNode(NODE_HZ)
    hub.agent_api.calls = node
    await hub.start()
    try:
        yield HQ(hub, node, f"https://127.0.0.1:{hub.console_port}/agent/")
    finally:
        await node.close()
        await hub.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser) -> AsyncIterator:
    ctx = await browser.new_context(ignore_https_errors=True)  # the hub's certificate is the dev CA's
    ctx.set_default_timeout(15_000)
    # and for expect(): its own 5 s default was missed once on a loaded machine, where answering
    # (microphone, ICE gathering, the node's answer) took longer
    expect.set_options(timeout=15_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context):
    return await context.new_page()
