"""The simulator's control port: JSON lines that script the PSTN side of the simulated lines.

Each request is one JSON object with an ``op`` (and an optional ``id`` echoed back); each answer
is one JSON object with ``ok`` and either the result or an ``error`` saying what was wrong.
Lines are numbered from 1. Waiting ops (``ring`` until answered, ``dtmf`` until sent, ``listen``)
wait in card time, so they also work when the simulator runs faster than real time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict

import numpy as np

from drivers import audiofile as media
from drivers.dsp import CallerId, Noise
from firmware.card.wire import CHANNEL_COUNTERS, LINK_COUNTERS

from .analysis import Spotter, analyse, spot
from .card import SimCard
from .pstn import RING_CADENCES

log = logging.getLogger("simulator.control")
MAX_LINE = 1 << 20


class ControlError(ValueError):
    pass


class ControlServer:
    def __init__(self, card: SimCard) -> None:
        self.card = card
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._client, host, port, limit=MAX_LINE)
        return self.server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    raw = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self._reply(writer, {"ok": False, "error": "request longer than 1 MiB"})
                    return
                if not raw:
                    return
                try:
                    req = json.loads(raw)
                    if not isinstance(req, dict):
                        raise ControlError("a request is a JSON object")
                except (json.JSONDecodeError, ControlError) as exc:
                    await self._reply(writer, {"ok": False, "error": f"bad request: {exc}"})
                    continue
                resp = await self.handle(req)
                if "id" in req:
                    resp["id"] = req["id"]
                await self._reply(writer, resp)
        except ConnectionError:
            return
        finally:
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, obj: dict) -> None:
        writer.write(json.dumps(obj).encode() + b"\n")
        await writer.drain()

    async def handle(self, req: dict) -> dict:
        op = req.get("op")
        fn = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        if fn is None:
            ops = sorted(n[3:] for n in dir(self) if n.startswith("op_"))
            return {"ok": False, "error": f"unknown op {op!r}: one of {', '.join(ops)}"}
        try:
            return {"ok": True, **(await fn(req))}
        except (ControlError, media.MediaError, ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": f"{op}: {exc}"}

    # -- helpers ----------------------------------------------------------------------------------
    def _line(self, req: dict):
        n = req.get("line", 1)
        if not isinstance(n, int) or not 1 <= n <= len(self.card.lines):
            raise ControlError(f"line must be 1..{len(self.card.lines)}, not {n!r}")
        return self.card.lines[n - 1]

    async def _card_wait(self, cond, card_ms: float) -> bool:
        clock = self.card.clock
        end = clock.ms() + card_ms
        while clock.ms() < end:
            if cond():
                return True
            await asyncio.sleep(0.005)
        return cond()

    # -- ops ----------------------------------------------------------------------------------------
    async def op_status(self, req: dict) -> dict:
        c = self.card
        fw = c.firmware
        return {
            "channels": c.channels, "baud": c.baud, "speed": c.clock.speed, "url": c.url, "boots": c.boots,
            "card_ms": round(c.clock.ms()),
            "port": asdict(c.uart.counters), "faults": asdict(c.uart.faults),
            "lines": [{"line": ln.ch + 1, "offhook": ln.offhook, "ringing": ln.ring_start is not None,
                       "rings": ln.rings, "answered": ln.answered.is_set(), "pulses": ln.pulses,
                       "flashes": ln.flashes} for ln in c.lines],
            "firmware": None if fw is None else {
                "link": dict(zip(LINK_COUNTERS, fw.link.counters)),
                "lines": [dict(zip(CHANNEL_COUNTERS, ln.counters)) for ln in fw.lines],
                "events_dropped": fw.link.events_dropped, "copies": fw.copies},
        }

    async def op_ring(self, req: dict) -> dict:
        line = self._line(req)
        cid = None
        c = req.get("cid")
        if c:
            cid = CallerId(number=str(c.get("number", "")), name=str(c.get("name", "")),
                           datetime=str(c.get("datetime", "")))
        mode = (c or {}).get("mode", "bell202")
        cadence = req.get("cadence")
        if isinstance(cadence, str):
            if cadence not in RING_CADENCES:
                raise ControlError(f"unknown cadence {cadence!r}: 'cn', 'na' or [on_ms, off_ms]")
            cadence = RING_CADENCES[cadence]
        line.ring(cid=cid, cid_mode=mode, cadence=tuple(cadence) if cadence else None,
                  max_rings=int(req.get("max_rings", 0)))
        if not req.get("wait_answer", True):
            return {"answered": False}
        timeout_ms = float(req.get("timeout_ms", 30000))
        answered = await self._card_wait(line.answered.is_set, timeout_ms)
        out = {"answered": answered, "rings": line.rings}
        if answered and line.answer_ms is not None and line.ring_start is None:
            out["answer_card_ms"] = round(line.answer_ms)
        return out

    async def _wait_done(self, done, req: dict) -> dict:
        if not req.get("wait", True):
            return {}
        line = self._line(req)
        ok = await self._card_wait(lambda: done.is_set() or not line.offhook, float(req.get("timeout_ms", 600000)))
        if not done.is_set():
            with line._lock:
                line.source.clear()  # nobody will hear it now
            if not line.offhook:
                raise ControlError("the node hung up before this was sent (audio only flows on an answered call)")
            if not ok:
                raise ControlError("timed out before this was sent")
        return {}

    async def op_dtmf(self, req: dict) -> dict:
        line = self._line(req)
        digits = str(req["digits"])
        done = line.dtmf(digits, on_ms=int(req.get("on_ms", 80)), off_ms=int(req.get("off_ms", 80)),
                         level_dbm0=float(req.get("level_dbm0", -10)), twist_db=float(req.get("twist_db", 0)),
                         row_offset=float(req.get("row_offset", req.get("freq_offset", 0))),
                         col_offset=float(req.get("col_offset", req.get("freq_offset", 0))))
        return await self._wait_done(done, req)

    async def op_play(self, req: dict) -> dict:
        line = self._line(req)
        pcm = await asyncio.to_thread(media.to_8k, req["wav"])
        return await self._wait_done(line.queue(pcm), req) | {"ms": len(pcm) // 8}

    async def op_speak(self, req: dict) -> dict:
        line = self._line(req)
        pcm = await asyncio.to_thread(media.speak, str(req["text"]), str(req.get("voice", "en")))
        return await self._wait_done(line.queue(pcm), req) | {"ms": len(pcm) // 8}

    async def op_silence(self, req: dict) -> dict:
        line = self._line(req)
        ms = int(req.get("ms", 1000))
        return await self._wait_done(line.queue(np.zeros(ms * 8, dtype=np.int16)), req)

    async def op_impair(self, req: dict) -> dict:
        line = self._line(req)
        if "noise_dbm0" in req:
            lvl = req["noise_dbm0"]
            line.noise = None if lvl is None else Noise(float(lvl), seed=int(req.get("seed", 1234)))
        if "loss_db" in req:
            line.loss = 10 ** (-float(req["loss_db"]) / 20)
        if "echo_db" in req:
            line.echo_gain = 0.0 if req["echo_db"] is None else 10 ** (-float(req["echo_db"]) / 20)
        return {}

    async def op_listen(self, req: dict) -> dict:
        """What the caller hears for the next ``ms``.

        With ``prompts`` ({name: wav}), ``prompts`` in the answer lists which of them the caller
        has heard since the call was answered, in order, with when (``at_ms`` from the answer)
        and for how long. With ``until`` (one of those names), the listening stops as soon as
        that prompt has been heard to its end since the previous listen stopped: it may have
        begun, or even ended, while the caller was busy between the two (keying, or the
        previous answer being worked out on a loaded machine).
        """
        line = self._line(req)
        ms = float(req.get("ms", 1000))
        refs = req.get("prompts") or {}
        until = req.get("until")
        if until is not None and until not in refs:
            raise ControlError(f"until {until!r} is not one of the prompts given")
        if line.spotter is None or line.spotter[0] != refs:
            loaded = {name: await asyncio.to_thread(media.to_8k, path) for name, path in refs.items()}
            line.spotter = (dict(refs), Spotter(loaded))
        spotter = line.spotter[1]
        loaded = spotter.refs
        line.start_listening()
        if until is None:
            await self._card_wait(lambda: line.heard_ms() >= ms, ms * 1.5 + 500)
        else:
            found = await self._listen_until(line, until, loaded[until], ms)
        pcm = line.take_heard()
        report = analyse(pcm, line.country)
        if loaded:
            report["prompts"] = await asyncio.to_thread(spotter.update, line.call_pcm())
        if until is not None:
            report["until_heard"] = found  # decided on the audio as it came in
        return report

    async def _listen_until(self, line, name: str, prompt: np.ndarray, ms: float) -> bool:
        """Wait up to ``ms`` for ``prompt`` to end after the previous listen stopped."""
        mark = line.listened_upto
        start = max(0, mark - len(prompt))  # a prompt going on at the mark began at most this early
        since = (mark - start) // 8
        end = self.card.clock.ms() + ms
        while True:
            recent = line.call_pcm()[start:]
            hits = await asyncio.to_thread(spot, recent, {name: prompt})
            # it must end after the mark (the previous listen may have stopped on this very
            # prompt, up to 120 ms before its end), and a prompt's last ~100 ms is its own
            # trailing silence: do not insist on hearing that
            if any(since < h["at_ms"] + h["full_ms"] - 120 <= len(recent) // 8 for h in hits):
                return True
            if not line.offhook or self.card.clock.ms() >= end:
                return False  # out of time, or the node hung up: nothing more will come
            await self._card_wait(lambda: False, 100)

    async def op_hangup(self, req: dict) -> dict:
        line = self._line(req)
        line.hangup(str(req.get("mode", "loop_break")))
        return {}

    async def op_wait_onhook(self, req: dict) -> dict:
        line = self._line(req)
        ok = await self._card_wait(lambda: not line.offhook, float(req.get("timeout_ms", 10000)))
        return {"onhook": ok}

    async def op_fault(self, req: dict) -> dict:
        f = self.card.uart.faults
        if "ber" in req:
            f.ber_up = f.ber_down = float(req["ber"])
        for k in ("ber_up", "ber_down", "drop_up", "drop_down"):
            if k in req:
                setattr(f, k, float(req[k]))
        return {"faults": asdict(f)}

    async def op_reset_card(self, req: dict) -> dict:
        boots = self.card.boots
        self.card.reset()
        await self._card_wait(lambda: self.card.boots > boots, 5000)
        return {"boots": self.card.boots}
