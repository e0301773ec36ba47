"""The IVR: runs a flow from the configuration on one answered call.

Prompts can be interrupted by a key (barge-in) and keys typed ahead are kept for the next
question. Every node type of the configuration has a handler here; a handler returns the name of
the next node, or None when the IVR part of the call is over. PIN digits never leave the
``authenticate`` handler: the path records node names only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from hal import Line

from .auth import Authenticator, AuthPrompts, Outcome, collect_and_check
from .config import FlowNode, NodeConfig
from .prompts import PromptLibrary
from .recordings import Recordings
from .schedule import is_open

log = logging.getLogger("node_agent.ivr")


class CallEnded(Exception):
    """The caller hung up or the line went down: the flow stops where it is."""


class KeyBuffer:
    """Keys the caller pressed and nobody has read yet (typed-ahead keys are kept)."""

    MAX = 64  # a caller pressing 50 keys in 2 s loses nothing that could matter

    def __init__(self) -> None:
        self._keys: deque[str] = deque(maxlen=self.MAX)
        self._event = asyncio.Event()
        self.dropped = 0
        self.last_key_at: float | None = None  # monotonic time of the newest key (for latency)

    def push(self, key: str) -> None:
        if len(self._keys) == self.MAX:
            self.dropped += 1
        self._keys.append(key)
        self.last_key_at = time.monotonic()
        self._event.set()

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        self._keys.clear()

    async def get(self, timeout_ms: int) -> str | None:
        """The next key, or None after ``timeout_ms`` without one."""
        if not self._keys:
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), timeout_ms / 1000)
            except TimeoutError:
                return None
        return self._keys.popleft()


_RECORDED = frozenset({"auth_outcome", "account", "disposition", "agent", "queue_ms", "talk_ms"})  # besides ``path``: what the record keeps


@dataclass
class Call:
    """One call's IVR state. ``path`` and the fields in ``_RECORDED`` are what the call record
    keeps: changing them (through :meth:`enter` for the path) sets ``changed``, and the runner
    writes the record, so it follows the call without each handler having to remember to.
    ``doing`` says what the IVR is doing now: "prompt", "keys", "recording" or ""; ``transfer`` is
    "queued" while the call waits for an HQ agent and "talking" once one took it."""

    call_id: str
    line: Line
    language: str
    caller_number: str = ""
    keys: KeyBuffer = field(default_factory=KeyBuffer)
    path: list[str] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)  # prompts played, in order
    values: dict[str, str] = field(default_factory=dict)
    auth_outcome: str = ""
    account: str = ""
    account_class: str = ""  # the verified account's class (for HQ's queue); not part of the record
    disposition: str = ""
    agent: str = ""  # a transfer: the HQ agent who took it, the time in HQ's queue and talking
    queue_ms: int | None = None
    talk_ms: int | None = None
    doing: str = ""
    transfer: str = ""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if name in _RECORDED and "changed" in self.__dict__:
            self.changed.set()

    def enter(self, node: str) -> None:
        self.path.append(node)
        self.changed.set()


class IvrKeyPad:
    """The IVR's :class:`~node_agent.auth.KeyPad`: its prompts (barge-in) and the call's keys."""

    def __init__(self, ivr: Ivr, call: Call, *, first_ms: int, inter_ms: int) -> None:
        self.ivr, self.call, self.first_ms, self.inter_ms = ivr, call, first_ms, inter_ms

    async def ask(self, field: str, prompt: str, max_digits: int) -> str | None:
        await self.ivr.play(self.call, [prompt])
        # up to 20 digits for an account (the longest account id): a PIN keyed there, or account
        # and PIN run together without '#', is just an account that does not exist, asked for its
        # PIN and refused like any other; the Authenticator keeps only a keyed hash of such digits
        return await self.ivr._ask_digits(self.call, min_digits=4, max_digits=max_digits, terminator="#",
                                          first_ms=self.first_ms, inter_ms=self.inter_ms)

    async def tell(self, prompts: list[str]) -> None:
        await self.ivr.play(self.call, prompts, barge_in=False)

    def discard(self) -> None:
        self.call.keys.clear()


class Ivr:
    def __init__(self, config: NodeConfig, prompts: PromptLibrary, auth: Authenticator, store,
                 *, clock: Callable[[], datetime] = datetime.now) -> None:
        self.config = config
        self.prompts = prompts
        self.auth = auth
        self.store = store
        self.clock = clock
        self.recordings = Recordings(store, config.data_dir / "recordings")
        # key-to-response: from a key reaching the node to the first audio of the prompt it led to
        self.key_to_response_ms: deque[float] = deque(maxlen=10000)
        self.forwarder = None  # node_agent.forwarding.Forwarder when the node has an uplink to HQ

    async def run(self, call: Call, flow_name: str) -> None:
        flow = self.config.flows[flow_name]
        name: str | None = flow.start
        steps = 0
        while name is not None:
            steps += 1
            if steps > 1000:  # the checker forbids loops without exit; this guards a caller looping for ever
                call.disposition = call.disposition or "too_many_steps"
                return
            node = flow.nodes[name]
            call.enter(name)
            handler = getattr(self, f"_{node.type}")
            name = await handler(call, node)

    # -- building blocks --------------------------------------------------------------------------
    def _check(self, call: Call) -> None:
        if call.ended.is_set():
            raise CallEnded()

    async def _key(self, call: Call, timeout_ms: int) -> str | None:
        """The caller's next key (see :meth:`KeyBuffer.get`); a hang-up ends the wait at once
        (the runner cancels the IVR), so no timeout here is a delay in letting the caller go."""
        self._check(call)
        call.doing = "keys"
        try:
            key = await call.keys.get(timeout_ms)
        finally:
            call.doing = ""
        self._check(call)
        return key

    async def play(self, call: Call, names: list[str], *, barge_in: bool = True, language: str | None = None) -> bool:
        """Play prompts (in ``language``, else the call's); returns True if a key interrupted them
        (the key stays in the buffer). Prompts that cannot be interrupted (a wrong PIN, an invalid
        choice) do not take keys either: what is pressed while they play is dropped, so a key
        pressed in impatience, or one heard late, does not answer the question that follows."""
        return await self.play_clips(call, [(n, self.prompts.get(n, language or call.language)) for n in names],
                                     barge_in=barge_in)

    async def play_clips(self, call: Call, clips: list[tuple[str, np.ndarray]], *, barge_in: bool = True) -> bool:
        """:meth:`play` for audio already made (a prompt with a number in it): (name, pcm) each."""
        self._check(call)
        audio = call.line.audio
        for name, pcm in clips:
            if barge_in and len(call.keys):
                audio.clear()
                return True
            call.heard.append(name)
            call.doing = "prompt"
            audio.write(pcm)
            if call.keys.last_key_at is not None and not len(call.keys):
                self.key_to_response_ms.append((time.monotonic() - call.keys.last_key_at) * 1000)
                call.keys.last_key_at = None
            drained = asyncio.ensure_future(audio.drained())
            try:
                while not drained.done():
                    await asyncio.wait([drained], timeout=0.02)
                    self._check(call)
                    if barge_in and len(call.keys):
                        audio.clear()
                        return True
            finally:
                drained.cancel()
                call.doing = ""
        if not barge_in:
            call.keys.clear()
        return False

    async def _ask_digits(self, call: Call, *, min_digits: int, max_digits: int, terminator: str | None,
                          first_ms: int, inter_ms: int, clear: str | None = None,
                          on_key: Callable[[int], None] | None = None) -> str | None:
        """Digits up to the terminator / max / a pause; None if nothing came. ``clear``: a key that
        empties the entry (the caller starts it again); ``on_key(n)`` hears how many digits the
        entry holds after each key (a count only)."""
        key = await self._key(call, first_ms)
        if key is None:
            return None
        digits = ""
        while key is not None:
            if terminator and key == terminator:
                break
            if clear is not None and key == clear:
                digits = ""
                if on_key is not None:
                    on_key(0)
                key = await self._key(call, first_ms)
                continue
            digits += key
            if on_key is not None:
                on_key(len(digits))
            if len(digits) >= max_digits:
                break
            key = await self._key(call, inter_ms)
        return digits

    # -- node types ---------------------------------------------------------------------------------
    async def _play(self, call: Call, node: FlowNode) -> str | None:
        await self.play(call, node["prompts"])
        return node["next"]

    async def _menu(self, call: Call, node: FlowNode) -> str | None:
        for _ in range(node.get("retries", 3)):
            await self.play(call, [node["prompt"]])
            key = await self._key(call, node.get("timeout_ms", 5000))
            if key is None:
                if node.get("timeout_prompt"):
                    await self.play(call, [node["timeout_prompt"]])
                continue
            target = node["options"].get(key)
            if target is not None:
                return target
            call.keys.clear()  # after a wrong key, what was typed ahead is not meant for the menu
            if node.get("invalid_prompt"):
                await self.play(call, [node["invalid_prompt"]], barge_in=False)
        return node["on_fail"]

    async def _language(self, call: Call, node: FlowNode) -> str | None:
        # the caller may not understand the current language: the choice is offered in each
        # language on offer, in the order of the keys ("普通话请按一 … For English press three")
        languages = list(dict.fromkeys(node["options"].values()))
        for _ in range(node.get("retries", 3)):
            for language in languages:
                if await self.play(call, [node["prompt"]], language=language):
                    break
            key = await self._key(call, node.get("timeout_ms", 5000))
            if key is not None and key in node["options"]:
                call.language = node["options"][key]
                return node["next"]
            call.keys.clear()
        return node["on_fail"]

    async def _collect(self, call: Call, node: FlowNode) -> str | None:
        lo, hi = node.get("min_digits", 1), node.get("max_digits", 20)
        for _ in range(node.get("retries", 3)):
            await self.play(call, [node["prompt"]])
            digits = await self._ask_digits(call, min_digits=lo, max_digits=hi,
                                            terminator=node.get("terminator", "#"),
                                            first_ms=node.get("first_digit_timeout_ms", 5000),
                                            inter_ms=node.get("inter_digit_timeout_ms", 3000))
            if digits is not None and lo <= len(digits) <= hi:
                call.values[node["store_as"]] = digits
                return node["next"]
            call.keys.clear()
            if digits is not None and node.get("invalid_prompt"):
                await self.play(call, [node["invalid_prompt"]], barge_in=False)
        return node["on_fail"]

    async def _authenticate(self, call: Call, node: FlowNode) -> str | None:
        # the rules' caller side is shared with the agent's secure capture (node_agent.verify)
        pad = IvrKeyPad(self, call, first_ms=node.get("first_digit_timeout_ms", 6000),
                        inter_ms=node.get("inter_digit_timeout_ms", 4000))

        def attempt(result: str, outcome: Outcome) -> None:
            call.account = outcome.account
            call.account_class = outcome.account_class
            call.auth_outcome = result

        result, _ = await collect_and_check(self.auth, pad, AuthPrompts.from_node(node), call_id=call.call_id,
                                            line=call.line.number, on_attempt=attempt)
        return node["next"] if result == "verified" else node["on_fail"]

    async def _schedule(self, call: Call, node: FlowNode) -> str | None:
        # spans may run past midnight (a night shift): node_agent.schedule knows the rules
        return node["open"] if is_open(node["hours"], node.get("holidays", []), self.clock()) else node["closed"]

    async def _record(self, call: Call, node: FlowNode) -> str | None:
        await self.play(call, [node["prompt"]], barge_in=False)
        call.keys.clear()
        max_frames = node.get("max_ms", 60000) // 20
        audio = call.line.audio
        audio.reset()  # only what the caller says from now on
        take = await self.recordings.begin(call.call_id, node["kind"], call.caller_number)
        call.doing = "recording"
        try:
            while take.frames < max_frames:
                self._check(call)
                try:
                    take.write(await asyncio.wait_for(audio.read(), 0.5))
                except TimeoutError:
                    continue
                if len(call.keys) and call.keys._keys[-1] == "#":  # '#' ends the message
                    call.keys.clear()
                    break
        finally:
            call.doing = ""
            # a caller who hangs up mid-message still leaves the message: finished off the event
            # loop, and whole even if this task is being cancelled (a crash is Recordings.recover's)
            ms = await asyncio.shield(self.recordings.finish(take))
            if ms:
                call.values[f"recording_{node['kind']}"] = str(take.path)
        return node["next"]

    async def _callback(self, call: Call, node: FlowNode) -> str | None:
        await self.play(call, [node["prompt"]])
        number = await self._ask_digits(call, min_digits=5, max_digits=20, terminator="#", first_ms=8000,
                                        inter_ms=4000)
        if number and len(number) >= 5:
            await asyncio.to_thread(self._save_callback, call, number)
            call.values["callback"] = number
            await self.play(call, [node["confirm_prompt"]], barge_in=False)
        return node["next"]

    def _save_callback(self, call: Call, number: str) -> None:
        with self.store.transaction() as db:
            db["callbacks"].insert({"call_id": call.call_id, "number": number, "caller_number": call.caller_number,
                                    "at": datetime.now().isoformat(timespec="seconds")})
            self.store.enqueue(db, "callback", f"callback-{call.call_id}", {"call_id": call.call_id, "number": number})

    async def _transfer(self, call: Call, node: FlowNode) -> str | None:
        if node.get("prompt"):
            await self.play(call, [node["prompt"]], barge_in=False)
        if self.forwarder is not None:  # the node has an uplink: the call waits here for an HQ agent
            return await self.forwarder.forward(call, self, node)
        call.disposition = "transfer_fallback"
        return node["fallback"]

    async def _hangup(self, call: Call, node: FlowNode) -> str | None:
        if node.get("prompt"):
            await self.play(call, [node["prompt"]], barge_in=False)
        call.disposition = call.disposition or "completed"
        return None


__all__ = ["Call", "CallEnded", "Ivr", "IvrKeyPad", "KeyBuffer"]
