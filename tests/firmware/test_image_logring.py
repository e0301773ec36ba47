"""The card's log ring on CPython, as the simulator runs it (with CPython's own ``logging``): the
same checks as on the MicroPython VM (``tests/firmware/mpy/vm_logring.py``), but the one that
proves the VM uses the pinned micropython-logging."""

from __future__ import annotations

import sys

import pytest

import firmware.card
from tests.firmware.mpy_vm import checks
from tests.firmware.test_playout import _load

CPYTHON = [f for f in checks("vm_logring") if f != "test_pinned_logging_is_the_one_used"]


@pytest.fixture(scope="module")
def vm_logring():
    saved = {k: sys.modules.get(k) for k in ("card", "mpytest")}
    sys.modules["card"] = firmware.card  # the VM mounts firmware/card as `card`
    sys.modules["mpytest"] = _load("mpytest")
    try:
        yield _load("vm_logring")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


@pytest.mark.parametrize("check", CPYTHON)
def test_log_ring_on_cpython(vm_logring, check):
    getattr(vm_logring, check)()
