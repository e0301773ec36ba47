# The PCM highway to the line-interface chips (docs/card-hardware.md): one 8 kHz frame carries one
# G.711 octet per time slot, line n in slot n. The card moves 20 ms blocks: 160 frames of SLOTS
# octets, read from the receive unit and written to the transmit unit once per tick, and each
# line takes its 160 octets out of the block (and puts them in) through its slot offset.
try:
    from micropython import const
except ImportError:  # CPython (the simulator)
    def const(x):
        return x

SLOTS = const(8)
# I2S sends each 32-bit word most significant byte first and the buffer holds words little-endian:
# time slot s is byte SLOT_BYTE[s] of each 8-byte frame (left word = slots 0-3, right = 4-7).
SLOT_BYTE = (3, 2, 1, 0, 7, 6, 5, 4)


class Highway:
    def __init__(self, rx, tx, samples, idle):
        self.rx = rx  # machine.I2S, mode RX: what the lines send (DR)
        self.tx = tx  # machine.I2S, mode TX: what the card plays to them (DX)
        self.samples = samples
        self.rx_block = bytearray(samples * SLOTS)
        self.tx_block = bytearray(samples * SLOTS)
        self.idle = idle
        for i in range(len(self.tx_block)):
            self.tx_block[i] = idle

    def receive(self):
        # one block from the lines: call once per tick, before the lines read their slots
        self.rx.readinto(self.rx_block)

    def transmit(self):
        # the block the lines filled this tick: call once per tick, after they wrote their slots
        self.tx.write(self.tx_block)

    def read_slot(self, slot, dst, at, table):
        # line `slot`'s 160 octets into dst[at:], through a gain table (or as they are)
        src = self.rx_block
        j = SLOT_BYTE[slot]
        if table is None:
            for i in range(at, at + self.samples):
                dst[i] = src[j]
                j += SLOTS
        else:
            for i in range(at, at + self.samples):
                dst[i] = table[src[j]]
                j += SLOTS

    def slot_driven(self, slot):
        # whether the last block received holds anything but 0x00 in this slot: an undriven slot
        # (no chip answering in it) reads 0x00 through the DR line's pull-down
        src = self.rx_block
        for j in range(SLOT_BYTE[slot], len(src), SLOTS):
            if src[j]:
                return True
        return False

    def write_slot(self, slot, src, table):
        # 160 octets for line `slot` (src None: idle) into the next block, through a gain table
        dst = self.tx_block
        j = SLOT_BYTE[slot]
        n = self.samples
        if src is None:
            idle = self.idle
            for _ in range(n):
                dst[j] = idle
                j += SLOTS
        elif table is None:
            for i in range(n):
                dst[j] = src[i]
                j += SLOTS
        else:
            for i in range(n):
                dst[j] = table[src[i]]
                j += SLOTS
