"""Secure capture (node_agent.verify) over the real IVR building blocks, Authenticator and store, on a
line that plays each prompt at once: a scripted caller keys when a prompt has played to its end."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from node_agent.auth import Authenticator, AuthPrompts
from node_agent.dtmf_mask import DtmfMask
from node_agent.ivr import Call, Ivr
from node_agent.store import Store
from node_agent.verify import CaptureError, CaptureSettings, Progress, SecureCapture, serve

ACCOUNT, PIN, UNKNOWN = "6222001234", "482913", "6222009999"
CHEAP_KDF = "scrypt:n=2,r=1,p=1"
NAMES = ("account", "pin", "wrong", "locked", "bye")
PROMPTS = AuthPrompts("account", "pin", "wrong", "locked", "bye")
SETTINGS = CaptureSettings(PROMPTS, first_ms=2000, inter_ms=2000)


class Prompts:
    """Each prompt is one frame whose samples say which prompt it is."""

    def get(self, name: str, language: str) -> np.ndarray:
        return np.full(160, 1000 + NAMES.index(name), np.int16)


def name_of(pcm) -> str:
    return NAMES[int(pcm[0]) - 1000]


@dataclass
class Caller:
    """Keys the next answer each time the account or PIN prompt has played."""

    answers: dict[str, list[str]]
    call: Call | None = None

    def played(self, name: str) -> None:
        queue = self.answers.get(name)
        if queue:
            for k in queue.pop(0):
                self.call.keys.push(k)


@dataclass
class Audio:
    caller: Caller
    playing: list = field(default_factory=list)

    def write(self, pcm) -> None:
        self.playing.append(pcm)

    def clear(self) -> None:
        self.playing.clear()

    async def drained(self) -> None:
        await asyncio.sleep(0)
        if self.playing:
            self.caller.played(name_of(self.playing.pop()))


class RecordingMask(DtmfMask):
    """The real mask, noting when captures start and end and whether it was capturing at each prompt."""

    def __init__(self, events: list) -> None:
        super().__init__()
        self.events = events

    def capture_start(self) -> None:
        super().capture_start()
        self.events.append("capture_start")

    def capture_end(self) -> None:
        super().capture_end()
        self.events.append("capture_end")

    def play(self, pcm) -> None:
        super().play(pcm)
        self.events.append(("prompt", name_of(pcm), self.capturing))


@dataclass
class Setup:
    auth: Authenticator
    ivr: Ivr
    store: Store
    events: list = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)

    def capture(self, answers: dict[str, list[str]], *, call_id: str = "call-1", settings=SETTINGS,
                on_progress=None) -> tuple[SecureCapture, Call, Caller]:
        caller = Caller({k: list(v) for k, v in answers.items()})
        call = Call(call_id, SimpleNamespace(audio=Audio(caller), number=1), "en")
        caller.call = call
        mask = RecordingMask(self.events)

        def progress(p: Progress) -> None:
            self.progress.append(p)
            self.events.append(("progress", p.state, mask.capturing))
            if on_progress is not None:
                on_progress(p)
        return SecureCapture(call, self.ivr, mask, settings, on_progress=progress), call, caller

    def heard(self) -> list[str]:
        return [e[1] for e in self.events if isinstance(e, tuple) and e[0] == "prompt"]

    def attempts(self, call_id: str = "call-1") -> list[str]:
        return [r["outcome"] for r in self.store.db.query(
            "SELECT outcome FROM auth_events WHERE call_id = ? ORDER BY id", [call_id])]


@pytest.fixture
def node(tmp_path):
    store = Store(tmp_path / "node.db")
    auth = Authenticator(store, max_daily_failures=5, kdf=CHEAP_KDF)
    auth.add_account(ACCOUNT, PIN)
    ivr = Ivr(SimpleNamespace(data_dir=tmp_path), Prompts(), auth, store)
    yield Setup(auth, ivr, store)
    store.close()


def run(coro, timeout: float = 20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def assert_masked_throughout(events: list) -> None:
    assert events[0] == "capture_start" and events[-1] == "capture_end" and events.count("capture_start") == 1
    inside = [e for e in events[1:-1] if isinstance(e, tuple)]
    assert inside and all(capturing for _, _, capturing in inside), events


def test_a_caller_who_keys_the_right_pin_is_verified_with_the_account_id(node, caplog):
    caplog.set_level(logging.DEBUG)
    capture, call, _ = node.capture({"account": [ACCOUNT + "#"], "pin": [PIN + "#"]})
    outcome = run(capture.run())
    assert (outcome.result, outcome.account, outcome.end_call) == ("verified", ACCOUNT, False)
    assert node.heard() == ["account", "pin"]
    assert_masked_throughout(node.events)
    assert [(p.field, p.state) for p in node.progress][:3] == [("account", "started"), ("account", "prompting"),
                                                               ("account", "keying")]
    assert [p.keyed for p in node.progress if p.field == "pin" and p.state == "keying"] == list(range(1, 7))
    assert node.progress[-1] == Progress("pin", 0, "checking")
    assert (call.auth_outcome, call.account) == ("verified", ACCOUNT) and len(call.keys) == 0
    # the PIN is nowhere the agent, HQ or a log could see
    seen = json.dumps([p.__dict__ for p in node.progress]) + repr(outcome)
    seen += "\n".join(r.getMessage() for r in caplog.records)
    assert PIN not in seen and "capture on call call-1: verified" in caplog.text


def test_three_wrong_pins_fail_and_the_call_follows_the_rule(node, caplog):
    caplog.set_level(logging.DEBUG)
    # the second try names no account: it must sound exactly like a wrong PIN
    answers = {"account": [ACCOUNT + "#", UNKNOWN + "#", ACCOUNT + "#"], "pin": ["000000#", "111111#", "222222#"]}
    capture, call, _ = node.capture(answers)
    outcome = run(capture.run())
    assert (outcome.result, outcome.account, outcome.end_call) == ("failed", "", True)
    assert node.heard() == ["account", "pin", "wrong"] * 3 + ["bye"]
    assert node.attempts() == ["wrong"] * 3 and call.auth_outcome == "failed"
    assert [p.state for p in node.progress].count("invalid") == 2
    assert_masked_throughout(node.events)
    assert not any(pin in caplog.text for pin in ("000000", "111111", "222222", UNKNOWN))
    # the rule "agent": no goodbye, the caller stays with the agent
    node.events.clear()
    capture, _, _ = node.capture(answers, call_id="call-2", settings=CaptureSettings(PROMPTS, on_fail="agent"))
    outcome = run(capture.run())
    assert (outcome.result, outcome.end_call) == ("failed", False)
    assert node.heard() == ["account", "pin", "wrong"] * 3
    # and a call that has used up its tries gets no more: a new capture on it fails at once
    node.events.clear()
    again, _, _ = node.capture({"account": [ACCOUNT + "#"], "pin": [PIN + "#"]}, call_id="call-2")
    assert run(again.run()).result == "failed" and node.attempts("call-2") == ["wrong"] * 3


def test_a_blacklisted_account_is_locked_even_with_the_right_pin(tmp_path):
    store = Store(tmp_path / "node.db")
    auth = Authenticator(store, max_daily_failures=1, kdf=CHEAP_KDF)
    auth.add_account(ACCOUNT, PIN)
    for n in range(2):
        asyncio.run(auth.verify(ACCOUNT, "000000", call_id=f"earlier-{n}"))
    assert [a["account"] for a in auth.alarms()] == [ACCOUNT]
    node = Setup(auth, Ivr(SimpleNamespace(data_dir=tmp_path), Prompts(), auth, store), store)
    capture, _, _ = node.capture({"account": [ACCOUNT + "#"], "pin": [PIN + "#"]})
    outcome = run(capture.run())
    assert (outcome.result, outcome.account, outcome.end_call) == ("locked", "", True)
    assert node.heard() == ["account", "pin", "locked", "bye"]
    assert_masked_throughout(node.events)
    store.close()


def test_the_clear_key_empties_the_field_being_keyed(node):
    capture, _, _ = node.capture({"account": ["62220099*" + ACCOUNT + "#"], "pin": ["11*" + PIN + "#"]})
    outcome = run(capture.run())
    assert outcome.result == "verified" and node.attempts() == ["verified"]
    keyed = [p.keyed for p in node.progress if p.field == "account" and p.state == "keying"]
    assert keyed == list(range(1, 9)) + [0] + list(range(1, 11))


def test_the_agent_can_cancel_mid_field(node):
    def cancel_at_three(p: Progress) -> None:
        if p.state == "keying" and p.keyed == 3:
            asyncio.get_running_loop().call_soon(capture.cancel)

    capture, call, _ = node.capture({"account": ["622"]}, on_progress=cancel_at_three)
    outcome = run(capture.run())
    assert (outcome.result, outcome.account) == ("cancelled", "")
    assert node.attempts() == [] and len(call.keys) == 0 and not capture.mask.capturing
    assert_masked_throughout(node.events)
    assert not capture.cancel()  # over: nothing to cancel


def test_the_agent_can_ask_again_for_a_field(node):
    asked = []

    def again_while_keying_the_pin(p: Progress) -> None:
        if p.field == "pin" and p.state == "keying" and p.keyed == 2 and not asked:
            asked.append(asyncio.get_running_loop().call_soon(lambda: asked.append(capture.again("account"))))

    # the caller keys two digits of a PIN and waits; asked again, keys account and PIN
    answers = {"account": ["6222007777#", ACCOUNT + "#"], "pin": ["48", PIN + "#"]}
    capture, _, _ = node.capture(answers, on_progress=again_while_keying_the_pin)
    outcome = run(capture.run())
    assert outcome.result == "verified" and asked[-1] is True
    assert node.heard() == ["account", "pin", "account", "pin"]
    assert node.attempts() == ["verified"]  # the first, interrupted entry was never checked
    assert not capture.again("pin")  # over
    with pytest.raises(CaptureError, match="not one of account, pin"):
        capture.again("name")


def test_the_pin_alone_for_a_caller_who_authenticated_in_the_ivr(node):
    capture, call, _ = node.capture({"pin": [PIN + "#"]})
    with pytest.raises(CaptureError, match="ask for account and pin"):
        run(capture.run(fields=("pin",)))
    call.auth_outcome, call.account = "verified", ACCOUNT
    capture2 = SecureCapture(call, node.ivr, DtmfMask(), SETTINGS)
    call.line.audio.caller.answers = {"pin": [PIN + "#"]}
    assert run(capture2.run(fields=("pin",))).result == "verified"
    with pytest.raises(CaptureError, match="account, pin or a part of them"):
        run(SecureCapture(call, node.ivr, DtmfMask(), SETTINGS).run(fields=("pin", "account")))


def test_settings_come_from_the_flow_s_authenticate_node():
    from node_agent.config import Flow, FlowNode

    auth = FlowNode("auth", "authenticate", {"account_prompt": "a", "pin_prompt": "p", "wrong_prompt": "w",
                                             "blacklisted_prompt": "l", "goodbye_prompt": "g",
                                             "first_digit_timeout_ms": 3000, "next": "x", "on_fail": "y"})
    s = CaptureSettings.from_flow(Flow("main", "auth", {"auth": auth}), on_fail="agent")
    assert (s.prompts, s.first_ms, s.inter_ms, s.on_fail) == (AuthPrompts("a", "p", "w", "l", "g"), 3000, 4000, "agent")
    with pytest.raises(CaptureError, match="no authenticate node"):
        CaptureSettings.from_flow(Flow("main", "x", {}))
    with pytest.raises(CaptureError, match="on_fail 'drop' is not one of hangup, agent"):
        CaptureSettings(PROMPTS, on_fail="drop")


def test_serve_runs_a_capture_for_hq_s_request_with_its_commands(node):
    capture, call, caller = node.capture({"account": ["62", ACCOUNT + "#"], "pin": [PIN + "#"]})
    sent = []

    async def scenario():
        commands: asyncio.Queue = asyncio.Queue()

        def progress(field, keyed, state):
            sent.append(("progress", field, keyed, state))
            if (field, keyed, state) == ("account", 2, "keying") and len(sent) < 5:  # asked again, once
                commands.put_nowait(SimpleNamespace(call=call.call_id, capture="cap-1", field="account"))

        line_port = SimpleNamespace(write=lambda frame: sent.append(("agent audio to the line",)))
        session = SimpleNamespace(sink=line_port)
        request = SimpleNamespace(call=call, fields=["account", "pin"], progress=progress, commands=commands,
                                  session=session,
                                  result=lambda outcome, account="": sent.append(("result", outcome, account)))
        serving = asyncio.ensure_future(serve(request, SETTINGS, ivr=node.ivr, mask=DtmfMask()))
        while not sent:
            await asyncio.sleep(0)
        session.sink.write(np.zeros(160, np.int16))  # the agent talks during the capture: not played
        first = await serving
        assert session.sink is line_port  # and after it, heard again
        # a cancel from the agent, mid-field
        caller.answers = {"account": ["6"]}
        request.result = lambda outcome, account="": sent.append(("result", outcome, account))

        def cancel_at_one(field, keyed, state):
            sent.append(("progress", field, keyed, state))
            if state == "keying":
                commands.put_nowait(SimpleNamespace(call=call.call_id, capture="cap-2"))

        request.progress = cancel_at_one
        request.ivr, request.filter = node.ivr, DtmfMask()  # as the forwarding's request has them
        second = await serve(request, SETTINGS)
        bad = SimpleNamespace(**{**request.__dict__, "fields": ["name"]})
        third = await serve(bad, SETTINGS)
        request.filter = SimpleNamespace(process=lambda frame: frame)  # not the mask: the agent would hear
        fourth = await serve(request, SETTINGS)
        return first, second, third, fourth

    first, second, third, fourth = run(scenario())
    assert (first.result, second.result, third, fourth) == ("verified", "cancelled", None, None)
    assert [e for e in sent if e[0] == "result"] == [("result", "verified", ACCOUNT), ("result", "cancelled", ""),
                                                     ("result", "unavailable", ""), ("result", "unavailable", "")]
    assert PIN not in repr(sent) and ("agent audio to the line",) not in sent


def test_one_capture_at_a_time_on_a_call_and_a_hang_up_ends_it(node):
    async def scenario():
        capture, call, caller = node.capture({"account": ["62"]})
        first = asyncio.ensure_future(capture.run())
        while not capture.mask.capturing:
            await asyncio.sleep(0)
        second = SecureCapture(call, node.ivr, capture.mask, SETTINGS)
        with pytest.raises(CaptureError, match="another capture is running"):
            await second.run()
        assert capture.mask.capturing  # the refused one did not end the running one's mute
        results = []
        request = SimpleNamespace(call=call, fields=["account", "pin"], progress=lambda *a: None,
                                  commands=asyncio.Queue(), result=lambda o, a="": results.append(o))
        capture.cancel()
        await first
        served = asyncio.ensure_future(serve(request, SETTINGS, ivr=node.ivr, mask=capture.mask))
        while not capture.mask.capturing:
            await asyncio.sleep(0)
        call.ended.set()  # the caller hangs up
        return await served, results, capture.mask.capturing

    outcome, results, capturing = run(scenario())
    assert outcome is None and results == ["cancelled"] and not capturing


def test_serve_ends_the_call_when_the_rule_says_so(node):
    wrong = {"account": [ACCOUNT + "#"] * 3, "pin": ["000000#"] * 3}
    _, call, _ = node.capture(wrong)
    ended, results = [], []
    request = SimpleNamespace(call=call, ivr=node.ivr, filter=DtmfMask(), fields=["account", "pin"],
                              progress=lambda *a: None, commands=asyncio.Queue(),
                              result=lambda o, a="": results.append(o), end_call=lambda: ended.append(True))
    outcome = run(serve(request, SETTINGS))
    assert (outcome.result, outcome.end_call, results, ended) == ("failed", True, ["failed"], [True])
