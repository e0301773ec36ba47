"""The card's SPI NOR chip as its SPI bus sees it: ``machine.SPI`` and the ``FLASH_CS`` pin of a
Winbond W25Q16JV (2 MiB, 4 KiB sector erase, 256-byte page program), over the NOR model of
``simulator/flash.py``.

The firmware's driver (``firmware/card/spi_nor.py``) speaks the chip's JEDEC commands; this
decodes each transaction (chip select low ... high) as the chip would: ``WREN`` sets the write
enable latch, ``SE``/``PP`` need it and clear it, ``READ`` streams bytes from an address, ``RDSR``
reports the status (never busy: operations finish at once here). A program that runs past its
256-byte page, or an erase or program without ``WREN``, would do something else on the chip
than the driver meant, so they are errors here (a bug in the driver), not silent.
"""

from __future__ import annotations

from collections.abc import Callable

from .flash import NorFlash, PowerCut

WREN, RDSR, READ, PP, SE = 0x06, 0x05, 0x03, 0x02, 0x20
# the W25Q16JV's geometry, as firmware/card/board.py has it
SIZE = 2 * 1024 * 1024
BLOCK = 4096
PAGE = 256
WRITE = 1  # the chip programs single bytes


class SpiProtocolError(RuntimeError):
    """The firmware drove the chip in a way the driver never should (a firmware bug)."""


def w25q16jv(path: str | None = None) -> NorFlash:
    """The chip's NOR array (a file per card when ``path`` is given)."""
    return NorFlash(SIZE, BLOCK, WRITE, path)


class SimSpiNor:
    """``machine.SPI(1)`` with the chip on it, and the chip-select pin (:meth:`cs`)."""

    def __init__(self, nor: NorFlash, before_program: Callable[[int, int], None] | None = None,
                 on_cut: Callable[[PowerCut], None] | None = None) -> None:
        self.nor = nor
        self.before_program = before_program  # (addr, n): the simulator's power-cut hook
        self.on_cut = on_cut  # called with the model's PowerCut (it raises what the card feels)
        self.reset()

    def reset(self) -> None:
        """Power-up state: deselected, write enable latch clear."""
        self._selected = False
        self._cmd = bytearray()
        self._read_at = 0
        self._wel = False

    # -- the chip-select pin (machine.Pin "FLASH_CS") ----------------------------------------
    def value(self, v=None):
        if v is None:
            return 0 if self._selected else 1
        if not v and not self._selected:
            self._selected = True
            self._cmd = bytearray()
            self._read_at = 0
        elif v and self._selected:
            self._selected = False
            self._execute()
        return None

    # -- machine.SPI --------------------------------------------------------------------------
    def write(self, buf) -> None:
        if self._selected:
            self._cmd += bytes(buf)

    def readinto(self, buf) -> None:
        n = len(buf)
        if not self._selected or not self._cmd:
            buf[:] = b"\xff" * n
            return
        op = self._cmd[0]
        if op == READ and len(self._cmd) >= 4:
            addr = int.from_bytes(self._cmd[1:4], "big") + self._read_at
            self.nor.read(addr, buf)
            self._read_at += n
        elif op == RDSR:
            buf[:] = bytes([0x02 if self._wel else 0x00]) * n  # BUSY clear; WEL as latched
        else:
            buf[:] = b"\xff" * n

    def _execute(self) -> None:
        cmd = self._cmd
        if not cmd:
            return
        op = cmd[0]
        if op == WREN:
            self._wel = True
            return
        if op not in (SE, PP):
            return
        if not self._wel:
            raise SpiProtocolError(f"flash command 0x{op:02x} without write enable: the chip ignores it")
        self._wel = False
        if len(cmd) < 4:
            raise SpiProtocolError(f"flash command 0x{op:02x} without its 24-bit address")
        addr = int.from_bytes(cmd[1:4], "big")
        if op == SE:
            if addr % BLOCK:
                raise SpiProtocolError(f"sector erase at 0x{addr:x}: the chip erases the sector it falls in")
            self._do(self.nor.erase, addr // BLOCK)
            return
        data = bytes(cmd[4:])
        if addr % PAGE + len(data) > PAGE:
            raise SpiProtocolError(f"page program at 0x{addr:x} of {len(data)} bytes runs past its {PAGE}-byte "
                                   "page: the chip would wrap round to the page's start")
        if self.before_program is not None:
            self.before_program(addr, len(data))
        self._do(self.nor.write, addr, data)

    def _do(self, op, *args) -> None:
        try:
            op(*args)
        except PowerCut as cut:
            if self.on_cut is None:
                raise
            self.on_cut(cut)
