"""The card's code run on the real MicroPython VM (tests/firmware/mpy_vm.py).

Each check is a function in ``tests/firmware/mpy/vm_*.py``, run on the VM with fake pins, a fake
UART and a settable clock (``tests/firmware/mpy/machine.py``, ``fake_time.py``); a failure shows
MicroPython's traceback.
"""

from __future__ import annotations

import pytest

from tests.firmware.mpy_vm import MicroPythonVM, VMUnavailable, checks
from tests.firmware.test_wire import COBS_CASES, GOLDEN, unhex

MODULES = ["vm_wire", "vm_playout", "vm_link", "vm_line", "vm_card", "vm_logring", "vm_updater", "vm_selftest", "vm_spi_nor"]
CHECKS = [(m, f) for m in MODULES for f in checks(m) if f not in ("test_golden", "test_cobs")]


@pytest.fixture(scope="session")
def mpy():
    try:
        vm = MicroPythonVM()
    except VMUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield vm
    vm.close()


def run(vm: MicroPythonVM, module: str, func: str, *args) -> None:
    res = vm.call(module, func, *args)
    assert res.passed, f"{module}.{func} on MicroPython:\n{res.message}{res.output}"


@pytest.mark.parametrize("g", GOLDEN, ids=lambda g: g.name)
def test_golden_frame_on_micropython(mpy, g):
    run(mpy, "vm_wire", "test_golden", g.name, g.ftype, g.channel, g.seq, g.layout, g.fields,
        unhex(g.body), unhex(g.wire))


def test_cobs_edge_cases_on_micropython(mpy):
    run(mpy, "vm_wire", "test_cobs", COBS_CASES)


@pytest.mark.parametrize("module,func", CHECKS, ids=[f"{m}.{f}" for m, f in CHECKS])
def test_on_micropython(mpy, module, func):
    run(mpy, module, func)


def test_a_failing_check_fails(mpy):
    """The runner is real: a check that breaks on the VM is reported, with its traceback."""
    res = mpy.call("vm_wire", "test_golden", "broken", 0x02, 0xFF, 7, "ACK", (2,), b"\x02", b"\x00")
    assert not res.passed and "AssertionError" in res.message and "broken" in res.message
    res = mpy.call("vm_wire", "no_such_check")
    assert not res.passed and "AttributeError" in res.message
