# The card's SPI NOR flash chip (a Winbond W25Q16JV: 2 MiB, 4 KiB sector erase, 256-byte page
# program) through the JEDEC commands every SPI NOR part has; it implements flash.py's interface
# for the updater. The chip programs any number of bytes, but a page program that runs past the
# end of its 256-byte page wraps round to the page's start, so writes are split at page edges.
try:
    from micropython import const
except ImportError:  # CPython (the simulator)
    def const(x):
        return x

from .flash import Flash, FlashError, check_block, check_write

CMD_WREN = const(0x06)  # write enable: needed before every program or erase
CMD_RDSR = const(0x05)  # read status register 1: bit 0 BUSY, bit 1 WEL
CMD_READ = const(0x03)  # read data from a 24-bit address
CMD_PP = const(0x02)  # page program (1..256 bytes within one page)
CMD_SE = const(0x20)  # sector erase (4 KiB)
SR_BUSY = const(0x01)
BUSY_POLLS = const(100000)  # a sector erase takes at most 400 ms (datasheet); polls are ~10 us each
_WREN = b"\x06"
_RDSR = b"\x05"


class SpiNor(Flash):
    def __init__(self, spi, cs, size, block_size, page_size, write_size=1):
        self.spi = spi  # machine.SPI, mode 0
        self.cs = cs  # machine.Pin, output, idle high
        self.size = size
        self.block_size = block_size
        self.write_size = write_size
        self.page_size = page_size
        self._cmd = bytearray(4)
        self._sr = bytearray(1)

    def _command(self, op, addr):
        # chip select low, then the command and its 24-bit address (the caller raises cs again)
        c = self._cmd
        c[0] = op
        c[1] = (addr >> 16) & 0xFF
        c[2] = (addr >> 8) & 0xFF
        c[3] = addr & 0xFF
        self.cs.value(0)
        self.spi.write(c)

    def _write_enable(self):
        self.cs.value(0)
        self.spi.write(_WREN)
        self.cs.value(1)

    def _wait(self, what, addr):
        for _ in range(BUSY_POLLS):
            self.cs.value(0)
            self.spi.write(_RDSR)
            self.spi.readinto(self._sr)
            self.cs.value(1)
            if not self._sr[0] & SR_BUSY:
                return
        raise FlashError("flash %s at 0x%x did not finish (the chip stays busy)" % (what, addr))

    def read(self, addr, n_or_buf):
        buf = bytearray(n_or_buf) if isinstance(n_or_buf, int) else n_or_buf
        n = len(buf)
        if addr < 0 or addr + n > self.size:
            raise FlashError("flash read at 0x%x of %d bytes is outside the chip (%d bytes)" % (addr, n, self.size))
        self._command(CMD_READ, addr)
        self.spi.readinto(buf)
        self.cs.value(1)
        return bytes(buf) if isinstance(n_or_buf, int) else buf

    def erase(self, block):
        check_block(self, block)
        addr = block * self.block_size
        self._write_enable()
        self._command(CMD_SE, addr)
        self.cs.value(1)
        self._wait("erase", addr)

    def write(self, addr, data):
        n = len(data)
        check_write(self, addr, n)
        mv = memoryview(data)
        page = self.page_size
        i = 0
        while i < n:
            k = page - (addr + i) % page  # to the end of this page
            if k > n - i:
                k = n - i
            self._write_enable()
            self._command(CMD_PP, addr + i)
            self.spi.write(mv[i:i + k])
            self.cs.value(1)
            self._wait("write", addr + i)
            i += k
