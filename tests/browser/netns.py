"""A network namespace of the test process's own, with only loopback in it, for the browser tests.

Why: a browser on the host's network sends packets to wherever it likes (DNS, mDNS, its vendor);
in a namespace of its own only 127.0.0.1 exists. The hub, the fake node's media (aiortc's UDP
sockets) and the browser must share one loopback, so they all live in the namespace: the browser
is started from inside it (its processes inherit it) and each browser test's thread enters it
while the test runs (the sockets it makes are made there; a socket keeps the namespace it was
made in). ``setns`` moves only the calling thread; the rest of the process stays where it was.
Needs root (CAP_SYS_ADMIN), which tests here have.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)} (the browser tests need root for a network namespace)")


class NetNamespace:
    def __init__(self) -> None:
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            self._ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            # a child of this thread is in the new namespace: bring its loopback up
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10)
        finally:
            _check(_libc.setns(self._home, CLONE_NEWNET), "setns back home")

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """This thread in the namespace for the block (what it starts and opens stays there)."""
        _check(_libc.setns(self._ns, CLONE_NEWNET), "setns into the test namespace")
        try:
            yield
        finally:
            _check(_libc.setns(self._home, CLONE_NEWNET), "setns back home")

    def addresses(self) -> list[str]:
        """The interfaces seen from inside (only ``lo``), to show where the browser is."""
        with self.inside():
            out = subprocess.run(["ip", "-o", "addr"], check=True, capture_output=True, text=True, timeout=10)
        return [line.split()[1] + " " + line.split()[3] for line in out.stdout.splitlines()]

    def close(self) -> None:
        os.close(self._ns)
        os.close(self._home)
