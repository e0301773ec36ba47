"""The interfaces the node programs against: a ``Line`` and a ``Board`` of lines."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from drivers.dsp.receive import RxFrame
from drivers.linecard.flasher import Flasher

from .audio import AudioPort
from .events import LineEvent


class Line(abc.ABC):
    """One analog line. Events come from :meth:`events`; actions are coroutines."""

    number: int  # 1-based
    audio: AudioPort

    @abc.abstractmethod
    def events(self) -> AsyncIterator[LineEvent]: ...

    @abc.abstractmethod
    async def next_event(self, timeout: float | None = None) -> LineEvent | None: ...

    @abc.abstractmethod
    async def answer(self) -> None: ...

    @abc.abstractmethod
    async def hangup(self) -> None: ...

    @abc.abstractmethod
    async def dial(self, digits: str, mode: str = "dtmf") -> None: ...

    @abc.abstractmethod
    async def flash(self, ms: int = 100) -> None: ...

    @abc.abstractmethod
    async def set_gains(self, rx_db: float, tx_db: float) -> None: ...

    @property
    @abc.abstractmethod
    def offhook(self) -> bool: ...

    @abc.abstractmethod
    def set_rx_tap(self, tap: Callable[[RxFrame], None] | None) -> None:
        """Call ``tap`` with every 20 ms slot heard off-hook, after the echo canceller, in order
        (concealed slots included), with the digits that ended in it: where forwarding takes the
        line's audio from. Called on the event loop: it must not block."""


@dataclass(frozen=True)
class Identity:
    board_id: str
    firmware: str
    channels: int
    law: str
    boot_id: int


@dataclass(frozen=True)
class LinkStatus:
    """The health of the host's link to the card, as ``nodectl status`` shows it."""

    connected: bool
    bad_frames: int  # frames dropped as damaged, all kinds
    reconnects: int
    card_resets: int
    retries: int  # commands sent again
    commands_failed: int  # commands never acknowledged (each took the link down)
    audio_copies: int  # copies of each audio frame on the link


class Board(abc.ABC):
    """The card as a whole: its lines, identity, LEDs and health."""

    lines: list[Line]

    @abc.abstractmethod
    async def start(self) -> Board: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def identity(self) -> Identity | None: ...

    @property
    @abc.abstractmethod
    def connected(self) -> bool: ...

    @abc.abstractmethod
    async def set_led(self, line: int, on: bool) -> None: ...

    @abc.abstractmethod
    async def stats(self) -> dict: ...

    @abc.abstractmethod
    def link_status(self) -> LinkStatus:
        """The link's counters now (no round trip to the card)."""

    def firmware_updater(self) -> Flasher:
        """The card's firmware updater over this board's own link: image transfers, the card's
        slots, the reboot into a new image (``drivers.linecard.flasher.Flasher``), while the lines
        go on carrying calls. After the reboot the board reconnects on its own (the card's HELLO
        reports its new version in :attr:`identity`)."""
        raise NotImplementedError(f"{type(self).__name__} has no firmware updater")

    async def __aenter__(self) -> Board:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()
