"""Every `nodectl` and `simctl` command is documented: the commands are read from the parsers
themselves (so a new one is noticed), and each must appear in the README or docs/ as it is
typed (``nodectl accounts add``; ``prompts build | export DIR`` documents both)."""

from __future__ import annotations

import argparse
import re

import pytest

from node_agent.cli import build_parser as nodectl_parser
from simulator.cli import build_parser as simctl_parser
from tests.docs.markdown import DOCS

TEXT = "\n".join(p.read_text(encoding="utf-8") for p in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))])


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()}


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path the parser takes, down to the leaves (``("accounts", "add")``)."""
    subs = subcommands(parser)
    if not subs:
        return [path]
    return [p for name, sub in subs.items() for p in commands(sub, path + (name,))]


def documented(tool: str, parser: argparse.ArgumentParser) -> set[tuple[str, ...]]:
    """The command paths the docs show after ``tool``, read the way the parser would."""
    found: set[tuple[str, ...]] = set()
    for m in re.finditer(rf"\b{tool}\b([^\n`]*)", TEXT):
        stack = [parser]  # the parser at each level of the path so far
        path: list[str] = []
        for alternative in m.group(1).split("|"):
            words = alternative.split()
            if path and words and words[0] in subcommands(stack[-2]):  # `a b | c`: a c
                path.pop()
                stack.pop()
            for word in words:
                subs = subcommands(stack[-1])
                if word in subs:
                    path.append(word)
                    stack.append(subs[word])
                    found.add(tuple(path))
                elif not subs or not (word.startswith("-") or "." in word or "/" in word):
                    break  # past the command: its arguments, or prose
    return found


@pytest.mark.parametrize(("tool", "parser"), [("nodectl", nodectl_parser()), ("simctl", simctl_parser())])
def test_every_command_is_documented(tool, parser):
    every = commands(parser)
    assert len(every) >= 5, every  # the parser was read: both tools have more commands than that
    missing = [" ".join((tool, *p)) for p in every if p not in documented(tool, parser)]
    assert not missing, f"commands the README and docs/ never show: {missing}"
