"""The import rules of the architecture (its table of layers), held module by module.

Each folder may import only the modules of ours listed for it. ``name`` allows that module
alone, ``name.*`` that module and everything below it. Imports are resolved as Python would:
``from firmware.card import wire`` is the module ``firmware.card.wire``; relative imports are
made absolute; ``importlib.import_module("...")`` and ``__import__("...")`` with a literal count;
so do imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ["firmware.*", "drivers.*", "hal.*", "node_agent.*", "central_link.*"]
TOOLS = [*PRODUCT, "simulator.*"]  # bench and scripts: the product and the simulator, never tests
# folder -> (may import, except these); the longest folder that holds a file applies
RULES: dict[str, tuple[list[str], list[str]]] = {
    "firmware/card": (["firmware.card.*"], []),  # runs on the card: nothing of the host's
    "firmware": (["firmware.*"], []),  # host tools: built from the card code, speak its wire format
    "drivers": (["drivers.*", "firmware.card.wire"], []),  # the one definition of the wire format
    "hal": (["hal.*", "drivers.*"], []),  # built on the drivers, never on the wire format
    "central_link": (["central_link.*", "drivers.dsp.*"], []),  # codecs and concealment only
    # the HAL's public interface only (never hal.linecard, never drivers.linecard or the wire)
    # (and the card flasher's types: `nodectl flash` opens the card's port itself when no daemon runs;
    #  the daemon gets its flasher from the HAL, Board.firmware_updater())
    "node_agent": (["node_agent.*", "hal", "hal.events", "drivers.audiofile", "drivers.dsp.*", "drivers.linecard.flasher",
                    "central_link.*", "firmware.*"], ["firmware.card.*"]),
    "simulator": (["simulator.*", "firmware.*", "drivers.*"], []),
    "bench": (["bench.*", *TOOLS], []),
    "scripts": (["scripts.*", *TOOLS], []),
}
OURS = {"firmware", "drivers", "hal", "node_agent", "central_link", "simulator", "bench", "scripts", "tests"}


def _exists(root: Path, module: str) -> bool:
    p = root.joinpath(*module.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def imported(source: str, rel: str, root: Path = ROOT) -> set[str]:
    """The modules of ours that ``source`` (the file at ``rel`` under ``root``) imports."""
    package = list(Path(rel).parent.parts)
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level - 1 <= len(package) else []
                mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                mod = node.module or ""
            for a in node.names:  # `from pkg import sub` imports the module pkg.sub when there is one
                sub = f"{mod}.{a.name}" if mod else a.name
                out.add(sub if a.name != "*" and _exists(root, sub) else mod)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))
                   or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
            out.add(node.args[0].value)
    return {m for m in out if m and m.split(".")[0] in OURS}


def _matches(module: str, patterns: list[str]) -> bool:
    return any(module == p.removesuffix(".*") or (p.endswith(".*") and module.startswith(p[:-1]))
               for p in patterns)


def rule_for(rel: str) -> str | None:
    folders = [f for f in RULES if rel.startswith(f + "/")]
    return max(folders, key=len) if folders else None


def violations(source: str, rel: str, root: Path = ROOT) -> set[str]:
    """The modules ``source`` (at ``rel``) imports that its folder's rule does not allow."""
    folder = rule_for(rel)
    if folder is None:
        return set()
    allow, deny = RULES[folder]
    return {m for m in imported(source, rel, root) if not _matches(m, allow) or _matches(m, deny)}


@pytest.mark.parametrize("folder", sorted(RULES))
def test_every_file_keeps_the_import_table(folder):
    bad = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rule_for(rel) != folder:
            continue  # a deeper folder's rule applies (firmware/card inside firmware)
        found = violations(path.read_text(encoding="utf-8"), rel)
        if found:
            bad[rel] = sorted(found)
    assert not bad, f"imports against the layer table: {bad}"


@pytest.mark.parametrize("rel,source,caught", [
    ("hal/x.py", "from firmware.card import wire", "firmware.card.wire"),  # the HAL on the wire format
    ("hal/x.py", "import firmware", "firmware"),
    ("hal/x.py", "import node_agent.cli", "node_agent.cli"),  # upwards
    ("hal/x.py", "def f():\n    from simulator import card\n", "simulator.card"),  # inside a function
    ("hal/x.py", "import importlib\nimportlib.import_module('simulator.pstn')", "simulator.pstn"),  # dynamic
    ("hal/x.py", "__import__('tests.helpers')", "tests.helpers"),
    ("drivers/x.py", "from firmware.card import app", "firmware.card.app"),  # more of the card than its wire
    ("drivers/x.py", "import firmware.card", "firmware.card"),
    ("drivers/x.py", "from hal import Line", "hal"),
    ("central_link/x.py", "from drivers.linecard import LinkDown", "drivers.linecard"),
    ("central_link/x.py", "import drivers.audiofile", "drivers.audiofile"),
    ("node_agent/x.py", "from hal.linecard import LineCardBoard", "hal.linecard"),  # behind the HAL
    ("node_agent/x.py", "from drivers.linecard import LinkDown", "drivers.linecard"),
    ("node_agent/x.py", "from firmware.card import wire", "firmware.card.wire"),
    ("node_agent/x.py", "from simulator.client import SimClient", "simulator.client"),  # product -> simulator
    ("simulator/x.py", "import hal", "hal"),
    ("simulator/x.py", "from node_agent.store import Store", "node_agent.store"),
    ("bench/x.py", "from tests.conftest import start_sim", "tests.conftest"),  # nothing imports tests
    ("scripts/x.py", "import tests.helpers", "tests.helpers"),
    ("firmware/card/x.py", "from drivers.dsp import G711", "drivers.dsp"),  # the card imports nothing of ours
    ("firmware/card/x.py", "from .. import tools", "firmware"),  # relative, out of firmware/card
    ("firmware/x.py", "import drivers.linecard", "drivers.linecard"),
])
def test_the_check_catches_each_kind_of_violation(rel, source, caught):
    assert caught in violations(source, rel)


@pytest.mark.parametrize("rel,source", [
    ("drivers/x.py", "from firmware.card import wire\nimport firmware.card.wire\nfrom firmware.card.wire import encode"),
    ("central_link/x.py", "from drivers.dsp import G711\nfrom drivers.dsp.g711 import ULAW"),
    ("node_agent/x.py", "import hal\nfrom hal import events as ev\nfrom hal import Line\n"
                        "from drivers.audiofile import write_wav\nfrom drivers.dsp import G711\n"
                        "from drivers.linecard import flasher"),
    ("hal/x.py", "from drivers.linecard import LineCardLink\nfrom drivers.dsp.receive import ReceiveChain\n"
                 "from . import events\nfrom .audio import AudioPort"),
    ("firmware/card/x.py", "from . import wire\nfrom .line import FxoLine\nimport struct"),
    ("simulator/x.py", "from firmware.card.app import Card\nfrom drivers.dsp import ALAW"),
    ("bench/x.py", "import hal\nfrom simulator.client import SimClient\nfrom node_agent.auth import Authenticator"),
])
def test_the_check_allows_what_the_table_allows(rel, source):
    assert violations(source, rel) == set()


def test_relative_imports_resolve_to_absolute_modules():
    assert imported("from . import wire\nfrom .line import FxoLine", "firmware/card/app.py") == {
        "firmware.card.wire", "firmware.card.line"}
    assert imported("from .. import events", "hal/sub/x.py") == {"hal.events"}
