"""The capture wired into a forwarded call as the daemon is to wire it (``Forwarder(filters=lambda call:
DtmfMask(), captures=serve)``): HQ's verify, the caller's keys, the outcome back to HQ, and three
wrong PINs ending the call, over a real aiortc agent on 127.0.0.1."""

from central_link import protocol as p
from central_link.media.ice import IceConfig
from node_agent.dtmf_mask import DtmfMask
from node_agent.verify import serve
from tests.central_link.peers import Agent
from tests.node.fakeline import ACCOUNT, PIN, until
from tests.node.test_forwarding import WAIT, make, talking


def prompted(link, field: str) -> int:
    return sum(m.field == field and m.state == "prompting" for m in link.of(p.VerifyProgress))


async def test_hq_s_verify_runs_the_capture_on_the_forwarded_call(tmp_path):
    node, fwd, link = make(tmp_path, p.Queued("x", 1))
    node.auth.add_account(ACCOUNT, PIN)
    fwd.filters = lambda call: DtmfMask()
    fwd.captures = serve
    agent = Agent(IceConfig.loopback(), 1000)
    try:
        call = await talking(node, fwd, link, agent)
        await until(lambda: len(agent.heard) >= 30, WAIT, "audio")
        fwd.received(p.Verify(call.call_id, "cap-1", ["account", "pin"]))
        await until(lambda: prompted(link, "account") == 1, WAIT, "the account asked")
        node.keys(ACCOUNT + "#")
        await until(lambda: prompted(link, "pin") == 1, WAIT, "the PIN asked")
        node.keys(PIN + "#")
        await until(lambda: link.of(p.VerifyResult), WAIT, "result")
        assert link.of(p.VerifyResult) == [p.VerifyResult(call.call_id, "cap-1", "verified", ACCOUNT)]
        fwd.received(p.Verify(call.call_id, "cap-2", ["account", "pin"]))
        for i in range(3):
            await until(lambda n=i + 2: prompted(link, "account") >= n, WAIT, "the account asked")
            node.keys(ACCOUNT + "#")
            await until(lambda n=i + 2: prompted(link, "pin") >= n, WAIT, "the PIN asked")
            node.keys("000000#")
        await until(lambda: len(link.of(p.VerifyResult)) == 2, WAIT, "result 2")
        assert link.of(p.VerifyResult)[-1].outcome == "failed"
        await until(lambda: link.of(p.CallEnded), WAIT, "the call ends")
        await until(lambda: node.records()[-1]["ended"], WAIT, "the record closed")
        rec = node.records()[-1]
        assert (rec["disposition"], rec["auth_outcome"]) == ("verify_failed", "failed")
        assert PIN not in repr(link.sent) and "000000" not in repr(link.sent)
    finally:
        await agent.close()
        await node.stop()
