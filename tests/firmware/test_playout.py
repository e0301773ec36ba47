"""The card's playout buffer on CPython: the same checks as on the MicroPython VM
(``tests/firmware/mpy/vm_playout.py``), imported with the card package under its on-card name."""

from __future__ import annotations

import importlib.util
import sys

import pytest

import firmware.card
from tests.firmware.mpy_vm import MPY_SIDE, checks


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_cpython_{name}", MPY_SIDE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def vm_playout():
    saved = {k: sys.modules.get(k) for k in ("card", "mpytest")}
    sys.modules["card"] = firmware.card  # the VM mounts firmware/card as `card`
    sys.modules["mpytest"] = _load("mpytest")
    try:
        yield _load("vm_playout")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


@pytest.mark.parametrize("check", checks("vm_playout"))
def test_playout_on_cpython(vm_playout, check):
    getattr(vm_playout, check)()
