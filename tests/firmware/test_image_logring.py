"""The card's log ring on CPython, as the simulator runs it (with CPython's own ``logging``): the
same checks as on the MicroPython VM (``tests/firmware/mpy/vm_logring.py``), but the one that
proves the VM uses the pinned micropython-logging."""

from __future__ import annotations

import pytest

from tests.firmware.mpy_vm import checks, on_cpython

CPYTHON = [f for f in checks("vm_logring") if f != "test_pinned_logging_is_the_one_used"]


@pytest.fixture(scope="module")
def vm_logring():
    with on_cpython("vm_logring") as mod:
        yield mod


@pytest.mark.parametrize("check", CPYTHON)
def test_log_ring_on_cpython(vm_logring, check):
    getattr(vm_logring, check)()
