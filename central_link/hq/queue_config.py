"""The hub's ``[queue]`` settings: the router's timers and the priorities, checked setting by setting.

    [queue]
    offer_timeout_s = 15         # an offer not answered by then rings out: back to the head
    wrap_up_s = 30               # wrap-up ends by itself after this
    max_no_answer = 3            # ring-outs in a row that set an agent not ready ("no answer")
    [queue.priorities]           # higher first; the highest rule that applies wins
    default = 0
    nodes = { "sz-futian-01" = 5 }
    lines = { "sz-futian-01:3" = 2 }      # node:line
    classes = { vip = 10 }                # a verified caller's account class
"""

from __future__ import annotations

from typing import Any

from .queue import Priorities
from .routing import RoutingConfig

KEYS = ("offer_timeout_s", "wrap_up_s", "max_no_answer", "priorities")
PRIORITY_KEYS = ("default", "nodes", "lines", "classes")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _seconds(raw: dict, key: str, default: float, low: float, high: float, bad: list[str]) -> float:
    v = raw.get(key, default)
    if not isinstance(v, int | float) or isinstance(v, bool) or not low <= v <= high:
        bad.append(f"[queue] {key} must be a number of seconds from {low:g} to {high:g}, not {v!r}")
        return default
    return float(v)


def check(raw: Any, bad: list[str]) -> tuple[RoutingConfig, Priorities]:
    """The settings, appending each problem to ``bad`` (then the defaults stand in)."""
    if not isinstance(raw, dict):
        bad.append("[queue] must be a table of settings")
        return RoutingConfig(), Priorities()
    bad += [f"[queue] unknown setting {k!r}: the settings are {', '.join(KEYS)}" for k in raw if k not in KEYS]
    d = RoutingConfig()
    offer = _seconds(raw, "offer_timeout_s", d.offer_timeout_s, 1, 600, bad)
    wrap = _seconds(raw, "wrap_up_s", d.wrap_up_s, 0, 3600, bad)
    mna = raw.get("max_no_answer", d.max_no_answer)
    if not _int(mna) or not 1 <= mna <= 100:
        bad.append(f"[queue] max_no_answer must be a whole number from 1 to 100, not {mna!r}")
        mna = d.max_no_answer
    return RoutingConfig(offer, wrap, mna), _priorities(raw.get("priorities", {}), bad)


def _priorities(raw: Any, bad: list[str]) -> Priorities:
    if not isinstance(raw, dict):
        bad.append("[queue.priorities] must be a table")
        return Priorities()
    bad += [f"[queue.priorities] unknown setting {k!r}: the settings are {', '.join(PRIORITY_KEYS)}"
            for k in raw if k not in PRIORITY_KEYS]
    default = raw.get("default", 0)
    if not _int(default):
        bad.append(f"[queue.priorities] default must be a whole number, not {default!r}")
        default = 0
    tables: dict[str, dict[str, int]] = {}
    for key in ("nodes", "lines", "classes"):
        t = raw.get(key, {})
        if not isinstance(t, dict) or not all(_int(v) for v in t.values()):
            bad.append(f"[queue.priorities] {key} must be a table of whole numbers, like {{ vip = 10 }}")
            t = {}
        tables[key] = t
    lines: dict[tuple[str, int], int] = {}
    for name, p in tables["lines"].items():
        node, _, line = name.rpartition(":")
        if not node or not line.isdigit():
            bad.append(f"[queue.priorities] lines: {name[:70]!r} is not NODE:LINE, like \"sz-futian-01:3\"")
            continue
        lines[(node, int(line))] = p
    return Priorities(default, dict(tables["nodes"]), lines, dict(tables["classes"]))
