# The card's SPI NOR driver (card/spi_nor.py) on the VM, against a recording SPI bus: the JEDEC
# command sequences it sends, a write split at the 256-byte page edge, reads into a buffer.
from card.flash import FlashError
from card.spi_nor import SpiNor
from mpytest import eq


class Bus:
    # machine.SPI and the chip-select pin in one: records each transaction (cs low .. high)
    def __init__(self, busy_polls=1):
        self.tx = []
        self.cur = None
        self.busy = busy_polls  # RDSR answers BUSY this many times after each program or erase
        self.left = 0
        self.mem = bytes(range(256)) * 4

    def value(self, v=None):
        if v == 0:
            self.cur = bytearray()
        elif v == 1:
            self.tx.append(bytes(self.cur))
            if self.cur[:1] in (b"\x02", b"\x20"):
                self.left = self.busy
            self.cur = None

    def write(self, buf):
        self.cur.extend(buf)

    def readinto(self, buf):
        if self.cur[:1] == b"\x05":
            buf[0] = 1 if self.left else 0
            if self.left:
                self.left -= 1
        else:
            a = (self.cur[1] << 16) | (self.cur[2] << 8) | self.cur[3]
            for i in range(len(buf)):
                buf[i] = self.mem[a + i]


def chip(bus):
    return SpiNor(bus, bus, 1024, 512, 256)


def test_a_write_is_split_at_the_page_edge_each_part_with_write_enable_and_a_busy_wait():
    bus = Bus()
    chip(bus).write(200, bytes(range(100)))
    eq(bus.tx, [b"\x06", b"\x02\x00\x00\xc8" + bytes(range(56)), b"\x05", b"\x05",
                b"\x06", b"\x02\x00\x01\x00" + bytes(range(56, 100)), b"\x05", b"\x05"],
       "WREN, PP to the page's end, RDSR until not busy; then the rest in the next page")


def test_erase_is_a_sector_erase_at_the_blocks_address():
    bus = Bus(busy_polls=0)
    chip(bus).erase(1)
    eq(bus.tx, [b"\x06", b"\x20\x00\x02\x00", b"\x05"], "WREN, SE 0x200, RDSR")


def test_read_fills_the_buffer_given_or_returns_bytes():
    bus = Bus()
    f = chip(bus)
    buf = bytearray(4)
    eq(f.read(258, buf) is buf, True, "the same buffer")
    eq(bytes(buf), bytes([2, 3, 4, 5]), "bytes at 258")
    eq(f.read(0, 3), b"\x00\x01\x02", "a new bytes object")
    eq(bus.tx[0], b"\x03\x00\x01\x02", "READ 0x102")


def test_out_of_range_and_misaligned_operations_are_refused_before_the_bus():
    bus = Bus()
    f = chip(bus)
    for op in (lambda: f.read(1020, 8), lambda: f.write(1020, b"12345678"), lambda: f.erase(2)):
        try:
            op()
            raise AssertionError("not refused")
        except FlashError:
            pass
    eq(bus.tx, [], "nothing sent")
