# The card's flash as the updater sees it: one small interface that a real board's driver (SPI or
# internal NOR) and the simulator's model (simulator/flash.py) both implement.
#
# NOR rules the updater is written for:
#   - the chip is `size` bytes, in erase blocks of `block_size` bytes (a power of two);
#   - erase(block) sets a whole block to ERASED (0xFF) bytes; it is the only way back to 0xFF;
#   - write(addr, data) programs `data` at `addr`; addr and len(data) are multiples of
#     `write_size` (the program granularity) and every byte written must be erased since the
#     block's last erase (writing twice without an erase is an error, as on NOR);
#   - read(addr, n) returns n bytes; read(addr, buf) fills a bytearray/memoryview instead (no
#     allocation: what the updater uses on its per-chunk path);
#   - a power cut during an erase or a write can leave that block or that range partly done;
#     nothing else is touched. The updater never relies on more than that.
# A driver that fails an operation raises FlashError; the updater reports it and keeps its
# metadata consistent.
try:
    from micropython import const
except ImportError:  # CPython (the simulator)
    def const(x):
        return x

ERASED = const(0xFF)


class FlashError(Exception):
    pass


class Flash:
    # the interface; a driver sets the three sizes and implements the three operations
    block_size = 0
    write_size = 0
    size = 0

    def read(self, addr, n_or_buf):
        raise FlashError("read not implemented")

    def erase(self, block):
        raise FlashError("erase not implemented")

    def write(self, addr, data):
        raise FlashError("write not implemented")


def check_write(flash, addr, n):
    # the alignment and range rules every implementation enforces (raises FlashError)
    if addr % flash.write_size or n % flash.write_size:
        raise FlashError("flash write at 0x%x of %d bytes is not aligned to %d" % (addr, n, flash.write_size))
    if addr < 0 or addr + n > flash.size:
        raise FlashError("flash write at 0x%x of %d bytes is outside the chip (%d bytes)" % (addr, n, flash.size))


def check_block(flash, block):
    if block < 0 or block >= flash.size // flash.block_size:
        raise FlashError("flash block %d does not exist (the chip has %d)" % (block, flash.size // flash.block_size))
