"""The node daemon: configuration, state, prompts, the card, and a runner per line.

It waits for the card rather than giving up, and publishes its state to ``status.json`` in the
data directory every second (written whole, then renamed) for ``nodectl status``. ``nodectl flash``
and ``nodectl card info`` reach it over its control socket (``node_agent/control.py``): it flashes
the card over its own link while the lines carry calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path

import hal
from central_link.protocol import LineState
from central_link.uplink import Uplink

from . import __version__
from .auth import Authenticator
from .calls import LineRunner
from .config import Forwarding, NodeConfig
from .control import ControlServer, socket_path
from .dtmf_mask import DtmfMask
from .forwarding import Forwarder, line_law
from .hq_link import make_uplink
from .ivr import Ivr
from .prompts import PromptLibrary
from .records import CallLog
from .store import Store
from .verify import serve

log = logging.getLogger("node_agent")


class Node:
    def __init__(self, config: NodeConfig, *, clock=datetime.now) -> None:
        self.config = config
        self.store = Store(config.data_dir / "node.db")
        self.auth = Authenticator(self.store, max_daily_failures=config.max_daily_failures)
        self.prompts = PromptLibrary(config)
        self.ivr = Ivr(config, self.prompts, self.auth, self.store, clock=clock)
        self.board = hal.open(config.card, hal.BoardConfig(country=config.country))
        self.runners: list[LineRunner] = []
        self.uplink: Uplink | None = None
        # calls the IVR transfers wait here for an HQ agent (without [hq]: the transfer's fallback)
        self.forwarder = None if config.hq is None else self._forwarder(config.hq.forwarding)
        self.ivr.forwarder = self.forwarder
        self.control: ControlServer | None = None
        self.started = time.time()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        # calls a previous run died with: closed as interrupted, and their messages kept,
        # before any new call can start
        interrupted = await asyncio.to_thread(CallLog(self.store).close_interrupted)
        recovered = await asyncio.to_thread(self.ivr.recordings.recover)
        if interrupted or recovered:
            log.warning("after a stop: %d call record(s) closed as interrupted, %d message(s) recovered",
                        len(interrupted), recovered)
        report = await asyncio.to_thread(self.prompts.build)
        log.info("prompts: %d built, %d cached", report.built, report.cached)
        while True:
            try:
                await self.board.start(timeout=10)
                break
            except ConnectionError as exc:
                log.warning("%s; retrying", exc)
        ident = self.board.identity
        log.info("card %s firmware %s, %d lines", ident.board_id, ident.firmware, ident.channels)
        for n, lc in sorted(self.config.lines.items()):
            if n > len(self.board.lines):
                log.error("line %d is configured but the card has only %d lines", n, len(self.board.lines))
                continue
            self.runners.append(LineRunner(self.board.lines[n - 1], lc, self.ivr, self.store,
                                           answer_on_ring=self.config.answer_on_ring,
                                           language=self.config.language))
        tasks = [asyncio.create_task(r.run(), name=f"line {r.line.number}") for r in self.runners]
        tasks.append(asyncio.create_task(self._publish(), name="status"))
        # `nodectl flash` / `card info` ask this daemon, which holds the card's port, over its socket
        self.control = ControlServer(socket_path(self.config.data_dir), self.board, self.config.card,
                                     self.lines_in_call)
        tasks.append(asyncio.create_task(self.control.serve(), name="control"))
        if self.config.hq is not None:  # without [hq] the node works alone, its outbox kept
            self.uplink = make_uplink(self.config.hq, self.config.node_id, self.store, self._firmware, self._lines,
                                      handler=self.forwarder)
            self.forwarder.link = self.uplink
            tasks.append(asyncio.create_task(self.uplink.run(), name="hq uplink"))
        if ready is not None:
            ready.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await self.board.close()
            self.store.close()

    def lines_in_call(self) -> list[int]:
        """The lines whose call is not over (ringing, being answered, in the IVR): a card's reboot
        after a flash waits until there are none."""
        return [r.line.number for r in self.runners if r.state != "idle"]

    def _forwarder(self, fw: Forwarding) -> Forwarder:
        """The forwarded calls, each with its DTMF mask in the caller -> agent direction (flattening
        keys pressed while talking, when set) and the secure capture the agent's Verify caller runs."""

        async def capture(request):
            return await serve(request, on_fail=fw.verify_on_fail)

        return Forwarder(fw, self._law, filters=lambda call: DtmfMask(flatten=fw.flatten_dtmf), captures=capture)

    def _firmware(self) -> str:
        ident = self.board.identity
        return ident.firmware if ident else ""

    def _law(self) -> int:
        ident = self.board.identity
        return line_law(ident.law if ident else None)

    def _lines(self) -> list[LineState]:
        return [LineState(r.line.number, r.config.number, (r.current.transfer if r.current else "") or r.state)
                for r in self.runners]

    def status(self) -> dict:
        ident = self.board.identity
        link = self.board.link_status()
        return {
            "node": self.config.node_id, "version": __version__, "pid": os.getpid(), "updated": time.time(),
            "uptime_s": round(time.time() - self.started), "card": {
                "url": self.config.card, "connected": self.board.connected,
                "board": ident.board_id if ident else None, "firmware": ident.firmware if ident else None,
                "bad_frames": link.bad_frames, "reconnects": link.reconnects},
            "lines": [{"line": r.line.number, "number": r.config.number, "flow": r.config.flow,
                       "state": (r.current.transfer if r.current else "") or r.state,
                       "calls": r.calls, "caller": r.current.caller_number if r.current else "",
                       "node": r.current.path[-1] if r.current and r.current.path else ""} for r in self.runners],
            "open_alarms": len(self.auth.alarms()), "outbox_pending": self.store.outbox_count(),
            "hq": None if self.uplink is None else {"url": self.uplink.url, "connected": self.uplink.state.connected,
                                                    "connects": self.uplink.state.connects,
                                                    "last_error": self.uplink.state.last_error},
        }

    async def _publish(self) -> None:
        path = self.config.data_dir / "status.json"
        while True:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.status()))
            tmp.replace(path)
            await asyncio.sleep(1.0)


def read_status(data_dir: Path) -> dict | None:
    try:
        return json.loads((data_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
