# A stand-in for MicroPython's `machine` on the VM: fake pins, ADCs, I2S units and a UART whose
# state the checks set and read. clear() starts a check afresh.
levels = {}  # pin name -> level (inputs set by a check, outputs as the card drove them)
writes = {}  # output pin name -> every value the card wrote, in order
adc_values = {}  # pin name -> read_u16() value
i2s_units = {}  # unit -> I2S
uarts = {}  # id -> UART


class ResetCalled(Exception):
    pass


def clear():
    levels.clear()
    writes.clear()
    adc_values.clear()
    i2s_units.clear()
    uarts.clear()


class Pin:
    IN = 0
    OUT = 1

    def __init__(self, name, mode=-1, value=None):
        self.name = name
        if mode == Pin.OUT and value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return levels.get(self.name, 0)
        levels[self.name] = 1 if v else 0
        writes.setdefault(self.name, []).append(1 if v else 0)


class ADC:
    def __init__(self, pin):
        self.name = pin.name

    def read_u16(self):
        return adc_values.get(self.name, 0)


class I2S:
    RX = 0
    TX = 1
    MONO = 0
    STEREO = 1

    def __init__(self, unit, sck=None, ws=None, sd=None, mode=0, bits=16, format=0, rate=8000, ibuf=0):
        self.unit = unit
        self.config = (sd.name, mode, bits, format, rate)
        self.rx_block = None  # bytes a check wants the next readinto() to deliver
        self.last = None  # the last block written (TX), copied into one buffer: no allocation
        self.blocks = 0
        i2s_units[unit] = self

    def readinto(self, buf):
        if self.rx_block is not None:
            buf[:] = self.rx_block
        return len(buf)

    def write(self, buf):
        if self.last is None:
            self.last = bytearray(len(buf))
        self.last[:] = buf
        self.blocks += 1
        return len(buf)


class UART:
    # what the card writes goes into one preallocated buffer, and reading what a check fed takes
    # nothing from the heap either, so the stand-in allocates nothing on the card's path
    def __init__(self, id, baudrate=115200, rxbuf=256, txbuf=256):
        self.id = id
        self.baudrate = baudrate
        self.rx = bytearray()  # host -> card, put there by a check (feed); read from rpos on
        self.rpos = 0
        self.txmem = bytearray(131072)
        self.n = 0  # bytes in txmem
        self.room = txbuf  # bytes write() still accepts; a check lowers it to fill the UART
        uarts[id] = self

    def feed(self, data):
        if self.rpos:
            self.rx = self.rx[self.rpos:]
            self.rpos = 0
        self.rx.extend(data)

    def any(self):
        return len(self.rx) - self.rpos

    def read(self, n=-1):
        left = len(self.rx) - self.rpos
        if not left:
            return None
        if n < 0 or n > left:
            n = left
        out = bytes(self.rx[self.rpos:self.rpos + n])
        self.rpos += n
        return out

    def readinto(self, buf, nbytes=-1):
        left = len(self.rx) - self.rpos
        if not left:
            return None
        n = left
        if 0 <= nbytes < n:
            n = nbytes
        if len(buf) < n:
            n = len(buf)
        rx = self.rx
        p = self.rpos
        for i in range(n):
            buf[i] = rx[p + i]
        self.rpos = p + n
        return n

    def write(self, buf):
        n = min(len(buf), self.room, len(self.txmem) - self.n)
        if n <= 0:
            return 0
        if n == len(buf):
            self.txmem[self.n:self.n + n] = buf
        else:
            self.txmem[self.n:self.n + n] = memoryview(buf)[:n]
        self.n += n
        self.room -= n
        return n

    def take(self):
        # what the card sent since the last take(), emptying the UART (its room is given back)
        out = bytes(self.txmem[:self.n])
        self.room += self.n
        self.n = 0
        return out


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.fed = 0

    def feed(self):
        self.fed += 1


def reset():
    raise ResetCalled()


def unique_id():
    return b"\xb1\x0c\x42\x01"
