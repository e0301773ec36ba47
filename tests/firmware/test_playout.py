"""The card's playout buffer on CPython: the same checks as on the MicroPython VM
(``tests/firmware/mpy/vm_playout.py``), imported with the card package under its on-card name."""

from __future__ import annotations

import pytest

from tests.firmware.mpy_vm import checks, on_cpython


@pytest.fixture(scope="module")
def vm_playout():
    with on_cpython("vm_playout") as mod:
        yield mod


@pytest.mark.parametrize("check", checks("vm_playout"))
def test_playout_on_cpython(vm_playout, check):
    getattr(vm_playout, check)()
