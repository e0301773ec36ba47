"""Bytes to and from the card over pyserial's ``serial_for_url``.

A real port (``/dev/ttyACM0``), the simulator (``socket://127.0.0.1:PORT``) and tests
(``loop://``) take this same path. pyserial is blocking, so one reader and one writer thread
move bytes and hand them to the asyncio loop; the loop never blocks on the port.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable

import serial

log = logging.getLogger("drivers.linecard.transport")
READ_WAIT_S = 0.004  # at most this much latency added; ~250 wake-ups a second when busy
READ_CHUNK = 8192


class TransportError(ConnectionError):
    """The port could not be opened or was lost; the message names the port and the reason."""


class SerialTransport:
    def __init__(self, url: str, baud: int, loop: asyncio.AbstractEventLoop,
                 on_bytes: Callable[[bytes], None], on_lost: Callable[[str], None]) -> None:
        self.url = url
        self._loop = loop
        self._on_bytes = on_bytes
        self._on_lost = on_lost
        self._out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self.bytes_in = 0
        self.bytes_out = 0
        try:
            # read() returns what arrived within READ_WAIT_S: pyserial's in_waiting is a byte count
            # for real ports but only 0/1 for socket://, so asking it would mean a read per byte
            self._ser = serial.serial_for_url(url, baudrate=baud, timeout=READ_WAIT_S, write_timeout=2)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open card port {url}: {exc}") from exc
        threading.Thread(target=self._reader, daemon=True, name=f"card-rx {url}").start()
        threading.Thread(target=self._writer, daemon=True, name=f"card-tx {url}").start()

    def write(self, data: bytes) -> None:
        if not self._closed.is_set():
            self._out.put(data)

    def close(self) -> None:
        """Stop both threads and close the port, without blocking the loop: pyserial's socket://
        handler sleeps 0.3 s in ``close()`` ("give the server some time"), which on the loop held
        up every line's audio at each reconnect and a Ctrl-C'd nodectl by as long."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._out.put(None)
        threading.Thread(target=self._close_port, daemon=True, name=f"card-close {self.url}").start()

    def _close_port(self) -> None:
        try:
            self._ser.close()
        except Exception:  # closing a port that is already gone
            pass

    def _lost(self, why: str) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._out.put(None)
            try:
                self._loop.call_soon_threadsafe(self._on_lost, why)
            except RuntimeError:  # the loop is closed: nobody to tell
                pass

    def _reader(self) -> None:
        ser = self._ser
        while not self._closed.is_set():
            try:
                data = ser.read(READ_CHUNK)
            except Exception as exc:  # pyserial raises several types for a vanished port
                self._lost(f"read failed: {exc}")
                return
            if data:
                self.bytes_in += len(data)
                try:
                    self._loop.call_soon_threadsafe(self._on_bytes, data)
                except RuntimeError:
                    return

    def _writer(self) -> None:
        while True:
            item = self._out.get()
            if item is None:
                return
            chunks = [item]
            while True:  # coalesce what is queued into one write
                try:
                    more = self._out.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return
                chunks.append(more)
            data = b"".join(chunks)
            try:
                self._ser.write(data)
                self.bytes_out += len(data)
            except Exception as exc:
                self._lost(f"write failed: {exc}")
                return
