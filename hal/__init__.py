"""The hardware abstraction the node programs against.

``hal.open(url)`` returns a :class:`Board` whose ``lines`` are :class:`Line` objects. The URL
picks the backend; nothing above this package knows whether the card is real or simulated::

    async with hal.open("socket://127.0.0.1:7000") as board:
        line = board.lines[0]
        async for event in line.events():
            ...
"""

from __future__ import annotations

from drivers.dsp.receive import RxFrame

from . import events
from .audio import AudioPort
from .line import Board, Identity, Line, LinkStatus
from .linecard import BoardConfig, LineCardBoard

_SERIAL_SCHEMES = ("socket://", "loop://", "rfc2217://", "spy://", "/dev/", "COM")


def open(url: str, config: BoardConfig | None = None) -> Board:  # noqa: A001 - mirrors hal.open(url)
    """The board behind ``url``: a serial line card (``/dev/ttyACM0``, ``socket://host:port``)."""
    if url.startswith(_SERIAL_SCHEMES):
        return LineCardBoard(url, config)
    raise ValueError(f"no HAL backend for {url!r}: use a serial port (/dev/ttyACM0) or socket://HOST:PORT")


__all__ = ["AudioPort", "Board", "BoardConfig", "Identity", "Line", "LineCardBoard", "LinkStatus", "RxFrame", "events", "open"]
