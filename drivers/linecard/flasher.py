"""Sending a firmware image to the card's updater over :class:`LineCardLink` (``IMAGE`` frames).

The card takes the image into its inactive slot (docs/firmware-update.md): ``BEGIN`` with the
64-byte header (the card answers the offset to send from: 64 for a new transfer, further on when it
resumes one), ``CHUNK``s of up to ``wire.IMAGE_DATA_MAX`` bytes, each answered with the offset the
card expects next, then ``FINISH`` (the card checks the digest and marks the slot pending).
:meth:`Flasher.reboot` then resets the card into the trial and :meth:`Flasher.wait_confirmed`
waits until the new image has confirmed itself (or was reverted).

Below the audio: the card serves ``IMAGE`` frames after its audio ticks, and the host keeps at
most ``window`` chunks unanswered, so an audio frame the host sends never waits behind more than
``window`` chunk frames (2.7 KB, 30 ms at 921,600 baud with the default 16), and the transfer
takes only what the audio leaves of the link (it is clocked by the card's answers).

Chunks go out go-back-N: the card takes them only in order, so after a loss the host sends again
from the offset the card gives. A chunk that keeps failing (damaged, or no answer) is given up
after ``tries`` sends, with :class:`ChunkFailed`; the card keeps what it has, and the next
transfer of the same image resumes there, as after a cut link or a power cut.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from firmware.card import wire

from .link import CommandError, LineCardLink, LinkDown, LinkListener
from .messages import CardSlots, Hello, ImageAck, SlotInfo, Status
from .transport import SerialTransport

STATUS_S = wire.STATUS_MS / 1000  # the card's STATUS period: how often its line states are news

__all__ = ["CardBusy", "CardSlots", "ChunkFailed", "FlashError", "Flasher", "Hello", "ImageRefused", "LinkDown", "LinkLost",
           "SlotInfo", "TransferResult", "open_card"]

# the image header the card stores in front of the payload (firmware/card/image_header.py, which the
# drivers do not import: the layer table gives them the wire format only); version at bytes 16..19
HEADER_LEN = 64
WINDOW = wire.IMAGE_QUEUE  # chunks unanswered at most: as many as the card queues (firmware/card/image_rx.py)
CHUNK_TRIES = 8  # sends of one chunk before the transfer gives up on it
ANSWER_S = 0.25  # a chunk or op unanswered this long is sent again
RECONNECT_S = 10.0  # how long a transfer waits for a lost link (or a card that rebooted) to come back
FINISH_S_PER_KB = 0.01  # the card checks the digest a kilobyte per pass of its main loop


class FlashError(Exception):
    """A transfer that did not complete; ``str()`` says what happened and what to do.
    ``resumable``: the card kept what arrived and the same command sent again continues."""

    resumable = False


class ImageRefused(FlashError):
    """The card's updater refused the image (``result``: its ``wire.IR_*`` code); the card is untouched
    when BEGIN refused it, and runs its image as before whatever the op."""

    def __init__(self, op: str, ack: ImageAck, advice: str) -> None:
        self.result = ack.result
        self.result_name = ack.result_name
        super().__init__(f"the card refused the image at {op}: {ack.result_name}: {advice}")


class ChunkFailed(FlashError):
    """One chunk kept failing: every try of it arrived damaged or went unanswered."""

    resumable = True

    def __init__(self, offset: int, length: int, tries: int, kept: int, total: int) -> None:
        self.offset, self.tries, self.kept = offset, tries, kept
        super().__init__(
            f"the chunk at image bytes {offset}..{offset + length - 1} failed {tries} times in a row (arrived "
            f"damaged or unanswered): the link is too noisy; check the cable and the port's baud rate. The card "
            f"kept {kept} of {total} bytes: run the same command again to resume from there")


class LinkLost(FlashError):
    """The link went down and did not come back within the wait."""

    resumable = True

    def __init__(self, why: str, kept: int | None = None, total: int | None = None) -> None:
        self.kept = kept
        if kept is None:
            super().__init__(f"{why}: check the cable and the port, then run the command again")
        else:
            super().__init__(f"{why}; the card kept {kept} of {total} bytes: run the same command again to "
                             "resume from there")


class CardBusy(FlashError):
    """The card refused a reboot-if-idle: a line went off-hook or rang after the host's check."""


@dataclass
class TransferResult:
    total: int  # header + payload bytes of the image
    started_at: int  # the offset the card asked for at the first BEGIN (> 64: a resumed transfer)
    data_bytes_sent: int  # chunk bytes put on the link, resends included
    resent_bytes: int  # of those, bytes sent more than once
    resumes: int  # BEGINs again after the link or the card came back in this transfer
    seconds: float  # from the first BEGIN to FINISH answered
    chunk_seconds: float  # from the first chunk sent to the last one answered

    @property
    def resumed(self) -> bool:
        return self.started_at > HEADER_LEN


@dataclass
class _Sent:
    offset: int
    length: int
    fut: asyncio.Future
    at: float


Progress = Callable[[int, int], None]  # (bytes the card has, bytes in all)


class Flasher:
    """Image transfers and the reboot after them, over a link that may carry calls meanwhile."""

    def __init__(self, link: LineCardLink, *, window: int = WINDOW, tries: int = CHUNK_TRIES,
                 answer_s: float = ANSWER_S, reconnect_s: float = RECONNECT_S) -> None:
        if not 1 <= window <= WINDOW:
            raise ValueError(f"window: 1..{WINDOW} chunks (the card queues {WINDOW} image frames), not {window}")
        self.link = link
        self.window = window
        self.tries = tries
        self.answer_s = answer_s
        self.reconnect_s = reconnect_s

    # -- one op, answered --------------------------------------------------------------------------
    async def _ask(self, op: int, timeout: float | None = None, data: bytes = b"") -> ImageAck | CardSlots:
        """Send an op until it is answered (``tries`` times ``timeout`` apart), across a reconnect."""
        timeout = timeout or self.answer_s
        for _ in range(self.tries):
            if not self.link.is_up:
                try:
                    await self._wait_up()
                except LinkDown as exc:
                    raise _NoAnswer(str(exc)) from None
            fut = self.link.send_image(op, 0, data)
            # asyncio.wait, not wait_for: Python 3.11's wait_for returns the answer when it came in
            # the same turn as a cancel (Ctrl-C), and the cancel is lost (gh-86296)
            try:
                await asyncio.wait([fut], timeout=timeout)
            finally:
                if not fut.done():
                    fut.cancel()
            if fut.cancelled() or fut.exception() is not None:
                continue  # unanswered (sent again), or the link dropped (waited for above)
            return fut.result()
        name = {wire.IMG_BEGIN: "BEGIN", wire.IMG_FINISH: "FINISH", wire.IMG_STATUS: "STATUS"}.get(op, op)
        raise _NoAnswer(f"the card on {self.link.url} did not answer IMAGE {name} after {self.tries} tries "
                        f"({self.link.last_error or 'no answer'})")

    async def _wait_up(self) -> None:
        try:
            await self.link.wait_up(self.reconnect_s)
        except TimeoutError:
            raise LinkDown(f"the card on {self.link.url} did not come back within {self.reconnect_s:.0f} s "
                           f"({self.link.last_error or 'no answer'})") from None

    async def slots(self) -> CardSlots:
        """Which slot runs, each slot's state and version, the last revert (``IMAGE STATUS``)."""
        try:
            ans = await self._ask(wire.IMG_STATUS)
        except _NoAnswer as exc:
            raise LinkLost(str(exc)) from None
        assert isinstance(ans, CardSlots)
        return ans

    # -- the transfer --------------------------------------------------------------------------------
    async def transfer(self, image: bytes, progress: Progress | None = None) -> TransferResult:
        """Send ``image`` (header + payload, as the card stores it: no signature trailer) and have the
        card check it; it is then pending (the next boot tries it). Resumes a transfer of the same
        image the card has begun, and carries on across a cut link or a card that restarted (within
        ``reconnect_s``). Raises :class:`FlashError` (a subclass says which)."""
        total = len(image)
        if total <= HEADER_LEN:
            raise ValueError("an image is its 64-byte header and a payload")
        header = image[:HEADER_LEN]
        t0 = time.monotonic()
        try:
            acked = await self._begin(header, total)
        except _NoAnswer as exc:
            raise LinkLost(str(exc)) from None
        res = TransferResult(total, acked, 0, 0, 0, 0.0, 0.0)
        tally = _Tally(high=acked)
        t_chunks = time.monotonic()
        while True:
            try:
                acked = await self._chunks(image, acked, progress, tally)
                t_end = time.monotonic()
                ans = await self._ask(wire.IMG_FINISH, 1.0 + FINISH_S_PER_KB * total / 1024)
            except _Restart as r:  # the link dropped or the card restarted: BEGIN again, it says where
                res.resumes += 1
                acked = r.kept
                try:
                    await self._wait_up()
                    acked = await self._begin(header, total)
                except (LinkDown, _NoAnswer) as exc:
                    raise LinkLost(str(exc), acked, total) from None
                continue
            except _NoAnswer as exc:
                raise LinkLost(str(exc), acked, total) from None
            assert isinstance(ans, ImageAck)
            if ans.ok:
                break
            if ans.result == wire.IR_INCOMPLETE:  # not after every chunk was answered; go on from there
                acked = ans.next_offset
                continue
            if ans.result == wire.IR_NOT_RECEIVING:
                # the answer to the first FINISH was lost and this is the resend's, or the card restarted
                if await self._pending_is(header):
                    break
                res.resumes += 1
                try:
                    acked = await self._begin(header, total)
                except _NoAnswer as exc:
                    raise LinkLost(str(exc), acked, total) from None
                continue
            raise ImageRefused("FINISH", ans, _ADVICE.get(ans.result, "see `nodectl card info`"))
        res.data_bytes_sent, res.resent_bytes = tally.sent, tally.resent
        res.seconds, res.chunk_seconds = time.monotonic() - t0, t_end - t_chunks
        return res

    async def _begin(self, header: bytes, total: int) -> int:
        ans = await self._ask(wire.IMG_BEGIN, data=header)
        assert isinstance(ans, ImageAck)
        if not ans.ok:
            raise ImageRefused("BEGIN", ans, _ADVICE.get(ans.result, "see `nodectl card info`")
                               + " (nothing was written)")
        return ans.next_offset

    async def _pending_is(self, header: bytes) -> bool:
        st = await self.slots()
        ver = f"{header[16]}.{header[17]}.{int.from_bytes(header[18:20], 'little')}"  # major, minor, patch u16
        return any(s.state == "pending" and s.version == ver for s in st.slots)

    async def _chunks(self, image: bytes, acked: int, progress: Progress | None, tally: _Tally) -> int:
        """Chunks from ``acked`` to the end, go-back-N. -> the end (every byte answered)."""
        total = len(image)
        step = wire.IMAGE_DATA_MAX
        link = self.link
        inflight: deque[_Sent] = deque()
        nxt = acked  # the next offset to send
        fails: dict[int, int] = {}  # chunk offset -> failed tries in a row
        if progress:
            progress(acked, total)

        def back_to(offset: int, blame: int | None) -> None:
            nonlocal nxt
            for s in inflight:
                s.fut.cancel()
            inflight.clear()
            nxt = offset
            if blame is not None:
                fails[blame] = fails.get(blame, 0) + 1
                if fails[blame] >= self.tries:
                    raise ChunkFailed(blame, min(step, total - blame), fails[blame], acked, total)

        try:
            while acked < total:
                while len(inflight) < self.window and nxt < total:
                    n = min(step, total - nxt)
                    data = image[nxt:nxt + n]
                    inflight.append(_Sent(nxt, n, link.send_image(wire.IMG_CHUNK, nxt, data), time.monotonic()))
                    tally.sent += n
                    if nxt < tally.high:  # below the furthest byte sent: sent again
                        tally.resent += min(n, tally.high - nxt)
                    nxt += n
                    tally.high = max(tally.high, nxt)
                head = inflight[0]
                left = head.at + self.answer_s - time.monotonic()
                if not head.fut.done():
                    await asyncio.wait([head.fut], timeout=max(left, 0))
                if not head.fut.done():  # unanswered: lost on the way, or its answer was
                    back_to(acked, acked)
                    continue
                inflight.popleft()
                ack = head.fut.result()  # raises LinkDown
                if ack.next_offset > acked and ack.result in (wire.IR_OK, wire.IR_OFFSET, wire.IR_CHUNK_CRC):
                    acked = ack.next_offset
                    if progress:
                        progress(acked, total)
                if ack.ok:
                    fails.pop(head.offset, None)
                    while inflight and inflight[0].offset + inflight[0].length <= acked and inflight[0].fut.done():
                        inflight.popleft()  # answered already (their results only confirm it)
                elif ack.result == wire.IR_CHUNK_CRC:
                    back_to(head.offset if head.offset >= acked else acked, head.offset)
                elif ack.result == wire.IR_OFFSET:
                    back_to(acked, acked)  # the chunk the card wanted was lost before this one
                elif ack.result == wire.IR_NOT_RECEIVING:
                    raise _Restart(acked)  # the card rebooted: BEGIN again
                else:
                    raise ImageRefused("CHUNK", ack, _ADVICE.get(ack.result, "see `nodectl card info`"))
        except LinkDown:
            raise _Restart(acked) from None
        finally:
            for s in inflight:  # answers that no longer matter (given up, refused, link lost)
                s.fut.cancel()
        return acked

    # -- after the transfer ----------------------------------------------------------------------
    def lines_in_use(self) -> list[int]:
        """The lines (1-based) off-hook or ringing, as the card's latest STATUS says."""
        st: Status | None = self.link.last_status
        if st is None:
            return []
        bits = st.offhook_bits | st.ringing_bits
        return [n + 1 for n in range(8) if bits >> n & 1]

    async def wait_idle(self, poll_s: float = STATUS_S, on_wait: Callable[[list[int]], None] | None = None,
                        lines_in_use: Callable[[], list[int]] | None = None) -> None:
        """Until no line is in use: ``lines_in_use()`` (1-based; the node daemon knows which of its
        lines are in a call), by default the lines off-hook or ringing as the card's STATUS (every
        250 ms) says."""
        told: list[int] | None = None
        while True:
            if lines_in_use is not None:
                busy = lines_in_use()
            else:
                busy = self.lines_in_use() if self.link.last_status is not None else None
            if busy == []:
                return
            if busy and busy != told and on_wait:
                on_wait(busy)
                told = busy
            await asyncio.sleep(poll_s)  # polling the card's own 250 ms STATUS: nothing to wait on sooner

    async def reboot(self, timeout: float = 15.0, *, if_idle: bool = False) -> Hello:
        """Reset the card (``CMD RESET``) and wait for the HELLO of its next boot. ``if_idle``: the
        card resets only if no line is off-hook or ringing, else :class:`CardBusy` (nothing reset)."""
        before = self.link.hello.boot_id if self.link.hello else None
        try:
            await self.link.reset_card(if_idle=if_idle)
        except CommandError as exc:
            if exc.status == wire.ST_BUSY:
                raise CardBusy("a line of the card came into use just before the reboot") from None
            raise
        except LinkDown:
            pass  # the card may reset before its ACK gets through: the new HELLO says it did
        deadline = time.monotonic() + timeout
        while True:
            h = self.link.hello
            if self.link.is_up and h is not None and h.boot_id != before:
                return h
            if time.monotonic() > deadline:
                raise LinkLost(f"the card did not come back within {timeout:.0f} s of the reset "
                               f"({self.link.last_error or 'no HELLO'})")
            await asyncio.sleep(0.02)  # the link sets hello from its own receive path; a short poll

    async def wait_confirmed(self, timeout: float = 30.0) -> CardSlots:
        """After the reboot: until the running slot is confirmed (its self-test passed) or the card
        runs another slot (it reverted). -> the slots then; still a trial after ``timeout``: as it is."""
        deadline = time.monotonic() + timeout
        while True:
            st = await self.slots()
            run = st.running_slot
            if run is None or run.state != "trial" or time.monotonic() > deadline:
                return st
            await asyncio.sleep(0.1)  # the card confirms on its own; asked again until it says so


@asynccontextmanager
async def open_card(url: str, *, baud: int = 921600, timeout: float = 5.0,
                    transport: Callable[..., SerialTransport] = SerialTransport) -> AsyncIterator[Flasher]:
    """A link of its own to the card at ``url``, up (HELLO received: ``flasher.link.hello``), and a
    Flasher on it; closed on the way out. Raises :class:`LinkDown` saying why when no card answers."""
    link = LineCardLink(url, LinkListener(), baud=baud, transport=transport)
    try:
        await link.start(timeout)
        yield Flasher(link)
    finally:
        await link.close()


class _Restart(Exception):
    """The link dropped or the card restarted during the chunks: BEGIN again (``kept``: acked so far)."""

    def __init__(self, kept: int) -> None:
        self.kept = kept


class _NoAnswer(Exception):
    """An op went unanswered through every try."""


@dataclass
class _Tally:
    high: int  # the furthest image offset sent so far
    sent: int = 0
    resent: int = 0


_ADVICE = {
    wire.IR_HEADER: "not an image this card reads: build it with `nodectl image build`",
    wire.IR_BOARD: "the image is for another board: use the image built for this card's board",
    wire.IR_DOWNGRADE: "its security counter is lower than the card's: a newer image is needed",
    wire.IR_TOO_BIG: "the image does not fit in the card's slot",
    wire.IR_CHUNK_SIZE: "this host sent a chunk the card cannot take (a bug): report it",
    wire.IR_DIGEST: "what arrived does not match the image's digest: the card dropped it; run again "
                    "(it starts from the first byte)",
    wire.IR_IN_TRIAL: "the card runs a trial image: wait until it confirms or reverts (`nodectl card info`)",
    wire.IR_FLASH: "the card's flash failed an operation: power-cycle the card and run again; if it "
                   "persists the card needs service",
    wire.IR_NO_IMAGE: "this card has no updater or no valid image to run",
    wire.IR_UNKNOWN_OP: "the card's firmware does not take images this way",
}
