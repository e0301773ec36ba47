"""One line's calls: ring -> (caller ID) -> answer -> IVR -> cleared, and the call record.

The IVR runs as a task; this runner feeds it the caller's keys and stops it the moment the
caller hangs up or the line goes down, whatever it was doing. Every call, answered or not,
leaves a record (and an outbox item for HQ).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from datetime import datetime

import hal
from hal import events as ev

from .config import LineConfig
from .ivr import Call, CallEnded, Ivr
from .store import Store

log = logging.getLogger("node_agent.calls")
RING_GAP_S = 8.0  # longer than any ring cadence's silence: no ring for this long, the caller gave up


class LineRunner:
    def __init__(self, line: hal.Line, config: LineConfig, ivr: Ivr, store: Store, *, answer_on_ring: int,
                 language: str) -> None:
        self.line = line
        self.config = config
        self.ivr = ivr
        self.store = store
        self.answer_on_ring = answer_on_ring
        self.language = language
        self.state = "idle"
        self.current: Call | None = None
        self.calls = 0
        self.ring_to_answer_ms: deque[float] = deque(maxlen=10000)

    async def run(self) -> None:
        while True:
            e = await self.line.next_event()
            if isinstance(e, ev.Ring):
                try:
                    await self._call(e)
                except Exception:  # one bad call must never take the line down with it
                    log.exception("line %d: call failed", self.line.number)
                finally:
                    self.state = "idle"
                    self.current = None

    async def _call(self, ring: ev.Ring) -> None:
        line = self.line
        self.state = "ringing"
        rec = {"id": uuid.uuid4().hex[:16], "line": line.number, "caller_number": "", "caller_name": "",
               "started": _now(), "answered": None, "ended": None, "ivr_path": "[]", "auth_outcome": "",
               "account": "", "disposition": ""}
        t_ring = time.monotonic()
        while ring.count < self.answer_on_ring:
            e = await line.next_event(RING_GAP_S)
            if isinstance(e, ev.Ring):
                ring = e
            elif isinstance(e, ev.CallerIdReceived):
                rec["caller_number"], rec["caller_name"] = e.number, e.name
            elif e is None or isinstance(e, (ev.RingingStopped, ev.LineDown)):
                rec["disposition"] = "missed" if not isinstance(e, ev.LineDown) else "line_down"
                await self._save(rec)
                return
        self.state = "answering"
        try:
            await line.answer()
        except ConnectionError as exc:
            log.warning("line %d: could not answer: %s", line.number, exc)
            rec["disposition"] = "answer_failed"
            await self._save(rec)
            return
        self.ring_to_answer_ms.append((time.monotonic() - t_ring) * 1000)
        rec["answered"] = _now()
        self.calls += 1
        self.state = "ivr"
        call = Call(call_id=rec["id"], line=line, language=self.language, caller_number=rec["caller_number"])
        self.current = call
        await self._converse(call)
        if line.offhook and not call.ended.is_set():
            await asyncio.sleep(0.1)  # the card's playout buffer: let the caller hear the end of the goodbye
        if line.offhook:
            try:
                await line.hangup()
            except ConnectionError as exc:
                log.warning("line %d: hang-up not confirmed: %s", line.number, exc)
        rec.update(ivr_path=json.dumps(call.path), auth_outcome=call.auth_outcome, account=call.account,
                   disposition=call.disposition or "completed")
        await self._save(rec)

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
                    if not ivr_task.done():
                        next_event = asyncio.create_task(self.line.next_event())
                if ivr_task.done():
                    break
        finally:
            next_event.cancel()
        try:
            ivr_task.result()
        except CallEnded:
            pass
        except Exception:
            log.exception("line %d: the IVR failed; ending the call", self.line.number)
            call.disposition = "error"

    async def _save(self, rec: dict) -> None:
        rec["ended"] = _now()
        # the commit waits for the disk (and for other writers): never on the event loop
        await asyncio.to_thread(self._write, rec)
        log.info("line %d: call %s %s", rec["line"], rec["id"], rec["disposition"])

    def _write(self, rec: dict) -> None:
        with self.store.transaction() as db:
            db["call_records"].insert(rec, replace=True)
            self.store.enqueue(db, "call_record", f"call-{rec['id']}", rec)


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")
