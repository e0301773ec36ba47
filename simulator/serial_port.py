"""The simulated card's UART, exposed as a TCP port that stands for its USB serial port.

Bytes move at the configured baud rate (10 bits a byte, 8N1) scaled by the clock's speed, and
can be damaged on the way: random bit errors (a bit-error rate per direction) and dropped bytes.
Like a real UART, a full transmit buffer refuses more bytes (the firmware then drops them) and a
full receive buffer loses what arrives (counted as ``rx_overflow``).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass

from .clock import SimClock

BUF = 4096  # until the firmware configures the UART with its own rxbuf/txbuf


@dataclass
class Faults:
    ber_up: float = 0.0  # card -> host
    ber_down: float = 0.0  # host -> card
    drop_up: float = 0.0  # probability a byte is lost
    drop_down: float = 0.0


@dataclass
class PortCounters:
    bytes_up: int = 0
    bytes_down: int = 0
    bits_flipped_up: int = 0
    bits_flipped_down: int = 0
    bytes_dropped_up: int = 0
    bytes_dropped_down: int = 0
    tx_refused: int = 0
    rx_overflow: int = 0
    connections: int = 0
    longest_stall_ms: float = 0.0  # the longest the sending side went without running
    most_queued: int = 0  # the most bytes waiting to go to the host


def damage(data: bytearray, ber: float, drop: float, rng: random.Random) -> tuple[bytearray, int, int]:
    """Flip bits at rate ``ber`` and drop bytes at rate ``drop``; returns (data, flips, drops)."""
    flips = drops = 0
    if ber > 0 and data:
        nbits = len(data) * 8
        pos = 0
        while True:  # geometric gaps between errors: exact and cheap at low rates
            pos += int(rng.expovariate(ber)) if ber < 1 else 0
            if pos >= nbits:
                break
            data[pos >> 3] ^= 1 << (pos & 7)
            flips += 1
            pos += 1
    if drop > 0 and data:
        keep = bytearray()
        for b in data:
            if rng.random() < drop:
                drops += 1
            else:
                keep.append(b)
        data = keep
    return data, flips, drops


class SimUart:
    """The firmware's side (``machine.UART``) and the TCP side of one serial port."""

    def __init__(self, clock: SimClock, baud: int, host: str = "127.0.0.1", port: int = 0, seed: int = 1) -> None:
        self.clock = clock
        self.baud = baud
        self.faults = Faults()
        self.counters = PortCounters()
        self._rng = random.Random(seed)
        self.rxbuf = self.txbuf = BUF
        self._rx = bytearray()  # host -> firmware
        self._tx = bytearray()  # firmware -> host
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._stop = threading.Event()
        self._srv = socket.create_server((host, port))
        self.address = self._srv.getsockname()
        threading.Thread(target=self._accept_loop, daemon=True, name="uart-accept").start()
        threading.Thread(target=self._pump_up, daemon=True, name="uart-up").start()

    @property
    def url(self) -> str:
        return f"socket://{self.address[0]}:{self.address[1]}"

    # -- machine.UART --------------------------------------------------------------------
    def configure(self, baudrate: int, rxbuf: int, txbuf: int) -> SimUart:
        self.baud, self.rxbuf, self.txbuf = baudrate, rxbuf, txbuf
        return self

    def any(self) -> int:
        return len(self._rx)

    def read(self, n: int = -1) -> bytes | None:
        with self._lock:
            if not self._rx:
                return None
            n = len(self._rx) if n is None or n < 0 else n
            out = bytes(self._rx[:n])
            del self._rx[:n]
            return out

    def readinto(self, buf, nbytes: int | None = None) -> int | None:
        # as MicroPython's: at most nbytes (len(buf) by default) into buf[0:], None when empty
        with self._lock:
            if not self._rx:
                return None
            n = min(len(buf) if nbytes is None else nbytes, len(buf), len(self._rx))
            buf[:n] = self._rx[:n]
            del self._rx[:n]
            return n

    def write(self, data) -> int:
        with self._lock:
            room = self.txbuf - len(self._tx)
            if room <= 0:
                self.counters.tx_refused += len(data)
                return 0
            chunk = bytes(data[:room])
            self._tx.extend(chunk)
            return len(chunk)

    # -- the host side ---------------------------------------------------------------------
    def drop_connection(self) -> None:
        """Like unplugging USB: the host sees its port close."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        with self._lock:
            self._rx.clear()
            self._tx.clear()

    def close(self) -> None:
        self._stop.set()
        self.drop_connection()
        self._srv.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.drop_connection()  # one host at a time, as with a serial port
            with self._lock:
                self._tx.clear()
            self._conn = conn
            self.counters.connections += 1
            threading.Thread(target=self._pump_down, args=(conn,), daemon=True, name="uart-down").start()

    def _rate(self) -> float:
        return self.baud / 10.0 * self.clock.speed  # bytes per real second

    def _pump_down(self, conn: socket.socket) -> None:
        credit, last = 0.0, time.monotonic()
        pending = bytearray()
        while not self._stop.is_set() and self._conn is conn:
            if not pending:
                try:
                    data = conn.recv(4096)
                except OSError:
                    break
                if not data:
                    break
                f = self.faults
                data, flips, drops = damage(bytearray(data), f.ber_down, f.drop_down, self._rng)
                self.counters.bits_flipped_down += flips
                self.counters.bytes_dropped_down += drops
                pending.extend(data)
                credit, last = 0.0, time.monotonic()  # the line was idle: no burst credit
            now = time.monotonic()
            credit = min(credit + (now - last) * self._rate(), BUF)
            last = now
            n = min(int(credit), len(pending))
            if n:
                with self._lock:
                    room = self.rxbuf - len(self._rx)
                    take = min(n, max(room, 0))
                    self._rx.extend(pending[:take])
                    if take < n:
                        self.counters.rx_overflow += n - take
                del pending[:n]
                credit -= n
                self.counters.bytes_down += n
            if pending:
                time.sleep(0.001)
        if self._conn is conn:
            self._conn = None

    def _pump_up(self) -> None:
        credit, last = 0.0, time.monotonic()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.monotonic()
            self.counters.longest_stall_ms = max(self.counters.longest_stall_ms, round((now - last) * 1000, 1))
            self.counters.most_queued = max(self.counters.most_queued, len(self._tx))
            # a UART sends continuously at its rate: credit built up while this thread slept
            # (up to 20 ms of it) goes out now, so a busy process still gets the full baud rate
            credit = min(credit + (now - last) * self._rate(), self._rate() * 0.02)
            last = now
            n = int(credit)
            if n <= 0:
                continue
            with self._lock:
                if not self._tx:
                    credit = 0.0
                    continue
                chunk = bytearray(self._tx[:n])
                del self._tx[:n]
            credit -= len(chunk)
            self.counters.bytes_up += len(chunk)
            f = self.faults
            chunk, flips, drops = damage(chunk, f.ber_up, f.drop_up, self._rng)
            self.counters.bits_flipped_up += flips
            self.counters.bytes_dropped_up += drops
            conn = self._conn
            if conn is None:
                continue  # nobody is listening: bytes go nowhere, as on an unplugged port
            try:
                conn.sendall(chunk)
            except OSError:
                if self._conn is conn:
                    self._conn = None
