"""Reading the tables and the `NAME` (value) mentions of the project's Markdown docs."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


def tables(text: str) -> list[tuple[str, list[dict[str, str]]]]:
    """Every table in ``text``: (the heading it is under, its rows as {header: cell})."""
    out: list[tuple[str, list[dict[str, str]]]] = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|[-:| ]+\|", lines[i + 1].strip()):
            header = cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, cells(lines[i]))))
                i += 1
            out.append((heading, rows))
            continue
        i += 1
    return out


def table(text: str, heading: str, first: str) -> list[dict[str, str]]:
    """The table under ``heading`` whose first column is ``first``."""
    found = [rows for h, rows in tables(text) if h == heading and rows and next(iter(rows[0])) == first]
    assert found, f"no table with a {first!r} column under the heading {heading!r}"
    return found[0]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def code(cell: str) -> str:
    """The first `code` span of a cell."""
    m = re.search(r"`([^`]+)`", cell)
    assert m, f"no `code` in {cell!r}"
    return m.group(1)


def number(cell: str) -> int:
    return int(cell.strip("`"), 0)


def mentions(text: str) -> list[tuple[str, int]]:
    """Every ``NAME`` (value) written in running text."""
    return [(m.group(1), int(m.group(2), 0)) for m in re.finditer(r"`([A-Z][A-Z0-9_]+)` \((0x[0-9A-Fa-f]+|\d+)\)", text)]
