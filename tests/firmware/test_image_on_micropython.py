"""A built image runs on the real MicroPython VM: every card module and the packed micropython-lib
``logging`` load from the image's compiled .mpy files (not from the sources the other VM tests use),
and the card's log ring works with them."""

from __future__ import annotations

import pytest

from firmware.image import build, payload
from tests.firmware.mpy_vm import MicroPythonVM, VMUnavailable

ROOT = "/image"


@pytest.fixture(scope="module")
def vm_with_image():
    entries = payload.parse(build.build(1).payload)
    try:
        vm = MicroPythonVM()  # a VM of its own: nothing of the card imported from the sources yet
    except VMUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    files = tuple((e.name, e.data) for e in entries if e.name.endswith(".mpy"))
    res = vm.call("vm_image", "install", ROOT, files)
    assert res.passed, res.message
    yield vm, [e.name for e in entries]
    vm.close()


def test_every_module_loads_from_the_image(vm_with_image):
    vm, names = vm_with_image
    modules = tuple(n.removesuffix(".mpy").removesuffix("/__init__").replace("/", ".").removeprefix("lib.")
                    for n in names if n.endswith(".mpy"))
    assert "card.app" in modules and "logging" in modules
    res = vm.call("vm_image", "check_modules_load", ROOT, modules)
    assert res.passed, res.message + res.output


def test_log_ring_runs_from_the_image(vm_with_image):
    vm, _ = vm_with_image
    res = vm.call("vm_image", "check_log_ring", ROOT)
    assert res.passed, res.message + res.output
