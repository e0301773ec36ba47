"""The card's code on the real MicroPython VM: its WebAssembly port (npm, pinned in package.json)
under Node.js, started once per test session.

The VM gets the card's modules as the package ``card`` (``/lib/card/``) and the MicroPython-side
test code of ``tests/firmware/mpy/`` (the ``machine`` stand-in, a settable clock, the checks) in
``/lib``. :meth:`MicroPythonVM.call` runs one check function there and returns what happened, so
each check is a pytest test of its own with MicroPython's traceback as its failure message.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import queue
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from firmware.image import mplib

ROOT = Path(__file__).resolve().parents[2]
CARD = ROOT / "firmware" / "card"
SIM_FLASH = ROOT / "simulator" / "flash.py"
MPY_SIDE = Path(__file__).resolve().parent / "mpy"
RUNNER = Path(__file__).resolve().parent / "mpy_vm.mjs"
PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"
START_S = 30  # loading the VM takes well under a second; this is for a machine under load
CALL_S = 60  # one check: a few hundred simulated frames at most


class VMUnavailable(RuntimeError):
    """Node.js or the npm package is missing: ``make setup`` installs both."""


@dataclass
class Outcome:
    passed: bool
    message: str  # MicroPython's traceback when it failed
    output: str  # what the check printed


def load_on_cpython(name: str):
    """The MicroPython-side module ``tests/firmware/mpy/NAME.py``, loaded under CPython (not put in
    ``sys.modules``): for checks that run on both."""
    spec = importlib.util.spec_from_file_location(f"_cpython_{name}", MPY_SIDE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def on_cpython(module: str):
    """The checks of ``tests/firmware/mpy/MODULE.py`` on CPython, importing what they import on the VM:
    the card package under its on-card name ``card`` and the VM-side ``mpytest`` helpers (both put
    back as they were afterwards). -> the loaded module."""
    import firmware.card

    saved = {k: sys.modules.get(k) for k in ("card", "mpytest")}
    sys.modules["card"] = firmware.card  # the VM mounts firmware/card as `card`
    sys.modules["mpytest"] = load_on_cpython("mpytest")
    try:
        yield load_on_cpython(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def checks(module: str) -> list[str]:
    """The ``test_*`` functions of a MicroPython-side module (read by ``ast``, not imported)."""
    tree = ast.parse((MPY_SIDE / f"{module}.py").read_text())
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]


class MicroPythonVM:
    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise VMUnavailable("node (Node.js) is not installed: run `make setup`")
        if not PACKAGE.exists():
            raise VMUnavailable(f"the MicroPython VM is not installed ({PACKAGE.relative_to(ROOT)} is missing): "
                                "run `make setup` (it runs `npm ci`)")
        self._node = node
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._start()

    def _start(self) -> None:
        self._proc = subprocess.Popen([self._node, str(RUNNER), str(PACKAGE)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self._lines = queue.Queue()
        threading.Thread(target=self._reader, args=(self._proc, self._lines), daemon=True).start()
        files = {f"/lib/card/{p.name}": p.read_text() for p in sorted(CARD.glob("*.py"))}
        files |= {f"/lib/{p.name}": p.read_text() for p in sorted(MPY_SIDE.glob("*.py"))}
        # the pinned micropython-lib modules the image packs, found before the VM's own frozen ones
        files |= {f"/lib/{m}": src.decode() for r in mplib.resolve() for m, src in r.sources.items()}
        files["/lib/sim_flash.py"] = SIM_FLASH.read_text()  # the simulator's NOR model runs on both
        self._request({"op": "files", "files": files}, START_S)
        setup = "import sys\nsys.path.remove('/lib')\nsys.path.insert(0, '/lib')\nimport fake_time\nfake_time.install()\n"
        res = self._request({"op": "exec", "code": setup}, START_S)
        if not res.get("ok"):
            raise VMUnavailable(f"the MicroPython VM did not start: {res.get('error')}")

    @staticmethod
    def _reader(proc: subprocess.Popen, lines: queue.Queue) -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def _request(self, req: dict, timeout: float) -> dict:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        proc.stdin.write(json.dumps(req) + "\n")
        proc.stdin.flush()
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.close()  # a hung VM is useless: the next call starts a fresh one
            raise TimeoutError(f"the MicroPython VM did not answer within {timeout:.0f} s") from None
        if line is None:
            err = proc.stderr.read() if proc.stderr else ""
            self._proc = None
            raise RuntimeError(f"the MicroPython VM (node) exited: {err.strip()}")
        return json.loads(line)

    def call(self, module: str, func: str, *args) -> Outcome:
        """Run ``module.func(*args)`` on the VM; args are Python literals (ints, bytes, str, tuples)."""
        if self._proc is None:
            self._start()
        code = (
            "_vm_result = None\n"
            "try:\n"
            f"    import {module} as _m\n"
            f"    _m.{func}(*{args!r})\n"
            "    _vm_result = 'ok'\n"
            "except BaseException as _e:\n"
            "    import io, sys\n"
            "    _s = io.StringIO()\n"
            "    sys.print_exception(_e, _s)\n"
            "    _vm_result = _s.getvalue()\n"
        )
        res = self._request({"op": "exec", "code": code}, CALL_S)
        if not res.get("ok"):
            return Outcome(False, f"the VM failed to run the check: {res.get('error')}", res.get("output", ""))
        result = res.get("result")
        return Outcome(result == "ok", "" if result == "ok" else str(result), res.get("output", ""))

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
