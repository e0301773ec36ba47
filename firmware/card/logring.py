# The card's log ring: its last events (boot, link up/down, resets, update steps) kept in RAM in
# slots allocated once, for the host to read after a fault. It is a handler of micropython-lib's
# `logging` (packed into the image), so card code logs as usual: log, ring = logring.attach().
# Logging an event formats its message (an allocation), so it is for events, never per frame.
import logging

try:
    from micropython import const
except ImportError:  # CPython (the simulator)
    def const(x):
        return x

SLOTS = const(32)  # events kept
TEXT = const(48)  # bytes of each message kept (longer ones are cut)


class LogRing(logging.Handler):
    def __init__(self, slots=SLOTS, text=TEXT):
        super().__init__()
        self.slots = slots
        self.text = text
        self._buf = bytearray(slots * text)
        self._len = bytearray(slots)
        self._level = bytearray(slots)
        self.count = 0  # events ever logged; the ring holds the last min(count, slots)

    def emit(self, record):
        msg = record.msg % record.args if record.args else record.msg
        raw = str(msg).encode()
        n = min(len(raw), self.text)
        while n < len(raw) and n and raw[n] & 0xC0 == 0x80:
            n -= 1  # never cut a UTF-8 character in two
        i = self.count % self.slots
        at = i * self.text
        self._buf[at:at + n] = raw[:n]
        self._len[i] = n
        self._level[i] = min(record.levelno, 255)
        self.count += 1

    def entries(self):
        # -> [(event number, level, message)], oldest first
        out = []
        first = self.count - min(self.count, self.slots)
        for k in range(first, self.count):
            i = k % self.slots
            at = i * self.text
            out.append((k, self._level[i], bytes(self._buf[at:at + self._len[i]]).decode()))
        return out


def attach(name="card", level=logging.INFO, slots=SLOTS, text=TEXT):
    # -> (the card's logger, its ring)
    # one ring per logger: a card made again (a restart in the simulator) replaces its old ring;
    # give each card in one process its own name (loggers live as long as the process)
    ring = LogRing(slots, text)
    log = logging.getLogger(name)
    for old in [h for h in (log.handlers or ()) if isinstance(h, LogRing)]:
        log.handlers.remove(old)
    log.setLevel(level)
    log.addHandler(ring)
    return log, ring
