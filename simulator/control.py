"""The simulator's control port: JSON lines that script the PSTN side of the simulated lines.

Each request is one JSON object with an ``op`` (and an optional ``id`` echoed back); each answer
is one JSON object with ``ok`` and either the result or an ``error`` saying what was wrong.
Lines are numbered from 1. Every request is checked against ``schema`` (its fields, their types
and ranges) before anything reaches the card; a refused one is answered with the ``field`` at
fault, and the connection goes on. Waiting ops (``ring`` until answered, ``dtmf`` until sent, ``listen``)
wait in card time, so they also work when the simulator runs faster than real time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import asdict
from typing import Any

import numpy as np

from drivers import audiofile as media
from drivers.dsp import CallerId, Noise
from firmware.card.wire import CHANNEL_COUNTERS, LINK_COUNTERS

from . import mpy_shims, schema, spi_nor
from .analysis import Spotter, analyse, spot
from .card import SimCard
from .pstn import dtmf_audio
from .schema import MISSING, RequestError

log = logging.getLogger("simulator.control")


RESET_CAUSES = {mpy_shims.PWRON_RESET: "power on", mpy_shims.HARD_RESET: "reset line",
                mpy_shims.WDT_RESET: "watchdog", mpy_shims.SOFT_RESET: "machine.reset()"}


class ControlError(ValueError):
    """A valid request that cannot be done now (the node hung up, a wait timed out)."""


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """The next request line (None at the end); an over-long one is skipped whole and refused."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial or None  # a last line without its newline
    except asyncio.LimitOverrunError as exc:
        await reader.readexactly(exc.consumed)
    while True:  # drop the rest of the line, without ever holding more than the limit
        try:
            await reader.readuntil(b"\n")
            break
        except asyncio.IncompleteReadError:
            break
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
    raise RequestError("request", f"is longer than {schema.MAX_REQUEST_BYTES} bytes (one JSON object a line)")


class ControlServer:
    def __init__(self, card: SimCard) -> None:
        self.card = card
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._client, host, port, limit=schema.MAX_REQUEST_BYTES)
        return self.server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    raw = await read_request(reader)
                    if raw is None:
                        return
                    req = schema.parse(raw)
                except RequestError as exc:
                    await self._reply(writer, _refusal(None, exc))
                    continue
                await self._reply(writer, await self.handle(req))
        except ConnectionError:
            return
        finally:
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, obj: dict) -> None:
        writer.write(json.dumps(obj).encode() + b"\n")
        await writer.drain()

    async def handle(self, req: dict) -> dict:
        """The answer to one request (a JSON object): ``ok`` and the result, or the ``error``."""
        try:
            rid = schema.request_id(req)
        except RequestError as exc:
            return _refusal(None, exc)
        resp = await self._do(req)
        if rid is not MISSING:
            resp["id"] = rid
        return resp

    async def _do(self, req: dict) -> dict:
        op = req.get("op")
        try:
            op, args = schema.validate(req, schema.Context(channels=len(self.card.lines)))
            return {"ok": True, **(await getattr(self, f"op_{op}")(args))}
        except RequestError as exc:
            return _refusal(op if isinstance(op, str) and op in schema.OPS else None, exc)
        except (ControlError, media.MediaError) as exc:
            return {"ok": False, "error": f"{op}: {exc}"}
        except Exception as exc:  # a bug of ours: say so, keep the connection, log the traceback
            log.exception("control request %s failed", op)
            return {"ok": False, "error": f"{op}: internal error of the simulator ({type(exc).__name__}: {exc}); "
                                          "its log has the details"}

    # -- helpers ----------------------------------------------------------------------------------
    def _line(self, args: dict):
        return self.card.lines[args["line"] - 1]

    async def _card_wait(self, cond, card_ms: float) -> bool:
        clock = self.card.clock
        end = clock.ms() + card_ms
        while clock.ms() < end:
            if cond():
                return True
            await asyncio.sleep(0.005)
        return cond()

    @staticmethod
    def _room(line, ms: float, field: str) -> None:
        """Refuse audio that would leave more than MAX_QUEUED_MS waiting on the line."""
        queued = line.queued_ms()
        if queued + ms > schema.MAX_QUEUED_MS:
            raise RequestError(field, f"would add {ms / 1000:g} s to the {queued / 1000:g} s already waiting to be "
                                      f"sent on line {line.ch + 1}; at most {schema.MAX_QUEUED_MS / 1000:g} s "
                                      "may wait (send with wait: true, or hang up to clear it)")

    @staticmethod
    def _size(path: str, field: str) -> int:
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise RequestError(field, f"cannot be read: {exc.strerror} ({path})") from None
        if size > schema.MAX_WAV_BYTES:
            raise RequestError(field, f"is {size >> 20} MiB; at most {schema.MAX_WAV_BYTES >> 20} MiB ({path})")
        return size

    async def _load(self, path: str, field: str) -> np.ndarray:
        """A WAV as 8 kHz samples, within the bounds of one request."""
        self._size(path, field)
        try:
            pcm = await asyncio.to_thread(media.to_8k, path)
        except media.MediaError as exc:
            raise RequestError(field, f"cannot be used: {exc}") from None
        _audio_fits(len(pcm), field)
        return pcm

    # -- ops ----------------------------------------------------------------------------------------
    async def op_status(self, args: dict) -> dict:
        c = self.card
        fw = c.firmware
        return {
            "channels": c.channels, "baud": c.baud, "speed": c.clock.speed, "url": c.url, "boots": c.boots,
            "card_ms": round(c.clock.ms()),
            # pauses of the firmware thread taken out of the card's clock (simulator/clock.py)
            "clock": {"stalls": c.clock.stalls, "absorbed_ms": c.clock.absorbed_ms,
                      "longest_stall_ms": c.clock.longest_stall_ms},
            "port": asdict(c.uart.counters), "faults": asdict(c.uart.faults),
            "lines": [{"line": ln.ch + 1, "offhook": ln.offhook, "ringing": ln.ring_start is not None,
                       "rings": ln.rings, "answered": ln.answered.is_set(), "pulses": ln.pulses,
                       "flashes": ln.flashes} for ln in c.lines],
            "power": {"on": c.powered, "stage": c.stage, "reset_cause": RESET_CAUSES.get(c.reset_cause)},
            "flash": {"chip": "W25Q16JV", "file": str(c.flash_path), "size": c.nor.size,
                      "block_size": c.nor.block_size, "page_size": spi_nor.PAGE, "erases": c.nor.erases,
                      "writes": c.nor.writes, "ops": c.nor.ops, "reads": c.nor.reads},
            "cut": c.cut, "last_cut": c.last_cut,
            "running_slot": c.running_slot if c.stage == "app" else None,
            "running_tree": None if c.running_tree is None or c.stage != "app" else str(c.running_tree),
            **c.slots(),
            "firmware": None if fw is None else {
                "link": dict(zip(LINK_COUNTERS, fw.link.counters)),
                "lines": [dict(zip(CHANNEL_COUNTERS, ln.counters)) for ln in fw.lines],
                # lost frames in a row in each line's playout (the host's lateness apart)
                "longest_loss": [ln.playout.longest_loss for ln in fw.lines],
                "events_dropped": fw.link.events_dropped, "copies": fw.copies},
        }

    async def op_ring(self, args: dict) -> dict:
        line = self._line(args)
        c = args["cid"]
        cid = None if c is None else CallerId(number=c["number"], name=c["name"], datetime=c["datetime"])
        line.ring(cid=cid, cid_mode="bell202" if c is None else c["mode"], cadence=args["cadence"],
                  max_rings=args["max_rings"])
        if not args["wait_answer"]:
            return {"answered": False}
        answered = await self._card_wait(line.answered.is_set, args["timeout_ms"])
        out = {"answered": answered, "rings": line.rings}
        if answered and line.answer_ms is not None and line.ring_start is None:
            out["answer_card_ms"] = round(line.answer_ms)
        return out

    async def _send(self, line, pcm: np.ndarray, args: dict, field: str) -> dict:
        """Queue ``pcm`` on the line; with ``wait``, until it has been sent."""
        self._room(line, len(pcm) / 8, field)
        done = line.queue(pcm)
        if not args["wait"]:
            return {}
        ok = await self._card_wait(lambda: done.is_set() or not line.offhook, args["timeout_ms"])
        if not done.is_set():
            with line._lock:
                line.source.clear()  # nobody will hear it now
            if not line.offhook:
                raise ControlError("the node hung up before this was sent (audio only flows on an answered call)")
            if not ok:
                raise ControlError("timed out before this was sent")
        return {}

    async def op_dtmf(self, args: dict) -> dict:
        line = self._line(args)
        tones = {k: args[k] for k in ("on_ms", "off_ms", "level_dbm0", "twist_db", "row_offset", "col_offset")}
        pcm = await asyncio.to_thread(dtmf_audio, args["digits"], **tones)
        return await self._send(line, pcm, args, "digits")

    async def op_play(self, args: dict) -> dict:
        line = self._line(args)
        pcm = await self._load(args["wav"], "wav")
        return await self._send(line, pcm, args, "wav") | {"ms": len(pcm) // 8}

    async def op_speak(self, args: dict) -> dict:
        line = self._line(args)
        pcm = await asyncio.to_thread(media.speak, args["text"], args["voice"])
        _audio_fits(len(pcm), "text")
        return await self._send(line, pcm, args, "text") | {"ms": len(pcm) // 8}

    async def op_silence(self, args: dict) -> dict:
        line = self._line(args)
        return await self._send(line, np.zeros(args["ms"] * 8, dtype=np.int16), args, "ms")

    async def op_impair(self, args: dict) -> dict:
        line = self._line(args)
        if "noise_dbm0" in args:
            lvl = args["noise_dbm0"]
            line.noise = None if lvl is None else Noise(lvl, seed=args["seed"])
        if "loss_db" in args:
            line.loss = 10 ** (-args["loss_db"] / 20)
        if "echo_db" in args:
            line.echo_gain = 0.0 if args["echo_db"] is None else 10 ** (-args["echo_db"] / 20)
        return {}

    async def op_listen(self, args: dict) -> dict:
        """What the caller hears for the next ``ms``.

        With ``prompts`` ({name: wav}), ``prompts`` in the answer lists which of them the caller
        has heard since the call was answered, in order, with when (``at_ms`` from the answer)
        and for how long. With ``until`` (one of those names), the listening stops as soon as
        that prompt has been heard to its end since the previous listen stopped: it may have
        begun, or even ended, while the caller was busy between the two (keying, or the
        previous answer being worked out on a loaded machine).
        """
        line = self._line(args)
        ms, refs, until = args["ms"], args["prompts"], args["until"]
        if line.spotter is None or line.spotter[0] != refs:
            total = sum(self._size(path, f"prompts[{name!r}]") for name, path in refs.items())
            if total > schema.MAX_WAV_BYTES:
                raise RequestError("prompts", f"come to {total >> 20} MiB of files; at most "
                                              f"{schema.MAX_WAV_BYTES >> 20} MiB in one listen")
            loaded = {name: await self._load(path, f"prompts[{name!r}]") for name, path in refs.items()}
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

    async def op_hangup(self, args: dict) -> dict:
        self._line(args).hangup(args["mode"])
        return {}

    async def op_wait_onhook(self, args: dict) -> dict:
        line = self._line(args)
        return {"onhook": await self._card_wait(lambda: not line.offhook, args["timeout_ms"])}

    async def op_fault(self, args: dict) -> dict:
        f = self.card.uart.faults
        if "ber" in args:
            f.ber_up = f.ber_down = args["ber"]
        for k in ("ber_up", "ber_down", "drop_up", "drop_down"):
            if k in args:
                setattr(f, k, args[k])
        return {"faults": asdict(f)}

    async def op_power(self, args: dict) -> dict:
        self.card.power(args["on"])
        if not args["on"]:  # answered once the firmware has stopped
            await self._card_wait(lambda: self.card.stage == "off", 2000)
        return {"on": self.card.powered, "boots": self.card.boots, "stage": self.card.stage}

    async def op_cut(self, args: dict) -> dict:
        if args["at"] == "none":
            self.card.clear_cut()
            return {"cut": None, "ops": self.card.nor.ops}
        if not self.card.powered:
            raise ControlError("the card is off: power it on first (a cut strikes a running card)")
        return {"cut": self.card.arm_cut(args["at"], args["n"]), "ops": self.card.nor.ops}

    async def op_reset_card(self, args: dict) -> dict:
        boots = self.card.boots
        self.card.reset()
        await self._card_wait(lambda: self.card.boots > boots, 5000)
        return {"boots": self.card.boots}


def _audio_fits(samples: int, field: str) -> None:
    if samples > schema.MAX_AUDIO_MS * 8:
        raise RequestError(field, f"lasts {samples / 8000:g} s; at most {schema.MAX_AUDIO_MS / 1000:g} s in one request")


def _refusal(op: str | None, exc: RequestError) -> dict[str, Any]:
    return {"ok": False, "error": f"{op}: {exc}" if op else str(exc), "field": exc.field}
