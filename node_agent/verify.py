"""Secure caller verification: the node collects and checks a caller's account and PIN for an agent.

Interface (for the forwarded call's code, which runs it when HQ sends ``verify``)::

    settings = CaptureSettings.from_flow(config.flows[line.flow])   # the flow's authenticate prompts
    capture = SecureCapture(call, ivr, mask, settings, on_progress=send_progress)
    outcome = await capture.run(fields=("account", "pin"))          # -> CaptureOutcome
    capture.cancel()          # the agent cancelled (HQ's verify_cancel): run() returns "cancelled"
    capture.again("account")  # the agent asks for one field again (verify_again)

    # or as the forwarding's capture runner: Forwarder(filters=lambda call: DtmfMask(), captures=serve)
    outcome = await serve(request)   # request: call, ivr, filter (the mask), fields, progress, result, ...

* ``call`` is the call's :class:`~node_agent.ivr.Call` (its keys, its line's audio port), ``ivr``
  the node's :class:`~node_agent.ivr.Ivr` (its prompts, its Authenticator), ``mask`` the call's
  :class:`~node_agent.dtmf_mask.DtmfMask` (the caller -> agent filter the media bridge runs).
* From the start of :meth:`SecureCapture.run` to its end, the mask is in capture mode: the agent
  gets comfort noise, plus the prompts the node plays (mirrored into the mask), from the very
  next frame. The caller hears the prompts on the line. **While a capture runs the bridge must not
  queue the agent's audio into the line's audio port** (drop it, or mix it): the prompts are
  played through that port and the capture waits for each to drain. :func:`serve` does it for a
  ``MediaSession``: it swaps the session's ``sink`` for one that drops the agent's frames.
* Account and PIN are asked and checked by :func:`node_agent.auth.collect_and_check`, the loop the
  IVR's ``authenticate`` node runs: the same prompts, the same rules (three consecutive failures
  in a call end the tries; more than ``max_daily_failures`` in a day blacklist the account with an
  alarm; an unknown account sounds exactly like a wrong PIN). A capture on a call that has used up
  its tries (in the IVR or an earlier capture) fails at once.
* The caller can key ``settings.clear_key`` (``*``) to empty the field being keyed.
* ``on_progress(Progress)`` gets counts only: the field, how many digits it holds, the state
  (``started``, ``prompting``, ``keying``, ``checking``, ``invalid``, ``done``, as the link's
  ``verify_progress``). :meth:`run` returns a :class:`CaptureOutcome`: ``verified`` (with the
  account id), ``failed``, ``locked`` or ``cancelled``; ``end_call`` when the configured rule
  (``on_fail = "hangup"``, as the IVR) says the call ends now: the caller has heard goodbye.

Digits never leave this module except into the Authenticator (which keeps hashes): not in a log
record, a progress event, an outcome or an exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

from .auth import (
    ACCOUNT_RE,
    CALL_FAILURE_LIMIT,
    FIELDS,
    AskAgain,
    AuthPrompts,
    Outcome,
    collect_and_check,
)
from .dtmf_mask import DtmfMask
from .ivr import Call, CallEnded, Ivr

log = logging.getLogger("node_agent.verify")
STATES = ("started", "prompting", "keying", "checking", "invalid", "done")
RESULTS = ("verified", "failed", "locked", "cancelled")
ON_FAIL = ("hangup", "agent")


class CaptureError(ValueError):
    """A capture asked for in a way that cannot run: says what was wrong and what to ask instead."""


@dataclass(frozen=True)
class CaptureSettings:
    """How a capture asks: the authentication prompts and digit timeouts (those of the flow's
    ``authenticate`` node), the key that clears a field, and what three failures (or a locked
    account) do: ``on_fail = "hangup"`` plays the goodbye prompt and ends the call, as the IVR
    does; ``"agent"`` leaves the caller with the agent, who sees the outcome."""

    prompts: AuthPrompts
    first_ms: int = 6000
    inter_ms: int = 4000
    clear_key: str | None = "*"
    on_fail: str = "hangup"

    def __post_init__(self) -> None:
        if self.on_fail not in ON_FAIL:
            raise CaptureError(f"on_fail {self.on_fail!r} is not one of {', '.join(ON_FAIL)}")
        if self.clear_key is not None and (len(self.clear_key) != 1 or self.clear_key not in "0123456789*"):
            raise CaptureError(f"clear_key {self.clear_key!r} must be one key, * or a digit ('#' ends a field)")

    @classmethod
    def from_flow(cls, flow, **overrides) -> CaptureSettings:
        """The settings of ``flow``'s (first) authenticate node, with ``overrides``."""
        node = next((n for n in flow.nodes.values() if n.type == "authenticate"), None)
        if node is None:
            raise CaptureError(f"flow {flow.name!r} has no authenticate node: a capture plays its prompts "
                               "(add one, or give CaptureSettings its prompts)")
        kw = {"first_ms": node.get("first_digit_timeout_ms", 6000), "inter_ms": node.get("inter_digit_timeout_ms", 4000)}
        return cls(AuthPrompts.from_node(node), **{**kw, **overrides})


@dataclass(frozen=True)
class Progress:
    """A capture's progress: counts only, never a digit."""

    field: str
    keyed: int
    state: str


@dataclass(frozen=True)
class CaptureOutcome:
    result: str  # verified, failed, locked, cancelled
    account: str = ""  # the account id, when verified; otherwise empty
    end_call: bool = False  # the configured rule ends the call now (the caller heard goodbye)


class SecureCapture:
    """One capture on one call (see the module's doc). ``run`` once."""

    def __init__(self, call: Call, ivr: Ivr, mask: DtmfMask, settings: CaptureSettings,
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        self.call, self.ivr, self.mask, self.settings = call, ivr, mask, settings
        self._view = _Heard(call, mask)  # what the IVR plays to: the call, its prompts mirrored to the agent
        self.on_progress = on_progress
        self._task: asyncio.Task | None = None
        self._cancelled = False
        self._fields: tuple[str, ...] = ()
        self._field = ""  # the field being asked or keyed ("" while checking)
        self._again: str | None = None
        self._again_event = asyncio.Event()
        self.done = False

    # -- the agent's controls ----------------------------------------------------------------------
    def cancel(self) -> bool:
        """Stop the capture (what was keyed is dropped unchecked); False if it is not running."""
        if self._task is None or self._task.done() or self.done:
            return False
        self._cancelled = True
        self._task.cancel()
        return True

    def again(self, field: str) -> bool:
        """Ask ``field`` again (and the fields after it): at once, cutting short what is being
        asked. False when that cannot be: the capture is not running, checking what was keyed
        (the outcome comes), or has not asked ``field`` yet (it will)."""
        if field not in FIELDS:
            raise CaptureError(f"field {field!r} is not one of {', '.join(FIELDS)}")
        if self._task is None or self._task.done() or not self._field or field not in self._fields:
            return False
        if self._fields.index(field) > self._fields.index(self._field):
            return False
        self._again = field
        self._again_event.set()
        return True

    # -- the capture -------------------------------------------------------------------------------
    async def run(self, fields: tuple[str, ...] | list[str] = FIELDS) -> CaptureOutcome:
        fields = tuple(fields)
        known = self._check_fields(fields)
        if self._task is not None or self.done:
            raise CaptureError("this capture has run already: make a new SecureCapture for another")
        if self.mask.capturing:
            raise CaptureError("another capture is running on this call: cancel it, or wait for its outcome")
        self._fields = fields
        call, mask = self.call, self.mask
        mask.capture_start()  # before anything else: not even the first ms of a tone gets through
        call.keys.clear()  # keys pressed before the capture answer nothing in it
        self._progress(fields[0], 0, "started")
        try:
            if self.ivr.auth.call_failures(call.call_id) >= CALL_FAILURE_LIMIT:
                # the call has used up its tries: no more guesses, as in the IVR
                return await self._refused()
            self._task = asyncio.ensure_future(self._collect(fields, known))
            try:
                result, outcome = await self._task
            except asyncio.CancelledError:
                if self._cancelled and not _being_cancelled():
                    log.info("line %d: capture on call %s cancelled by the agent", call.line.number, call.call_id)
                    return CaptureOutcome("cancelled")
                raise
            end = result != "verified" and self.settings.on_fail == "hangup"
            log.info("line %d: capture on call %s: %s", call.line.number, call.call_id, result)
            return CaptureOutcome(result, outcome.account if result == "verified" else "", end)
        finally:
            self.done = True
            self._field = ""
            if self._task is not None and not self._task.done():
                self._task.cancel()
            mask.stop_prompt()
            if self._cancelled:
                call.line.audio.clear()  # a prompt cut short by the cancel stops on the line too
            call.keys.clear()  # what was keyed in the capture answers nothing after it
            mask.capture_end()

    def _check_fields(self, fields: tuple[str, ...]) -> dict[str, str]:
        if not fields or any(f not in FIELDS for f in fields) or len(set(fields)) != len(fields) \
                or list(fields) != [f for f in FIELDS if f in fields]:
            raise CaptureError(f"fields {list(fields)} must be {', '.join(FIELDS)} or a part of them, in that order")
        if "pin" not in fields:
            raise CaptureError("a capture always asks for the PIN: ask for pin, or account and pin")
        if "account" in fields:
            return {}
        if self.call.auth_outcome != "verified" or not ACCOUNT_RE.match(self.call.account or ""):
            raise CaptureError("the PIN alone needs the call's account, and the caller has not authenticated "
                               "in this call: ask for account and pin")
        return {"account": self.call.account}

    async def _refused(self) -> CaptureOutcome:
        hangup = self.settings.on_fail == "hangup"
        if hangup:
            await self.ivr.play(self._view, [self.settings.prompts.goodbye], barge_in=False)
        log.info("line %d: capture on call %s refused: the call has used up its tries", self.call.line.number,
                 self.call.call_id)
        return CaptureOutcome("failed", "", hangup)

    async def _collect(self, fields: tuple[str, ...], known: dict[str, str]) -> tuple[str, Outcome]:
        call = self.call

        def attempt(result: str, outcome: Outcome) -> None:
            call.account = outcome.account  # the call's record follows, as in the IVR
            call.account_class = outcome.account_class
            call.auth_outcome = result
            if result == "wrong" and not outcome.end_call:
                self._progress(fields[0], 0, "invalid")

        return await collect_and_check(_Checking(self), _CapturePad(self), self.settings.prompts,
                                       call_id=call.call_id, line=call.line.number, fields=fields, known=known,
                                       goodbye=self.settings.on_fail == "hangup", on_attempt=attempt)

    def _progress(self, field: str, keyed: int, state: str) -> None:
        if self.on_progress is not None:
            try:
                self.on_progress(Progress(field, keyed, state))
            except Exception:  # a broken reporter must not break the caller's capture
                log.exception("capture progress report failed")

    async def _interruptible(self, coro):
        """``coro``, unless the agent asks for a field again meanwhile (then :class:`AskAgain`)."""
        task = asyncio.ensure_future(coro)
        waiter = asyncio.ensure_future(self._again_event.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.done() and not task.cancelled() and not self._again_event.is_set():
            return task.result()
        field = self._again
        self._again, self._again_event = None, asyncio.Event()
        self.call.line.audio.clear()  # the prompt being played stops
        self.mask.stop_prompt()
        raise AskAgain(field)


class _Mirrored:
    """A line's audio port whose prompts also go to the mask (the agent hears them)."""

    def __init__(self, audio, mask: DtmfMask) -> None:
        self._audio, self._mask = audio, mask

    def write(self, pcm) -> None:
        self._audio.write(pcm)
        self._mask.play(pcm)

    def clear(self) -> None:
        self._audio.clear()
        self._mask.stop_prompt()

    def drained(self):
        return self._audio.drained()


class _Heard:
    """The call as the IVR's prompt player sees it during a capture: the call itself (every read
    and write goes to it), but with its line's audio port mirrored to the mask."""

    def __init__(self, call: Call, mask: DtmfMask) -> None:
        object.__setattr__(self, "_call", call)
        object.__setattr__(self, "line", SimpleNamespace(audio=_Mirrored(call.line.audio, mask),
                                                         number=call.line.number))

    def __getattr__(self, name: str):
        return getattr(self._call, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._call, name, value)


class _CapturePad:
    """The capture's :class:`~node_agent.auth.KeyPad`: the IVR's prompts and keys, mirrored to the
    agent through the mask, with the clear key, progress counts and the agent's "ask again"."""

    def __init__(self, capture: SecureCapture) -> None:
        self.c = capture

    async def ask(self, field: str, prompt: str, max_digits: int) -> str | None:
        c = self.c
        c._field = field
        c._progress(field, 0, "prompting")
        await c._interruptible(c.ivr.play(c._view, [prompt]))
        entry = await c._interruptible(c.ivr._ask_digits(
            c.call, min_digits=4, max_digits=max_digits, terminator="#", first_ms=c.settings.first_ms,
            inter_ms=c.settings.inter_ms, clear=c.settings.clear_key,
            on_key=lambda n: c._progress(field, n, "keying")))
        c._progress(field, len(entry or ""), "done")
        return entry

    async def tell(self, prompts: list[str]) -> None:
        c = self.c
        await c.ivr.play(c._view, prompts, barge_in=False)

    def discard(self) -> None:
        self.c.call.keys.clear()


class _Checking:
    """The Authenticator, saying "checking" (and that no field can be asked again) first."""

    def __init__(self, capture: SecureCapture) -> None:
        self.c = capture

    async def verify(self, account: str, pin: str, *, call_id: str, line: int = 0) -> Outcome:
        c = self.c
        field, c._field = c._field, ""
        c._progress(field, 0, "checking")
        return await c.ivr.auth.verify(account, pin, call_id=call_id, line=line)


async def serve(request, settings: CaptureSettings | None = None, *, ivr: Ivr | None = None,
                mask: DtmfMask | None = None, on_fail: str = "hangup") -> CaptureOutcome | None:
    """Run a capture HQ asked for: ``node_agent.forwarding``'s capture runner (``captures=serve``).

    ``request`` is the forwarding's capture request (duck-typed): ``call``, ``fields``,
    ``progress(field, keyed, state)``, ``result(outcome, account)``, ``commands`` (a queue of the
    agent's commands: one with a ``field`` asks for it again, one without cancels), and, unless
    given here, ``ivr`` and ``filter`` (the call's caller -> agent filter, which must be its
    :class:`DtmfMask`); ``end_call()`` is called when the configured rule ends the call.
    ``settings`` default to the line's flow's authenticate node, with ``on_fail`` (the node's
    ``[hq] verify_on_fail``). Reports the result through
    ``request.result``, and returns the outcome (None when the capture could not run, reported
    "unavailable", or the caller hung up during it, reported "cancelled"). If ``request.session``
    (the call's MediaSession) has a ``sink``, the agent's audio is dropped while the capture runs:
    the caller hears its prompts only."""
    ivr = ivr or getattr(request, "ivr", None)
    mask = mask or getattr(request, "filter", None)
    call = request.call
    try:
        if ivr is None:
            raise CaptureError("no IVR to play the prompts and check the PIN")
        if not isinstance(mask, DtmfMask):
            # any other filter would let the agent hear what the caller keys
            raise CaptureError("the call's caller -> agent filter is not the DTMF mask: a capture would be heard")
        if settings is None:
            line = ivr.config.lines.get(call.line.number)
            if line is None:
                raise CaptureError(f"line {call.line.number} has no flow to take the prompts from")
            settings = CaptureSettings.from_flow(ivr.config.flows[line.flow], on_fail=on_fail)
    except CaptureError as exc:
        log.warning("line %d: capture refused: %s", call.line.number, exc)
        request.result("unavailable", "")
        return None
    capture = SecureCapture(call, ivr, mask, settings,
                            on_progress=lambda p: request.progress(p.field, p.keyed, p.state))

    async def commands() -> None:
        while True:
            cmd = await request.commands.get()
            field = getattr(cmd, "field", None)
            if field is None:
                capture.cancel()
            elif field in FIELDS:
                capture.again(field)

    # the agent's audio would queue up in the line's port behind the prompts, which wait for it to
    # drain: while the capture runs the caller hears the prompts only (the agent's voice is dropped)
    session = getattr(request, "session", None)
    sink = getattr(session, "sink", None)
    if sink is not None:
        session.sink = _DROPPED
    pump = asyncio.ensure_future(commands())
    try:
        outcome = await capture.run(tuple(request.fields))
    except CaptureError as exc:
        log.warning("line %d: capture refused: %s", request.call.line.number, exc)
        request.result("unavailable", "")
        return None
    except CallEnded:  # the caller hung up mid-capture: nothing was verified
        request.result("cancelled", "")
        return None
    finally:
        pump.cancel()
        if sink is not None:
            session.sink = sink
    request.result(outcome.result, outcome.account)
    if outcome.end_call and callable(getattr(request, "end_call", None)):
        request.end_call()
    return outcome


class _Dropped:
    """A media session's sink that plays nothing: the agent's audio during a capture."""

    def write(self, frame) -> None:
        pass


_DROPPED = _Dropped()


def _being_cancelled() -> bool:
    """Whether the task running this is itself being cancelled (a hang-up), not just a capture."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


__all__ = ["CaptureError", "CaptureOutcome", "CaptureSettings", "Progress", "SecureCapture", "serve"]
