"""Flashing a line card, against the card: what ``nodectl flash`` does once the image has passed the
checks on this host (whole, signed by a deployment key).

One function, :func:`flash_card`, whoever holds the card's link: ``nodectl flash`` on a link of its
own when no node daemon runs, or the daemon on its board's link while the lines carry calls (the
request comes over the daemon's control socket, ``node_agent/control.py``). Both print the same
messages and end with the same exit status: the EXIT_* below, documented in
docs/firmware-update.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TextIO

from drivers.linecard import flasher as fl
from firmware.image import container

EXIT_OK = 0  # the card runs the image (flashed and confirmed, or already ran it); --verify-only: it may be flashed
EXIT_REFUSED = 1  # the image is not for this card (damaged, not signed by a deployment key, other board, lower counter)
EXIT_USAGE = 2  # could not be carried out: bad option, unreadable file, no key, the daemon could not be asked
EXIT_LINK = 3  # the card could not be reached, or the transfer stopped: run the same command again to resume
EXIT_NOT_TAKEN = 4  # the card refused the image after receiving it, or reverted it after its trial
EXIT_NOT_CONFIRMED = 5  # the new image runs on trial but did not confirm itself in time
EXIT_INTERRUPTED = 130

INTERRUPTED = "flash interrupted: what the card received is kept; run the same command again to resume"


class Refused(Exception):
    """The image may not go to this card; nothing was sent."""


@dataclass(frozen=True)
class FlashRequest:
    """What ``nodectl flash`` was asked to do (its options), as it travels to the daemon too."""

    image_name: str  # the file's name as given, for the messages
    card_name: str  # the card as given (--card), or "the configured port"
    force: bool = False
    verify_only: bool = False
    now: bool = False
    no_reboot: bool = False
    confirm_timeout: float = 60.0


class Progress(Protocol):
    def __call__(self, done: int, total: int) -> None: ...
    def close(self) -> None: ...


def fail(err: TextIO, code: int, message: str) -> int:
    print(f"nodectl: {message}", file=err)
    return code


async def flash_card(req: FlashRequest, flasher: fl.Flasher, image: container.Image, out: TextIO, err: TextIO,
                     progress: Progress, lines_in_use: Callable[[], list[int]] | None = None) -> int:
    """Check ``image`` against the card, send it, wait until no line is in use (``lines_in_use``:
    the lines in a call, 1-based; default: off-hook or ringing as the card's STATUS says), reboot
    the card into it and wait for its confirm. -> an EXIT_* status; messages to ``out``/``err``."""
    h = image.header
    try:
        slots = await flasher.slots()
        hello = flasher.link.hello
        if h.board_id != hello.board_id:
            raise Refused(f"{req.image_name} is built for board {h.board_id}, the card is a {hello.board_id}: "
                          f"use the image built for {hello.board_id}")
        if slots.running_slot is not None and slots.running_slot.state == "trial":
            # a rerun after a cut during the last update's reboot meets its trial: it ends on its own
            trial = slots.running_slot
            print(f"the card runs {trial.version} on trial (from the last update): waiting up to "
                  f"{req.confirm_timeout:g} s for it to confirm or revert", file=out, flush=True)
            slots = await flasher.wait_confirmed(req.confirm_timeout)
            run = slots.running_slot
            if run is not None and run.state == "trial":
                return fail(err, EXIT_NOT_CONFIRMED, f"the card still runs {run.version} on trial after "
                                                     f"{req.confirm_timeout:g} s: nothing was sent; check `nodectl "
                                                     "card info`; it reverts on its own if it never confirms")
            ended = ("confirmed" if run is not None and run.version == trial.version and run.state == "confirmed"
                     else f"the card reverted to {run.version if run else '?'} ('{slots.last_revert_reason}')")
            print(f"the trial of {trial.version} ended: {ended}", file=out, flush=True)
        hello = flasher.link.hello  # read after any wait: a reverted card has rebooted
        running = slots.running_slot
        if h.security_counter < slots.security_counter:
            raise Refused(f"{req.image_name} has security counter {h.security_counter}, lower than the card's "
                          f"{slots.security_counter} (it runs {hello.firmware}): the card would refuse it as a "
                          "downgrade; use a newer image")
        if running is None:
            return fail(err, EXIT_NOT_TAKEN, "the card runs no valid image its updater knows of: it cannot take "
                                             "an image over the link; it needs service")
        digest = h.sha256.hex()
        # the same build: the digest the card holds in the running slot's header is this payload's
        same = running.digest is not None and digest.startswith(running.digest)
        if same and not req.force:
            print(f"card on {req.card_name} already runs {h.version_text} (security counter {h.security_counter}, "
                  f"payload digest {running.digest}): nothing to do (--force to flash it again)", file=out)
            return EXIT_OK
        if req.verify_only:
            print(f"verified: the card ({hello.board_id}, runs {hello.firmware}, security counter "
                  f"{slots.security_counter}) would take {h.version_text}; nothing sent (--verify-only)", file=out)
            return EXIT_OK
    except Refused as exc:
        return fail(err, EXIT_REFUSED, f"{exc} (nothing was sent; the card is untouched)")
    except fl.LinkLost as exc:
        return fail(err, EXIT_LINK, str(exc))
    note = " (a downgrade: the security counter allows it)" if h.version < _version(hello.firmware) else ""
    if not same and running.version == h.version_text:
        note = f" (another build of {h.version_text}: payload digest {digest[:16]}, the card's {running.digest})"
    print(f"card {hello.board_id} runs {hello.firmware} from slot {slots.running}; sending {h.version_text}{note}",
          file=out)
    try:
        res = await flasher.transfer(image.signed_part, progress)
    except fl.ImageRefused as exc:
        progress.close()
        code = EXIT_REFUSED if "BEGIN" in str(exc) else EXIT_NOT_TAKEN
        return fail(err, code, str(exc))
    except fl.FlashError as exc:
        progress.close()
        return fail(err, EXIT_LINK, str(exc))
    finally:
        progress.close()
    resumed = f", resumed at byte {res.started_at}" if res.resumed else ""
    print(f"sent {res.total} bytes in {res.seconds:.1f} s ({res.resent_bytes} sent again{resumed}); the card "
          "checked the image: pending", file=out)
    if req.no_reboot:
        print("not rebooted (--no-reboot): the card tries the new image at its next restart", file=out)
        return EXIT_OK
    try:
        new = await (flasher.reboot() if req.now else _reboot_when_idle(flasher, lines_in_use, out))
        st = await flasher.wait_confirmed(req.confirm_timeout)
    except fl.LinkLost as exc:
        return fail(err, EXIT_LINK, f"{exc} (the new image is pending: the card tries it when it restarts)")
    run = st.running_slot
    if run is not None and run.version == h.version_text and run.state == "confirmed":
        print(f"card runs {h.version_text} from slot {st.running}, confirmed (its self-test passed); slot "
              f"{1 - st.running} keeps {st.slots[1 - st.running].version}", file=out)
        return EXIT_OK
    if run is not None and run.state == "trial":
        return fail(err, EXIT_NOT_CONFIRMED, f"the card boots {new.firmware} on trial but it did not confirm "
                                             f"itself within {req.confirm_timeout:g} s: check `nodectl card info`; "
                                             "it reverts on its own if it never does")
    why = st.last_revert_reason or "unknown reason"
    return fail(err, EXIT_NOT_TAKEN, f"the card reverted to {run.version if run else '?'}: the trial of "
                                     f"{h.version_text} ended with '{why}' (`nodectl card info` shows it)")


async def _reboot_when_idle(flasher: fl.Flasher, lines_in_use: Callable[[], list[int]] | None,
                            out: TextIO) -> fl.Hello:
    """Reboot once no line is in use. The card itself refuses the reset if a line came into use
    after our check (a ring in between): then wait again, so no call is cut."""
    def waiting(busy: list[int]) -> None:
        print(f"waiting for line(s) {', '.join(map(str, busy))} to be free before rebooting the card "
              "(--now to reboot at once)", file=out, flush=True)
    while True:
        await flasher.wait_idle(lines_in_use=lines_in_use, on_wait=waiting)
        try:
            return await flasher.reboot(if_idle=True)
        except fl.CardBusy as exc:
            print(f"{exc}: not rebooted; waiting again", file=out, flush=True)
            await asyncio.sleep(fl.STATUS_S)  # until the card's next STATUS shows that line in use


async def card_info(url: str, flasher: fl.Flasher) -> dict:
    """What ``nodectl card info`` shows, asked of the card (raises ``fl.LinkLost``)."""
    st = await flasher.slots()
    hello = flasher.link.hello
    return {"card": url, "board": hello.board_id, "firmware": hello.firmware, "lines": hello.channels,
            "running_slot": st.running, "active_slot": st.active, "trial_boots_left": st.trial_boots_left,
            "last_revert": None if st.last_revert_reason is None else
            {"slot": st.reverted_slot, "reason": st.last_revert_reason},
            "slots": [{"slot": s.index, "state": s.state, "version": s.version, "security_counter": s.security_counter,
                       "digest": s.digest} for s in st.slots]}


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
                     s.get("digest") or "-", ", ".join(notes)])
    lines.append(_table(["slot", "state", "version", "security", "digest", ""], rows))
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


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return ()
