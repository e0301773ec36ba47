"""A NOR flash chip for the simulated card, and for the updater's tests on the MicroPython VM.

It implements the card's flash interface (``firmware/card/flash.py``) with NOR's rules: erase
blocks, a write granularity, and a write to a location not erased since its last write is an
error (MCUboot's simulator holds its flash to the same rule). It keeps a file per card when
given a path, so the card's flash survives a power cycle of the simulator.

Power can be cut at any chosen operation: set ``cut_at`` to the number of the erase or write
(counting both, from 1, as ``ops`` does) and that operation does part of its work and raises
:class:`PowerCut`: a write programs only the first half of its write units, an erase sets only
the first half of its block to 0xFF (the rest keeps what it held and is still unwritable).
Nothing else changes, as on a real chip. The counters ``erases``, ``writes`` and ``reads``
let a test count the operations of a whole update, then rerun it cutting at each one.

One model for both runtimes: this file is written in the subset MicroPython runs (no type
hints, no CPython-only modules), so the MicroPython-side tests load the same model
(``tests/firmware/mpy_vm.py`` installs it as ``sim_flash``).
"""

import struct

try:
    from firmware.card.flash import ERASED, Flash, FlashError, check_block, check_write
except ImportError:  # on the MicroPython VM the card's modules are the package ``card``
    from card.flash import ERASED, Flash, FlashError, check_block, check_write

_FILE_HEADER = "<8sIII"  # magic, size, block size, write size; then the bytes, then the flags
_FILE_MAGIC = b"BNNOR\x00\x00\x01"


class PowerCut(Exception):
    """Power was cut during flash operation number ``op`` (``kind`` "erase" or "write")."""

    def __init__(self, op, kind, addr):
        super().__init__(f"power cut during flash operation {op} ({kind} at 0x{addr:x})")
        self.op = op
        self.kind = kind
        self.addr = addr


class NorFlash(Flash):
    def __init__(self, size, block_size, write_size, path=None):
        if size % block_size or block_size % write_size:
            raise ValueError(f"flash size {size}, block {block_size}, write size {write_size}: "
                             "each must divide the one before")
        self.size = size
        self.block_size = block_size
        self.write_size = write_size
        self.data = bytearray(b"\xff" * size)
        self.written = bytearray(size // write_size)  # 1: programmed since its block's last erase
        self.erases = 0
        self.writes = 0
        self.reads = 0
        self.cut_at = None
        self._file = None
        self._flags_at = struct.calcsize(_FILE_HEADER) + size
        if path is not None:
            self._open(path)

    @property
    def ops(self):
        return self.erases + self.writes

    # -- the interface -----------------------------------------------------------------------
    def read(self, addr, n_or_buf):
        n = n_or_buf if isinstance(n_or_buf, int) else len(n_or_buf)
        if addr < 0 or addr + n > self.size:
            raise FlashError(f"flash read at 0x{addr:x} of {n} bytes is outside the chip ({self.size} bytes)")
        self.reads += 1
        if isinstance(n_or_buf, int):
            return bytes(self.data[addr:addr + n])
        n_or_buf[:] = memoryview(self.data)[addr:addr + n]
        return n_or_buf

    def erase(self, block):
        check_block(self, block)
        self.erases += 1
        start = block * self.block_size
        n = self.block_size
        cut = self._cut_now()
        if cut:
            n //= 2
        self.data[start:start + n] = bytes([ERASED]) * n  # slices, not loops: a 2 MiB chip's updates stay quick
        w = self.write_size
        self.written[start // w:(start + n) // w] = bytes(n // w)
        self._persist(start, n)
        if cut:
            raise PowerCut(self.ops, "erase", start)

    def write(self, addr, data):
        n = len(data)
        check_write(self, addr, n)
        w = self.write_size
        units = self.written[addr // w:(addr + n) // w]
        if units and max(units):
            u = addr // w + next(i for i in range(len(units)) if units[i])
            raise FlashError(f"flash write at 0x{addr:x}: 0x{u * w:x} was written and not erased since (NOR)")
        self.writes += 1
        cut = self._cut_now()
        if cut:
            n = (n // w) // 2 * w
        self.data[addr:addr + n] = memoryview(data)[:n]
        self.written[addr // w:(addr + n) // w] = b"\x01" * (n // w)
        self._persist(addr, n)
        if cut:
            raise PowerCut(self.ops, "write", addr)

    # -- the model's own ------------------------------------------------------------------------
    def copy(self):
        """The same chip contents in a new model (no file, counters at zero): a test's fresh start."""
        f = NorFlash(self.size, self.block_size, self.write_size)
        f.data[:] = self.data
        f.written[:] = self.written
        return f

    def _cut_now(self):
        if self.cut_at is not None and self.ops == self.cut_at:
            self.cut_at = None  # the card is off: the next operation is after the reboot
            return True
        return False

    def _open(self, path):
        hdr = struct.pack(_FILE_HEADER, _FILE_MAGIC, self.size, self.block_size, self.write_size)
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
            f.write(hdr)
            f.write(self.data)
            f.write(self.written)
            f.flush()
            self._file = f
            return
        if f.read(len(hdr)) != hdr:
            f.close()
            raise ValueError(f"{path} is not a flash file of this geometry ({self.size} bytes, blocks of "
                             f"{self.block_size}, writes of {self.write_size}): delete it to start the card "
                             "with an erased flash")
        f.readinto(self.data)
        f.readinto(self.written)
        self._file = f

    def _persist(self, addr, n):
        f = self._file
        if f is None or n == 0:
            return
        f.seek(struct.calcsize(_FILE_HEADER) + addr)
        f.write(memoryview(self.data)[addr:addr + n])
        w = self.write_size
        f.seek(self._flags_at + addr // w)
        f.write(memoryview(self.written)[addr // w:(addr + n + w - 1) // w])
        f.flush()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
