"""A branch for IVR tests: a simulated card (own process), the node in this process with a
fixed clock, and the node's prompts exported as WAVs so the caller can say which it heard."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path

from node_agent.config import load
from node_agent.daemon import Node
from node_agent.prompts import PromptLibrary
from simulator.client import SimClient
from simulator.load import Flow

CACHE = Path.home() / ".cache" / "branchnode" / "test-prompts"
WEEKDAY_10AM = datetime(2026, 11, 23, 10, 0)  # a Monday
SUNDAY_10AM = datetime(2026, 11, 22, 10, 0)
HOLIDAY_10AM = datetime(2026, 10, 1, 10, 0)

CONFIG = """
[node]
id = "test-branch"
card = "{card}"
data_dir = "{data}"
language = "en"
max_daily_failures = {max_failures}
answer_on_ring = {answer_on_ring}

{lines}

[prompts.lang]
en = "For English press three."
cmn = "普通话请按一。"
[prompts.main]
en = "Main menu, please choose."
cmn = "主菜单，请选择。"
[prompts.night]
en = "We are closed now."
cmn = "现在已下班。"
[prompts.invalid]
en = "Invalid choice."
cmn = "输入无效。"
[prompts.noinput]
en = "Nothing was pressed."
cmn = "没有输入。"
[prompts.info]
en = "We are open nine to five on weekdays."
cmn = "工作日九点到五点营业。"
[prompts.account]
en = "Account number, then hash."
cmn = "请输入账号，按井号结束。"
[prompts.pin]
en = "PIN, then hash."
cmn = "请输入密码，按井号结束。"
[prompts.wrong]
en = "Wrong account or PIN."
cmn = "账号或密码错误。"
[prompts.locked]
en = "This account is locked."
cmn = "账户已锁定。"
[prompts.ok]
en = "Your account is in good standing."
cmn = "您的账户状态正常。"
[prompts.beep]
en = "Speak after the tone."
cmn = "请在提示音后留言。"
[prompts.thanks]
en = "Thank you for your message."
cmn = "谢谢您的留言。"
[prompts.cbnum]
en = "Your number, then hash."
cmn = "请输入回电号码，按井号结束。"
[prompts.cbok]
en = "We will call you back."
cmn = "我们会给您回电。"
[prompts.code]
en = "Branch code, then hash."
cmn = "请输入网点号，按井号结束。"
[prompts.busy]
en = "All agents are busy."
cmn = "人工坐席忙。"
[prompts.bye]
en = "Goodbye."
cmn = "再见。"

[flows.main]
start = "language"
[flows.main.nodes.language]
type = "language"
prompt = "lang"
options = {{ "1" = "cmn", "3" = "en" }}
timeout_ms = 1500
retries = 1
next = "hours"
on_fail = "hours"
[flows.main.nodes.hours]
type = "schedule"
hours = {{ mon = "09:00-17:00", tue = "09:00-17:00", wed = "09:00-17:00", thu = "09:00-17:00", fri = "09:00-17:00" }}
holidays = ["2026-10-01"]
open = "menu"
closed = "night"
[flows.main.nodes.menu]
type = "menu"
prompt = "main"
options = {{ "1" = "auth", "2" = "info", "3" = "message", "4" = "callback", "5" = "code", "0" = "agent" }}
invalid_prompt = "invalid"
timeout_prompt = "noinput"
timeout_ms = 1500
retries = 2
on_fail = "bye"
[flows.main.nodes.night]
type = "menu"
prompt = "night"
options = {{ "1" = "auth", "2" = "info" }}
invalid_prompt = "invalid"
timeout_ms = 1500
retries = 2
on_fail = "bye"
[flows.main.nodes.info]
type = "play"
prompts = ["info"]
next = "hours"
[flows.main.nodes.auth]
type = "authenticate"
account_prompt = "account"
pin_prompt = "pin"
wrong_prompt = "wrong"
blacklisted_prompt = "locked"
goodbye_prompt = "bye"
first_digit_timeout_ms = 3000
inter_digit_timeout_ms = 2000
next = "ok"
on_fail = "end"
[flows.main.nodes.ok]
type = "play"
prompts = ["ok"]
next = "bye"
[flows.main.nodes.message]
type = "record"
prompt = "beep"
kind = "message"
max_ms = 4000
next = "thanks"
[flows.main.nodes.thanks]
type = "play"
prompts = ["thanks"]
next = "bye"
[flows.main.nodes.callback]
type = "callback"
prompt = "cbnum"
confirm_prompt = "cbok"
next = "bye"
[flows.main.nodes.code]
type = "collect"
prompt = "code"
min_digits = 3
max_digits = 4
store_as = "branch_code"
invalid_prompt = "invalid"
first_digit_timeout_ms = 2000
inter_digit_timeout_ms = 1500
retries = 2
next = "bye"
on_fail = "bye"
[flows.main.nodes.agent]
type = "transfer"
fallback = "busy"
[flows.main.nodes.busy]
type = "play"
prompts = ["busy"]
next = "bye"
[flows.main.nodes.bye]
type = "hangup"
prompt = "bye"
[flows.main.nodes.end]
type = "hangup"
"""


def write_config(tmp_path: Path, card: str, max_failures: int = 5, lines: int = 2, answer_on_ring: int = 1) -> Path:
    path = tmp_path / "branch.toml"
    table = "".join(f'[lines.{n}]\nnumber = "{n}00"\nflow = "main"\n' for n in range(1, lines + 1))
    path.write_text(CONFIG.format(card=card, data=tmp_path / "data", max_failures=max_failures, lines=table,
                                  answer_on_ring=answer_on_ring),
                    encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def branch(sim, tmp_path: Path, *, clock=WEEKDAY_10AM, max_failures: int = 5, lines: int = 2,
                 answer_on_ring: int = 1):
    cfg = load(write_config(tmp_path, sim.serial, max_failures, lines, answer_on_ring))
    node = Node(cfg, clock=lambda: clock)
    node.prompts = node.ivr.prompts = PromptLibrary(cfg, cache_dir=CACHE)
    ready = asyncio.Event()
    task = asyncio.create_task(node.run(ready))
    await asyncio.wait_for(ready.wait(), 30)
    client = await SimClient.parse(sim.control).connect()
    refs = {name: str(path) for name, path in node.prompts.export(tmp_path / "prompts", ["en", "cmn"]).items()}
    try:
        yield node, client, refs
    finally:
        await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def script(client: SimClient, refs: dict, steps: list[dict], line: int = 1) -> tuple[list[str], list[dict]]:
    """Run steps; returns (the prompts the caller heard, in order, per the last listen; all results)."""
    heard: list[str] = []
    results = []
    for step in steps:
        step = dict(step)
        op = step.pop("op")
        step.setdefault("line", line)
        if op == "listen":
            step["prompts"] = refs
        r = await client.call(op, **step)
        results.append(r)
        if op == "listen":
            heard = [p["prompt"] for p in r["prompts"]]
            if "until" in step:
                assert r["until_heard"], f"{step['until']} was not heard; heard {heard}"
    return heard, results


def records(node: Node) -> list[dict]:
    """Call records, read through a connection of our own (works after the node stopped)."""
    from node_agent.store import Store

    s = Store(node.config.data_dir / "node.db")
    try:
        return list(s.db.query("SELECT * FROM call_records ORDER BY started"))
    finally:
        s.close()


async def wait_idle(node: Node, line: int = 1, timeout: float = 10.0) -> None:
    runner = next(r for r in node.runners if r.line.number == line)
    end = asyncio.get_running_loop().time() + timeout
    while runner.state != "idle" or runner.current is not None:
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"line {line} stuck in state {runner.state}")
        await asyncio.sleep(0.05)


# -- load: the shared load generator (simulator/load.py) walks this flow (answering on ring 2) ------
LOAD_FLOW = Flow(language_key="3", after_language="main.en", menu_key="1", account_prompt="account.en",
                 pin_prompt="pin.en", verified="ok.en", wrong="wrong.en")
