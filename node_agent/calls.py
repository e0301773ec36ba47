"""One line's calls: ring -> (caller ID) -> answer -> IVR -> cleared, and the call record.

The IVR runs as a task; this runner feeds it the caller's keys and cancels it the moment the
caller hangs up or the line goes down, whatever it was doing (a prompt, a wait for a key, a
message being recorded). Every call, answered or not, has a record from its first ring: opened
then, updated as the call goes (caller ID, answer, IVR path, authentication outcome), and closed
with its final state, and the one outbox item for HQ, before the line is released. A node that
dies mid-call leaves the record open; the next start closes it as ``interrupted``
(:meth:`CallLog.close_interrupted`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque

import hal
from hal import events as ev

from .config import LineConfig
from .ivr import Call, CallEnded, Ivr
from .records import CallLog, CallRecord, now
from .store import Store

log = logging.getLogger("node_agent.calls")
RING_GAP_S = 8.0  # longer than any ring cadence's silence: no ring for this long, the caller gave up
GOODBYE_TAIL_S = 0.1  # the card's playout buffer: let the caller hear the end of the goodbye


class LineRunner:
    def __init__(self, line: hal.Line, config: LineConfig, ivr: Ivr, store: Store, *, answer_on_ring: int,
                 language: str) -> None:
        self.line = line
        self.config = config
        self.ivr = ivr
        self.store = store
        self.log = CallLog(store)
        self.answer_on_ring = answer_on_ring
        self.language = language
        self.state = "idle"
        self.current: Call | None = None
        self.calls = 0
        self.ring_to_answer_ms: deque[float] = deque(maxlen=10000)

    async def run(self) -> None:
        cid: tuple[float, ev.CallerIdReceived] | None = None
        while True:
            e = await self.line.next_event()
            if isinstance(e, ev.CallerIdReceived):
                cid = (time.monotonic(), e)  # DTMF caller ID comes before the first ring
            elif isinstance(e, ev.Ring):
                early = cid[1] if cid and time.monotonic() - cid[0] < RING_GAP_S else None
                cid = None
                try:
                    await self._call(e, early)
                except Exception:  # one bad call must never take the line down with it
                    log.exception("line %d: call failed", self.line.number)
                finally:
                    self.state = "idle"
                    self.current = None

    async def _call(self, ring: ev.Ring, cid: ev.CallerIdReceived | None = None) -> None:
        line = self.line
        self.state = "ringing"
        rec = CallRecord(id=uuid.uuid4().hex[:16], line=line.number, started=now())
        if cid is not None:
            rec.caller_number, rec.caller_name = cid.number, cid.name
        t_ring = time.monotonic()
        # opened at the first ring, not at the answer: a caller the node heard ring is a call the
        # branch must know of (a missed call gets called back), even if the node dies before answering
        await self.log.open(rec)
        while ring.count < self.answer_on_ring:
            e = await line.next_event(RING_GAP_S)
            if isinstance(e, ev.Ring):
                ring = e
            elif isinstance(e, ev.CallerIdReceived):
                rec.caller_number, rec.caller_name = e.number, e.name
            elif e is None or isinstance(e, (ev.RingingStopped, ev.LineDown)):
                rec.disposition = "missed" if not isinstance(e, ev.LineDown) else "line_down"
                await self._close(rec)
                return
        self.state = "answering"
        try:
            await line.answer()
        except ConnectionError as exc:
            log.warning("line %d: could not answer: %s", line.number, exc)
            rec.disposition = "answer_failed"
            await self._close(rec)
            return
        self.ring_to_answer_ms.append((time.monotonic() - t_ring) * 1000)
        rec.answered = now()
        self.calls += 1
        self.state = "ivr"
        call = Call(call_id=rec.id, line=line, language=self.language, caller_number=rec.caller_number)
        call.changed.set()  # the answer and the caller ID: the first update
        self.current = call
        follower = asyncio.create_task(self._follow(call, rec), name=f"record line {line.number}")
        try:
            await self._converse(call)
        finally:
            follower.cancel()
        _take(call, rec)
        rec.disposition = call.disposition or "completed"
        rec.ended_in = call.path[-1] if call.path else ""
        try:
            if line.offhook and not call.ended.is_set():
                # the record is committed while the caller hears the end of the goodbye
                await asyncio.gather(self._close(rec), asyncio.sleep(GOODBYE_TAIL_S))
            else:
                await self._close(rec)
        finally:
            # released only now, with the record committed (and released even if it could not be)
            if line.offhook:
                try:
                    await line.hangup()
                except ConnectionError as exc:
                    log.warning("line %d: hang-up not confirmed: %s", line.number, exc)

    async def _converse(self, call: Call) -> None:
        ivr_task = asyncio.create_task(self.ivr.run(call, self.config.flow), name=f"ivr line {self.line.number}")
        next_event = asyncio.create_task(self.line.next_event())
        try:
            while True:
                done, _ = await asyncio.wait({ivr_task, next_event}, return_when=asyncio.FIRST_COMPLETED)
                if next_event in done:
                    e = next_event.result()
                    if isinstance(e, ev.DigitReceived):
                        call.keys.push(e.digit)
                    elif isinstance(e, (ev.HungUp, ev.LineDown)):
                        call.disposition = "caller_hangup" if isinstance(e, ev.HungUp) else "line_down"
                        call.ended.set()
                        # whatever the IVR waits for (a key, a prompt's end, a timeout) will never
                        # matter now: stop it there (a message being recorded is still kept)
                        ivr_task.cancel()
                        await asyncio.wait({ivr_task})
                    if not ivr_task.done():
                        next_event = asyncio.create_task(self.line.next_event())
                if ivr_task.done():
                    break
        finally:
            next_event.cancel()
            ivr_task.cancel()
        try:
            ivr_task.result()
        except (CallEnded, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("line %d: the IVR failed; ending the call", self.line.number)
            call.disposition = "error"

    async def _follow(self, call: Call, rec: CallRecord) -> None:
        """Keep the open record up to date with the call (latest state only: a burst of changes
        is one write). Off the IVR's way: it never waits for this commit."""
        while True:
            await call.changed.wait()
            call.changed.clear()
            _take(call, rec)
            await self.log.update(rec)

    async def _close(self, rec: CallRecord) -> None:
        await self.log.close(rec)  # off the event loop: the commit waits for the disk
        log.info("line %d: call %s %s", rec.line, rec.id, rec.disposition)


def _take(call: Call, rec: CallRecord) -> None:
    """The call's state so far into its record."""
    rec.ivr_path = list(call.path)
    rec.auth_outcome, rec.account = call.auth_outcome, call.account
    rec.agent, rec.queue_ms, rec.talk_ms = call.agent, call.queue_ms, call.talk_ms
