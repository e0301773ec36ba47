"""The node daemon's local control socket: ``nodectl flash`` and ``nodectl card info`` ask the
running daemon, which holds the card's port, instead of opening the port themselves.

A Unix socket ``control.sock`` in the data directory, mode 0600 (bound under a temporary name,
made 0600, then renamed into place, so it is never reachable by others), so only the daemon's
user (and root) can ask. One request per connection, one JSON object per line (UTF-8):

* ``{"op": "card_info"}`` -> ``{"info": {...}, "exit": 0}`` (what ``nodectl card info --json`` shows);
* ``{"op": "flash", "request": {FlashRequest's fields}, "image": BASE64}`` (the image file as
  nodectl checked it: whole and signed by a deployment key) -> a stream of ``{"out": LINE}``,
  ``{"err": LINE}``, ``{"progress": [DONE, TOTAL]}``, ``{"progress_close": true}``, and last
  ``{"exit": STATUS}`` (docs/firmware-update.md's exit status).

Either side closing the connection ends the request: when nodectl goes (Ctrl-C) the daemon
cancels the flash there, between two chunks (the card keeps what it received; the same command
resumes), or while it waits for the lines or the confirm (the image stays pending). A refusal is
``{"err": MESSAGE, "exit": 2}``. Documented in docs/firmware-update.md ("The node daemon").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import TextIO

import hal
from drivers.linecard import flasher as fl
from firmware.image import ImageError, container

from .flashing import EXIT_LINK, EXIT_REFUSED, EXIT_USAGE, FlashRequest, card_info, flash_card

log = logging.getLogger("node_agent.control")

SOCKET_NAME = "control.sock"
MAX_REQUEST = 8 << 20  # a line: a base64 image of up to the card's slot (1 MiB) with room to spare
PROGRESS_EVERY_S = 0.05  # progress lines at least this often, and at each whole percent


def socket_path(data_dir: Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


class ControlError(Exception):
    """The daemon could not be asked (``code``: the exit status nodectl gives)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


# -- the daemon's side ------------------------------------------------------------------------------
class ControlServer:
    """Serves the control socket for the daemon's board. ``lines_in_call()``: the daemon's lines
    (1-based) whose calls are not over; the reboot after a flash waits until there are none."""

    def __init__(self, path: Path, board: hal.Board, card_url: str, lines_in_call: Callable[[], list[int]]) -> None:
        self.path = Path(path)
        self.board = board
        self.card_url = card_url
        self.lines_in_call = lines_in_call
        self._flashing = asyncio.Lock()
        self.flashes = 0  # flash requests served (any outcome)
        self.cancelled = 0  # of those, ended because nodectl went away

    async def serve(self) -> None:
        tmp = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            server = await asyncio.start_unix_server(self._client, path=str(tmp), limit=MAX_REQUEST)
        except OSError as exc:
            log.error("no control socket (%s: %s): `nodectl flash` cannot reach this daemon", tmp, exc)
            return
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)  # only now reachable, and only by this user
        ino = self.path.stat().st_ino
        log.info("control socket %s", self.path)
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(OSError):
                if self.path.stat().st_ino == ino:  # ours, not a newer daemon's
                    self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        send = _Sender(writer)
        try:
            try:
                req = json.loads(await reader.readline())
                op = req["op"]
            except (ValueError, KeyError, TypeError, asyncio.LimitOverrunError) as exc:
                send({"err": f"nodectl: a control request this daemon cannot read ({exc})", "exit": EXIT_USAGE})
                return
            if op == "card_info":
                await self._card_info(send)
            elif op == "flash":
                await self._flash_while(reader, req, send)
            else:
                send({"err": f"nodectl: the node daemon knows no control op {op!r} (is nodectl newer?)",
                      "exit": EXIT_USAGE})
        except Exception:  # one bad request must not take the daemon down
            log.exception("control request failed")
            send({"err": "nodectl: the node daemon failed to carry out the request (its log says why)",
                  "exit": EXIT_USAGE})
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()

    async def _card_info(self, send: _Sender) -> None:
        try:
            info = await card_info(self.card_url, self.board.firmware_updater())
        except (fl.LinkDown, fl.LinkLost) as exc:
            send({"err": f"nodectl: {exc}", "exit": EXIT_LINK})
            return
        send({"info": info, "exit": 0})

    async def _flash_while(self, reader: asyncio.StreamReader, req: dict, send: _Sender) -> None:
        """The flash, until it ends or nodectl goes away (EOF on its connection: cancelled)."""
        if self._flashing.locked():
            send({"err": "nodectl: another `nodectl flash` is flashing this card now: wait until it ends",
                  "exit": EXIT_USAGE})
            return
        async with self._flashing:
            self.flashes += 1
            work = asyncio.create_task(self._flash(req, send), name="flash")
            gone = asyncio.create_task(reader.read(), name="control eof")
            try:
                await asyncio.wait([work, gone], return_when=asyncio.FIRST_COMPLETED)
                if not work.done():
                    self.cancelled += 1
                    log.warning("flash: nodectl went away (interrupted): stopping; the card keeps what it received")
                    work.cancel()
                    await asyncio.wait([work])
                    return
                code = work.result()
                send({"exit": code})
                log.info("flash: ended with exit status %d", code)
            finally:
                gone.cancel()
                work.cancel()

    async def _flash(self, req: dict, send: _Sender) -> int:
        names = {f.name for f in fields(FlashRequest)}
        try:
            request = FlashRequest(**{k: v for k, v in req["request"].items() if k in names})
            data = base64.b64decode(req["image"], validate=True)
        except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
            send({"err": f"nodectl: a flash request this daemon cannot read ({exc})"})
            return EXIT_USAGE
        out, err = _Lines(send, "out"), _Lines(send, "err")
        try:  # nodectl checked it; read again here: what the card gets is what was checked
            image = container.read(data, request.image_name)
        except ImageError as exc:
            print(f"nodectl: {exc} (nothing was sent)", file=err)
            return EXIT_REFUSED
        log.info("flash: %s (%s) onto the card while the lines carry calls", request.image_name,
                 image.header.version_text)
        try:
            return await flash_card(request, self.board.firmware_updater(), image, out, err, _Progress(send),
                                    lines_in_use=self.lines_in_call)
        finally:
            out.flush()
            err.flush()


class _Sender:
    """One JSON line to nodectl; nothing once it has gone."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def __call__(self, event: dict) -> None:
        if not self.writer.is_closing():
            self.writer.write(json.dumps(event).encode() + b"\n")


class _Lines:
    """A text stream whose lines go to nodectl's stdout or stderr (``print(..., file=...)``)."""

    def __init__(self, send: _Sender, kind: str) -> None:
        self.send, self.kind, self._buf = send, kind, ""

    def write(self, text: str) -> int:
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        for ln in lines:
            self.send({self.kind: ln})
        return len(text)

    def flush(self) -> None:
        if self._buf:
            self.send({self.kind: self._buf})
            self._buf = ""

    def isatty(self) -> bool:
        return False


class _Progress:
    """The transfer's progress, to nodectl's progress bar (at most every PROGRESS_EVERY_S)."""

    def __init__(self, send: _Sender) -> None:
        self.send = send
        self._last = -1.0
        self._pct = -1
        self._open = False

    def __call__(self, done: int, total: int) -> None:
        now = asyncio.get_running_loop().time()
        pct = 100 * done // total  # every whole percent gets there: nodectl's plain lines are at each 10 %
        if not self._open or pct != self._pct or now - self._last >= PROGRESS_EVERY_S:
            self._last, self._pct, self._open = now, pct, True
            self.send({"progress": [done, total]})

    def close(self) -> None:
        if self._open:
            self._open = False
            self.send({"progress_close": True})


# -- nodectl's side ---------------------------------------------------------------------------------
async def _connect(sock: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_unix_connection(str(sock))
    except OSError as exc:
        raise ControlError(EXIT_USAGE, f"the node daemon does not answer on its control socket {sock} "
                                       f"({exc.strerror or exc}): is it running (`nodectl status`)? If it is not, "
                                       "run this again: the command then opens the card's port itself") from None


async def _events(sock: Path, request: dict):
    reader, writer = await _connect(sock)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                raise ControlError(EXIT_LINK, "the node daemon closed the control connection before the request "
                                              "ended (did it stop?): run the same command again (a flash resumes)")
            yield json.loads(line)
    finally:  # on Ctrl-C too: the daemon sees the connection close and stops what it was doing
        writer.close()


async def ask_flash(sock: Path, req: FlashRequest, image: bytes, out: TextIO, err: TextIO, bar) -> int:
    """Have the daemon flash ``image``; its messages and progress shown here. -> the exit status."""
    request = {"op": "flash", "request": asdict(req), "image": base64.b64encode(image).decode("ascii")}
    async with contextlib.aclosing(_events(sock, request)) as events:
        async for ev in events:
            if "out" in ev:
                print(ev["out"], file=out, flush=True)
            if "err" in ev:
                print(ev["err"], file=err, flush=True)
            if "progress" in ev:
                bar(*ev["progress"])
            if "progress_close" in ev:
                bar.close()
            if "exit" in ev:
                return int(ev["exit"])
    raise AssertionError("unreachable: _events ends only by raising")


async def ask_card_info(sock: Path) -> dict:
    """What ``nodectl card info --json`` shows, asked of the daemon (raises ControlError)."""
    async with contextlib.aclosing(_events(sock, {"op": "card_info"})) as events:
        async for ev in events:
            if "exit" in ev:
                if ev["exit"] != 0 or "info" not in ev:
                    raise ControlError(int(ev["exit"]), ev.get("err", "the node daemon could not ask the card")
                                       .removeprefix("nodectl: "))
                return ev["info"]
    raise AssertionError("unreachable: _events ends only by raising")
