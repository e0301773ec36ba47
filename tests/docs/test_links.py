"""The README and docs/ stand on their own: every relative link leads to a file of this project,
and none leads outside it (a user's clone has nothing next to it)."""

from __future__ import annotations

import re

from tests.docs.markdown import DOCS

ROOT = DOCS.parent
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_every_relative_link_is_a_file_of_the_project():
    bad = []
    links = 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            links += 1
            path = (page.parent / target).resolve()
            if not path.exists() or ROOT.resolve() not in path.parents:
                bad.append(f"{page.relative_to(ROOT)}: {target}")
        if "../shared" in text:
            bad.append(f"{page.relative_to(ROOT)}: mentions ../shared/")
    assert links >= 5  # the README links the docs
    assert not bad, bad
