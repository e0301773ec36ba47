"""The layering in ARCHITECTURE.md: imports point down; nothing in the product imports the simulator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ["firmware", "drivers", "hal", "node_agent", "central_link"]
# package -> top-level packages of ours it may import
ALLOWED = {
    "firmware": {"firmware"},
    "drivers": {"drivers", "firmware"},
    "hal": {"hal", "drivers", "firmware"},
    "node_agent": {"node_agent", "hal", "drivers", "central_link", "firmware"},
    "central_link": {"central_link"},
    "simulator": {"simulator", "firmware", "hal", "drivers"},
}
OURS = set(ALLOWED) | {"tests", "bench", "scripts"}


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package):
    for path in (ROOT / package).rglob("*.py"):
        bad = imports(path) - ALLOWED[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_check_sees_a_forbidden_import(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("import simulator.card\nfrom tests import helpers\n")
    assert imports(p) == {"simulator", "tests"}
