"""``nodectl flash IMAGE`` and ``nodectl card info``: a line card's firmware, in the field.

``flash`` checks the image on this host first (whole, signed by a deployment key), then against
the card (its board, its security counter, what it runs) before it sends a byte, sends it while
calls go on, waits until no line is in use, reboots the card into the new image and waits until
that image has confirmed itself. It talks to the card over the card's own port, so the node daemon,
which holds that port while it runs, must be stopped first (the command says so when it finds it
running). Exit status: the EXIT_* below, documented in docs/firmware-update.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from drivers.linecard import flasher as fl
from firmware.image import ImageError, container, sign

from .config import ConfigError, card_problem, load
from .daemon import read_status

EXIT_OK = 0  # the card runs the image (flashed and confirmed, or already ran it); --verify-only: it may be flashed
EXIT_REFUSED = 1  # the image is not for this card (damaged, not signed by a deployment key, other board, lower counter)
EXIT_USAGE = 2  # could not be carried out: bad option, unreadable file, no key, the daemon holds the port
EXIT_LINK = 3  # the card could not be reached, or the transfer stopped: run the same command again to resume
EXIT_NOT_TAKEN = 4  # the card refused the image after receiving it, or reverted it after its trial
EXIT_NOT_CONFIRMED = 5  # the new image runs on trial but did not confirm itself in time
EXIT_INTERRUPTED = 130

KEYS_ENV = "BRANCHNODE_IMAGE_KEYS"
DEFAULT_KEY_DIR = Path("/etc/branchnode/image-keys")  # every *.pub in it (old and new key while rotating)


class Refused(Exception):
    """The image may not go to this card; nothing was sent."""


class Usage(Exception):
    """The command cannot be carried out as given."""


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    f = sub.add_parser("flash", parents=[common], help="flash a signed firmware image onto the line card",
                       description="Check IMAGE (whole, signed by a deployment key, for the card's board, security "
                                   "counter not lower than the card's), send it to the card's inactive slot while "
                                   "calls go on, wait until no line is in use, reboot the card into it and wait "
                                   "until it confirms itself. An interrupted transfer resumes when run again. "
                                   "The node daemon must not be running on the card (stop it first). Exit status: "
                                   "0 done, 1 image refused, 2 usage, 3 link/transfer stopped (run again to "
                                   "resume), 4 card refused or reverted it, 5 not confirmed in time.")
    f.add_argument("image", help="the signed image file (`nodectl image build` + `nodectl image sign`)")
    _card_options(f)
    f.add_argument("--key", action="append", default=[],
                   help=f"a deployment public key (repeatable); default ${KEYS_ENV} (files separated by ':') "
                        f"or every *.pub in {DEFAULT_KEY_DIR}")
    f.add_argument("--force", action="store_true", help="flash even if the card already runs this version")
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
                                    "reverted / empty / receiving) and version, and why the card last reverted. "
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
    try:
        return asyncio.run(_flash(args, transport or fl.SerialTransport, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        print("\nnodectl: flash interrupted: what the card received is kept; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def run_card(args, transport=None) -> int:
    try:
        return asyncio.run(_card_info(args, transport or fl.SerialTransport, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _fail(err: TextIO, code: int, message: str) -> int:
    print(f"nodectl: {message}", file=err)
    return code


async def _flash(args, transport, out: TextIO, err: TextIO) -> int:
    try:
        url = _card_url(args)
        image, key = _checked_image(args)
    except Usage as exc:
        return _fail(err, EXIT_USAGE, str(exc))
    except Refused as exc:
        return _fail(err, EXIT_REFUSED, f"{exc} (nothing was sent)")
    h = image.header
    print(f"{args.image}: board {h.board_id} version {h.version_text} security counter {h.security_counter}, "
          f"signed by key {key}", file=out)
    try:
        async with fl.open_card(url, baud=args.baud, timeout=args.wait, transport=transport) as flasher:
            return await _flash_card(args, flasher, image, out, err)
    except fl.LinkDown as exc:
        return _fail(err, EXIT_LINK, str(exc))


async def _flash_card(args, flasher: fl.Flasher, image: container.Image, out: TextIO, err: TextIO) -> int:
    hello = flasher.link.hello
    h = image.header
    try:
        slots = await flasher.slots()
        running = slots.running_slot
        if h.board_id != hello.board_id:
            raise Refused(f"{args.image} is built for board {h.board_id}, the card is a {hello.board_id}: "
                          f"use the image built for {hello.board_id}")
        if h.security_counter < slots.security_counter:
            raise Refused(f"{args.image} has security counter {h.security_counter}, lower than the card's "
                          f"{slots.security_counter} (it runs {hello.firmware}): the card would refuse it as a "
                          "downgrade; use a newer image")
        if running is None:
            return _fail(err, EXIT_NOT_TAKEN, "the card runs no valid image its updater knows of: it cannot take "
                                              "an image over the link; it needs service")
        if running.state == "trial":
            return _fail(err, EXIT_LINK, f"the card runs {running.version} on trial: wait until it confirms or "
                                         "reverts (`nodectl card info`), then run this again")
        same = running.version == h.version_text and running.security_counter == h.security_counter
        if same and not args.force:
            print(f"card on {args.card or 'the configured port'} already runs {h.version_text} (security counter "
                  f"{h.security_counter}): nothing to do (--force to flash it again)", file=out)
            return EXIT_OK
        if args.verify_only:
            print(f"verified: the card ({hello.board_id}, runs {hello.firmware}, security counter "
                  f"{slots.security_counter}) would take {h.version_text}; nothing sent (--verify-only)", file=out)
            return EXIT_OK
    except Refused as exc:
        return _fail(err, EXIT_REFUSED, f"{exc} (nothing was sent; the card is untouched)")
    except fl.LinkLost as exc:
        return _fail(err, EXIT_LINK, str(exc))
    note = " (a downgrade: the security counter allows it)" if h.version < _version(hello.firmware) else ""
    print(f"card {hello.board_id} runs {hello.firmware} from slot {slots.running}; sending {h.version_text}{note}",
          file=out)
    bar = ProgressBar(err, err.isatty())
    try:
        res = await flasher.transfer(image.signed_part, bar)
    except fl.ImageRefused as exc:
        bar.close()
        code = EXIT_REFUSED if "BEGIN" in str(exc) else EXIT_NOT_TAKEN
        return _fail(err, code, str(exc))
    except fl.FlashError as exc:
        bar.close()
        return _fail(err, EXIT_LINK, str(exc))
    bar.close()
    resumed = f", resumed at byte {res.started_at}" if res.resumed else ""
    print(f"sent {res.total} bytes in {res.seconds:.1f} s ({res.resent_bytes} sent again{resumed}); the card "
          "checked the image: pending", file=out)
    if args.no_reboot:
        print("not rebooted (--no-reboot): the card tries the new image at its next restart", file=out)
        return EXIT_OK
    if not args.now:
        await flasher.wait_idle(on_wait=lambda busy: print(
            f"waiting for line(s) {', '.join(map(str, busy))} to be free before rebooting the card "
            "(--now to reboot at once)", file=out, flush=True))
    try:
        new = await flasher.reboot()
        st = await flasher.wait_confirmed(args.confirm_timeout)
    except fl.LinkLost as exc:
        return _fail(err, EXIT_LINK, f"{exc} (the new image is pending: the card tries it when it restarts)")
    run = st.running_slot
    if run is not None and run.version == h.version_text and run.state == "confirmed":
        print(f"card runs {h.version_text} from slot {st.running}, confirmed (its self-test passed); slot "
              f"{1 - st.running} keeps {st.slots[1 - st.running].version}", file=out)
        return EXIT_OK
    if run is not None and run.state == "trial":
        return _fail(err, EXIT_NOT_CONFIRMED, f"the card boots {new.firmware} on trial but it did not confirm "
                                              f"itself within {args.confirm_timeout:g} s: check `nodectl card info`; "
                                              "it reverts on its own if it never does")
    why = st.last_revert_reason or "unknown reason"
    return _fail(err, EXIT_NOT_TAKEN, f"the card reverted to {run.version if run else '?'}: the trial of "
                                      f"{h.version_text} ended with '{why}' (`nodectl card info` shows it)")


async def _card_info(args, transport, out: TextIO, err: TextIO) -> int:
    try:
        url = _card_url(args)
    except Usage as exc:
        return _fail(err, EXIT_USAGE, str(exc))
    try:
        async with fl.open_card(url, baud=args.baud, timeout=args.wait, transport=transport) as flasher:
            hello = flasher.link.hello
            st = await flasher.slots()
    except (fl.LinkDown, fl.LinkLost) as exc:
        return _fail(err, EXIT_LINK, str(exc))
    info = card_info(url, hello, st)
    print(json.dumps(info, indent=2) if args.json else render_info(info), file=out)
    return EXIT_OK


def card_info(url: str, hello: fl.Hello, st: fl.CardSlots) -> dict:
    return {"card": url, "board": hello.board_id, "firmware": hello.firmware, "lines": hello.channels,
            "running_slot": st.running, "active_slot": st.active, "trial_boots_left": st.trial_boots_left,
            "last_revert": None if st.last_revert_reason is None else
            {"slot": st.reverted_slot, "reason": st.last_revert_reason},
            "slots": [{"slot": s.index, "state": s.state, "version": s.version, "security_counter": s.security_counter}
                      for s in st.slots]}


def render_info(info: dict) -> str:
    run = info["running_slot"]
    lines = [f"card      {info['card']}", f"board     {info['board']}",
             f"firmware  {info['firmware']} (slot {run if run is not None else '-'}), {info['lines']} lines", ""]
    rows = []
    for s in info["slots"]:
        notes = [n for n, on in (("running", s["slot"] == run), ("active", s["slot"] == info["active_slot"])) if on]
        if s["state"] == "trial":
            notes.append(f"{info['trial_boots_left']} boot(s) left to confirm")
        rows.append([s["slot"], s["state"], s["version"] or "-", s["security_counter"] if s["version"] else "-",
                     ", ".join(notes)])
    lines.append(_table(["slot", "state", "version", "security", ""], rows))
    rev = info["last_revert"]
    lines.append("")
    lines.append("last revert  " + ("none" if rev is None else f"slot {rev['slot']}: {rev['reason']}"))
    return "\n".join(lines)


def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(out)


# -- checks on this host -------------------------------------------------------------------------------
def _card_url(args) -> str:
    """The card's URL (--card, else the configuration's), refused while the node daemon holds it."""
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
    if cfg is not None:
        st = read_status(cfg.data_dir)
        try:
            alive = time.time() - float(st["updated"]) < 5 and _pid_alive(int(st["pid"]))
            theirs = st["card"]["url"]
        except (TypeError, KeyError, ValueError):
            alive, theirs = False, None
        if alive and theirs == url:
            raise Usage(f"the node daemon (pid {st['pid']}) holds the card's port {url}: stop it first "
                        "(`systemctl stop branchnode`, or Ctrl-C on `nodectl run`), flash, then start it again; "
                        "calls on the card's lines are dropped meanwhile")
    return url


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


def _checked_image(args) -> tuple[container.Image, str]:
    """The image if it is whole and signed by one of the deployment's keys (Refused if not)."""
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
    return image, key.fingerprint


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return ()


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
