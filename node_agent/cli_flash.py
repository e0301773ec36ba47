"""``nodectl flash IMAGE`` and ``nodectl card info``: a line card's firmware, in the field.

``flash`` checks the image on this host first (whole, signed by a deployment key), then against
the card (its board, its security counter, what it runs) before it sends a byte, sends it while
calls go on, waits until no line is in a call, reboots the card into the new image and waits until
that image has confirmed itself (node_agent/flashing.py). When the node daemon runs on the card,
it holds the card's port: the command then asks the daemon (its control socket,
node_agent/control.py), which does the same over its own link while its lines carry calls, and
streams the messages and progress back. Otherwise the command opens the port itself. Exit status:
the EXIT_* of node_agent/flashing.py, documented in docs/firmware-update.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from drivers.linecard import flasher as fl
from firmware.image import ImageError, container, sign

from . import control
from .config import ConfigError, card_problem, load
from .daemon import read_status
from .flashing import (
    EXIT_INTERRUPTED,
    EXIT_LINK,
    EXIT_NOT_CONFIRMED,
    EXIT_NOT_TAKEN,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    INTERRUPTED,
    FlashRequest,
    Refused,
    card_info,
    fail,
    flash_card,
    render_info,
)

__all__ = ["EXIT_INTERRUPTED", "EXIT_LINK", "EXIT_NOT_CONFIRMED", "EXIT_NOT_TAKEN", "EXIT_OK", "EXIT_REFUSED",
           "EXIT_USAGE", "ProgressBar", "add_parser", "run_card", "run_flash", "run_interruptible"]

KEYS_ENV = "BRANCHNODE_IMAGE_KEYS"
DEFAULT_KEY_DIR = Path("/etc/branchnode/image-keys")  # every *.pub in it (old and new key while rotating)
INTERRUPT_GRACE_S = 2.0  # after Ctrl-C: the longest the command may take to stop


class Usage(Exception):
    """The command cannot be carried out as given."""


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    f = sub.add_parser("flash", parents=[common], help="flash a signed firmware image onto the line card",
                       description="Check IMAGE (whole, signed by a deployment key, for the card's board, security "
                                   "counter not lower than the card's), send it to the card's inactive slot while "
                                   "calls go on, wait until no line is in use, reboot the card into it and wait "
                                   "until it confirms itself. An interrupted transfer resumes when run again. "
                                   "When the node daemon runs on the card, it does the transfer over its own link "
                                   "while calls go on (asked over its control socket). Exit status: "
                                   "0 done, 1 image refused, 2 usage, 3 link/transfer stopped (run again to "
                                   "resume), 4 card refused or reverted it, 5 not confirmed in time, 130 "
                                   "interrupted (run again to resume).")
    f.add_argument("image", help="the signed image file (`nodectl image build` + `nodectl image sign`)")
    _card_options(f)
    f.add_argument("--key", action="append", default=[],
                   help=f"a deployment public key (repeatable); default ${KEYS_ENV} (files separated by ':') "
                        f"or every *.pub in {DEFAULT_KEY_DIR}")
    f.add_argument("--force", action="store_true", help="flash even if the card already runs this image (the same payload digest)")
    f.add_argument("--verify-only", action="store_true", help="make every check against the card, send nothing")
    f.add_argument("--now", action="store_true", help="reboot the card at once, even while a line is in a call")
    f.add_argument("--no-reboot", action="store_true",
                   help="leave the image pending: the card boots it at its next restart")
    f.add_argument("--confirm-timeout", type=float, default=60.0, metavar="S",
                   help="how long the new image has to confirm itself after the reboot (default 60 s)")
    c = sub.add_parser("card", parents=[common], help="the line card's firmware slots",
                       description="What the line card's updater holds (docs/firmware-update.md).")
    csub = c.add_subparsers(dest="action", required=True)
    i = csub.add_parser("info", parents=[common], help="board, running version, both slots, the last revert",
                        description="Board id, running version, each slot's state (confirmed / pending / trial / "
                                    "reverted / empty / receiving), version and payload digest, and why the card last "
                                    "reverted; asked of the node daemon when it runs on the card. "
                                    "Exit status 0, 2 usage, 3 the card did not answer.")
    _card_options(i)
    i.add_argument("--json", action="store_true")


def _card_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--card", help="the card's port (/dev/ttyACM0, socket://HOST:PORT); default the configuration's")
    p.add_argument("--baud", type=int, default=921600, help="the port's baud rate (default 921600)")
    p.add_argument("--wait", type=float, default=5.0, metavar="S",
                   help="how long to wait for the card to answer (default 5 s)")


# -- the commands ------------------------------------------------------------------------------------
def run_flash(args, transport=None) -> int:
    """``nodectl flash``; ``transport``: the link's byte transport (tests give an in-process card)."""
    return run_interruptible(lambda: _flash(args, transport or fl.SerialTransport, sys.stdout, sys.stderr),
                             sys.stderr, INTERRUPTED)


def run_card(args, transport=None) -> int:
    return run_interruptible(lambda: _card_info(args, transport or fl.SerialTransport, sys.stdout, sys.stderr),
                             sys.stderr, None)


def run_interruptible(main: Callable[[], Awaitable[int]], err: TextIO, message: str | None,
                      grace_s: float = INTERRUPT_GRACE_S) -> int:
    """``asyncio.run(main())``, where one Ctrl-C always ends it promptly with EXIT_INTERRUPTED.

    The loop's own SIGINT handler (it wakes the loop at once, whatever the loop waits on; and it is
    there even when SIGINT came ignored, where ``asyncio.run`` would take no Ctrl-C at all) cancels
    the command, and cancels it again every 50 ms until it has ended, for at most ``grace_s``: a
    cancel that lands in the same turn as an answer from the card can be lost in a library's wait
    (Python 3.11's ``wait_for``, gh-86296), and a technician must not have to press Ctrl-C twice
    (nor wait) while the card is dark. The command stops as a cancel stops it: a transfer between
    chunks, the card keeping what it has (the same command resumes)."""
    interrupted = False

    async def supervised() -> int:
        nonlocal interrupted
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        before = signal.getsignal(signal.SIGINT)
        try:
            # taken even where SIGINT came ignored (a program started in the background by a shell
            # without job control inherits that, and asyncio.run then installs no handler at all)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            handled = True
        except (RuntimeError, ValueError):  # not the main thread: Ctrl-C is a KeyboardInterrupt as usual
            handled = False
        task = asyncio.ensure_future(main())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            interrupted = True
            deadline = loop.time() + grace_s
            while not task.done() and loop.time() < deadline:
                task.cancel()
                await asyncio.wait([task], timeout=0.05)
            return EXIT_INTERRUPTED
        finally:
            stopped.cancel()
            if handled:
                loop.remove_signal_handler(signal.SIGINT)
                signal.signal(signal.SIGINT, before)  # as it was (remove_signal_handler sets Python's default)

    try:
        code = asyncio.run(supervised())
    except KeyboardInterrupt:
        interrupted, code = True, EXIT_INTERRUPTED
    if interrupted:
        if message:
            print(f"\nnodectl: {message}", file=err, flush=True)
        return EXIT_INTERRUPTED
    return code


async def _flash(args, transport, out: TextIO, err: TextIO) -> int:
    try:
        url, daemon = _card_url(args)
        data, image, key = _checked_image(args)
    except Usage as exc:
        return fail(err, EXIT_USAGE, str(exc))
    except Refused as exc:
        return fail(err, EXIT_REFUSED, f"{exc} (nothing was sent)")
    h = image.header
    print(f"{args.image}: board {h.board_id} version {h.version_text} security counter {h.security_counter}, "
          f"signed by key {key}", file=out)
    req = FlashRequest(args.image, args.card or "the configured port", args.force, args.verify_only, args.now,
                       args.no_reboot, args.confirm_timeout)
    bar = ProgressBar(err, err.isatty())
    if daemon is not None:  # the daemon holds the card: it sends the image over its own link, calls go on
        print(f"the node daemon holds the card's port {url}: it flashes the card while its lines carry calls",
              file=out)
        try:
            return await control.ask_flash(daemon, req, data, out, err, bar)
        except control.ControlError as exc:
            return fail(err, exc.code, str(exc))
    try:
        async with fl.open_card(url, baud=args.baud, timeout=args.wait, transport=transport) as flasher:
            return await flash_card(req, flasher, image, out, err, bar)
    except fl.LinkDown as exc:
        return fail(err, EXIT_LINK, str(exc))


async def _card_info(args, transport, out: TextIO, err: TextIO) -> int:
    try:
        url, daemon = _card_url(args)
    except Usage as exc:
        return fail(err, EXIT_USAGE, str(exc))
    try:
        if daemon is not None:
            info = await control.ask_card_info(daemon)
        else:
            async with fl.open_card(url, baud=args.baud, timeout=args.wait, transport=transport) as flasher:
                info = await card_info(url, flasher)
    except control.ControlError as exc:
        return fail(err, exc.code, str(exc))
    except (fl.LinkDown, fl.LinkLost) as exc:
        return fail(err, EXIT_LINK, str(exc))
    print(json.dumps(info, indent=2) if args.json else render_info(info), file=out)
    return EXIT_OK


# -- checks on this host -------------------------------------------------------------------------------
def _card_url(args) -> tuple[str, Path | None]:
    """The card's URL (--card, else the configuration's), and the control socket of the node daemon
    that holds it (None: no daemon runs on it; the command opens the port itself)."""
    cfg = None
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        if not args.card:
            raise Usage(f"give the card with --card URL, or a configuration that names it ({exc})") from None
    url = args.card or cfg.card
    problem = card_problem(url)
    if problem:
        raise Usage(f"--card: {problem}")
    if cfg is None:
        return url, None
    st = read_status(cfg.data_dir)
    try:
        alive = time.time() - float(st["updated"]) < 5 and _pid_alive(int(st["pid"]))
        theirs = st["card"]["url"]
    except (TypeError, KeyError, ValueError):
        alive, theirs = False, None
    if not alive or (args.card and theirs != url):
        return url, None
    sock = control.socket_path(cfg.data_dir)
    if not sock.exists():
        raise Usage(f"the node daemon (pid {st['pid']}) holds the card's port {theirs} but has no control socket "
                    f"({sock}): restart it (`systemctl restart branchnode`) so that it flashes the card while "
                    "calls go on, or stop it and run this again (calls on the card's lines drop meanwhile)")
    return theirs, sock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _key_files(args) -> list[str]:
    if args.key:
        return args.key
    env = os.environ.get(KEYS_ENV)
    if env:
        return [p for p in env.split(":") if p]
    return sorted(str(p) for p in DEFAULT_KEY_DIR.glob("*.pub")) if DEFAULT_KEY_DIR.is_dir() else []


def _checked_image(args) -> tuple[bytes, container.Image, str]:
    """The file's bytes and the image, if it is whole and signed by one of the deployment's keys
    (Refused if not), and the key's fingerprint."""
    files = _key_files(args)
    if not files:
        raise Usage(f"no public key to check {args.image}'s signature against: give --key PUBLIC (repeatable), set "
                    f"${KEYS_ENV}, or put the deployment's public key in {DEFAULT_KEY_DIR}/")
    try:
        keys = [sign.load_public(k) for k in files]
    except ImageError as exc:
        raise Usage(str(exc)) from None
    try:
        data = Path(args.image).read_bytes()
    except OSError as exc:
        raise Usage(f"{args.image}: cannot read the image ({exc.strerror or exc}): check the path") from None
    try:
        image = container.read(data, args.image)
        key = sign.verify(image, keys, args.image)
    except ImageError as exc:
        raise Refused(str(exc)) from None
    return data, image, key.fingerprint


# -- progress ------------------------------------------------------------------------------------------
@dataclass
class ProgressBar:
    """Bytes, rate and time left: a bar redrawn in place on a terminal, else a line every 10 %."""

    stream: TextIO
    tty: bool
    width: int = 30
    min_redraw_s: float = 0.1

    def __post_init__(self) -> None:
        self._t0: float | None = None
        self._first = 0
        self._last_draw = 0.0
        self._decile = -1
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._t0 is None:
            self._t0, self._first = now, done
            if done > fl.HEADER_LEN:
                print(f"resuming at byte {done} of {total} (the card kept what arrived before)", file=self.stream)
        pct = 100 * done // total
        elapsed = now - self._t0
        rate = (done - self._first) / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else None
        text = (f"{pct:3d}% {_kib(done)}/{_kib(total)} KiB  {rate / 1024:.1f} KiB/s  "
                f"{_clock(left) if left is not None else '--:--'} left")
        if self.tty:
            if done < total and now - self._last_draw < self.min_redraw_s:
                return
            self._last_draw = now
            fill = self.width * done // total
            self.stream.write(f"\r[{'#' * fill}{'.' * (self.width - fill)}] {text}\x1b[K")
            self.stream.flush()
            self._drawn = True
        elif pct // 10 > self._decile:
            self._decile = pct // 10
            print(f"flash: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _kib(n: int) -> str:
    return f"{n / 1024:.1f}"


def _clock(s: float) -> str:
    s = int(s + 0.5)
    return f"{s // 60}:{s % 60:02d}"
