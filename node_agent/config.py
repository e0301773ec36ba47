"""The node's configuration (TOML): node identity, lines, prompts, and IVR flows as data.

``load(path)`` returns a :class:`NodeConfig` or raises :class:`ConfigError` listing *every*
problem, each naming the file, the place (``flows.main.nodes.menu``) and what is wrong:
unknown keys and types, a menu key leading nowhere, an unknown prompt, a node no call can reach,
a loop with no way out, a WAV prompt that is missing.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LANGUAGES = {"en": "English", "cmn": "Mandarin", "yue": "Cantonese"}
DIGIT_KEYS = set("0123456789*#")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# per node type: field -> (kind, required). kinds: node, prompt, prompts, int, str, keymap, langmap, hours, dates
NODE_TYPES: dict[str, dict[str, tuple[str, bool]]] = {
    "play": {"prompts": ("prompts", True), "next": ("node", True)},
    "menu": {"prompt": ("prompt", True), "options": ("keymap", True), "invalid_prompt": ("prompt", False),
             "timeout_prompt": ("prompt", False), "timeout_ms": ("int", False), "retries": ("int", False),
             "on_fail": ("node", True)},
    "collect": {"prompt": ("prompt", True), "min_digits": ("int", False), "max_digits": ("int", False),
                "terminator": ("str", False), "first_digit_timeout_ms": ("int", False),
                "inter_digit_timeout_ms": ("int", False), "retries": ("int", False),
                "invalid_prompt": ("prompt", False), "store_as": ("str", True), "next": ("node", True),
                "on_fail": ("node", True)},
    "authenticate": {"account_prompt": ("prompt", True), "pin_prompt": ("prompt", True),
                     "wrong_prompt": ("prompt", True), "blacklisted_prompt": ("prompt", True),
                     "goodbye_prompt": ("prompt", True), "next": ("node", True), "on_fail": ("node", True),
                     "first_digit_timeout_ms": ("int", False), "inter_digit_timeout_ms": ("int", False)},
    "language": {"prompt": ("prompt", True), "options": ("langmap", True), "next": ("node", True),
                 "timeout_ms": ("int", False), "retries": ("int", False), "on_fail": ("node", True)},
    "schedule": {"hours": ("hours", True), "holidays": ("dates", False), "open": ("node", True),
                 "closed": ("node", True)},
    "record": {"prompt": ("prompt", True), "max_ms": ("int", False), "kind": ("str", True),
               "next": ("node", True)},
    "callback": {"prompt": ("prompt", True), "confirm_prompt": ("prompt", True), "next": ("node", True)},
    "transfer": {"prompt": ("prompt", False), "queue": ("str", False), "fallback": ("node", True)},
    "hangup": {"prompt": ("prompt", False)},
}
EXITS = {"hangup", "transfer"}  # node types that end the IVR part of a call


class ConfigError(ValueError):
    """One or more problems in a configuration file; ``problems`` lists them."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:\n"
                         + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Prompt:
    name: str
    texts: dict[str, str]  # language -> text (synthesised), or
    wav: Path | None = None  # a recorded prompt


@dataclass(frozen=True)
class FlowNode:
    name: str
    type: str
    fields: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


@dataclass(frozen=True)
class Flow:
    name: str
    start: str
    nodes: dict[str, FlowNode]


@dataclass(frozen=True)
class LineConfig:
    line: int
    number: str
    flow: str


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    node_id: str
    card: str
    data_dir: Path
    country: str = "cn"
    language: str = "cmn"
    max_daily_failures: int = 5
    lines: dict[int, LineConfig] = field(default_factory=dict)
    prompts: dict[str, Prompt] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)
    answer_on_ring: int = 2


def load(path: str | Path) -> NodeConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, ["the file does not exist"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    return _Checker(path, raw).run()


class _Checker:
    def __init__(self, path: Path, raw: dict) -> None:
        self.path = path
        self.raw = raw
        self.problems: list[str] = []

    def bad(self, where: str, what: str) -> None:
        self.problems.append(f"[{where}] {what}")

    def run(self) -> NodeConfig:
        raw = self.raw
        for key in raw:
            if key not in ("node", "lines", "prompts", "flows"):
                self.bad(key, "unknown section: the sections are [node], [lines], [prompts] and [flows]")
        node = raw.get("node", {})
        node_id = self._str(node, "id", "node", required=True)
        card = self._str(node, "card", "node", required=True)
        country = self._str(node, "country", "node") or "cn"
        if country not in ("cn", "na"):
            self.bad("node", f"country {country!r} is not known: use 'cn' or 'na'")
        language = self._str(node, "language", "node") or "cmn"
        if language not in LANGUAGES:
            self.bad("node", f"language {language!r} is not known: use one of {', '.join(LANGUAGES)}")
        mdf = node.get("max_daily_failures", 5)
        if not isinstance(mdf, int) or mdf < 1:
            self.bad("node", f"max_daily_failures must be a whole number of at least 1, not {mdf!r}")
        aor = node.get("answer_on_ring", 2)
        if not isinstance(aor, int) or not 1 <= aor <= 10:
            self.bad("node", f"answer_on_ring must be 1 to 10, not {aor!r} (2 lets caller ID arrive first)")
        for key in node:
            if key not in ("id", "card", "data_dir", "country", "language", "max_daily_failures", "hq",
                           "answer_on_ring"):
                self.bad("node", f"unknown setting {key!r}")
        data_dir = (self.path.parent / str(node.get("data_dir", "data"))).resolve()
        prompts = self._prompts(raw.get("prompts", {}))
        flows = {name: self._flow(name, body, prompts) for name, body in raw.get("flows", {}).items()}
        if not flows:
            self.bad("flows", "no flow is defined: add [flows.NAME] with a start node")
        lines = self._lines(raw.get("lines", {}), flows)
        self._languages(language if language in LANGUAGES else "cmn", flows, prompts)
        if self.problems:
            raise ConfigError(self.path, self.problems)
        return NodeConfig(self.path, node_id, card, data_dir, country, language, mdf, lines, prompts,
                          {k: v for k, v in flows.items() if v is not None}, aor)

    def _lines(self, table: dict, flows: dict) -> dict[int, LineConfig]:
        out = {}
        for key, body in table.items():
            where = f"lines.{key}"
            if not str(key).isdigit() or not 1 <= int(key) <= 8:
                self.bad(where, "lines are numbered 1 to 8")
                continue
            if not isinstance(body, dict):
                self.bad(where, "a line is a table: number = '...', flow = '...'")
                continue
            number = self._str(body, "number", where, required=True)
            flow = self._str(body, "flow", where, required=True)
            if flow and flow not in flows:
                self.bad(where, f"flow {flow!r} is not defined under [flows]")
            out[int(key)] = LineConfig(int(key), number, flow)
        if not out:
            self.bad("lines", "no line is configured: add [lines.1] with number and flow")
        return out

    def _languages(self, default: str, flows: dict, prompts: dict[str, Prompt]) -> None:
        """Every synthesised prompt a flow uses needs a text in every language a caller can pick."""
        for flow in flows.values():
            if flow is None:
                continue
            langs = {default}
            used: set[str] = set()
            for node in flow.nodes.values():
                if node.type == "language" and isinstance(node.get("options"), dict):
                    langs |= {v for v in node["options"].values() if v in LANGUAGES}
                for key, (kind, _req) in NODE_TYPES[node.type].items():
                    v = node.get(key)
                    if kind == "prompt" and isinstance(v, str):
                        used.add(v)
                    elif kind == "prompts" and isinstance(v, list):
                        used |= {x for x in v if isinstance(x, str)}
            for name in sorted(used):
                p = prompts.get(name)
                if p is None or p.wav is not None:
                    continue
                missing = sorted(langs - set(p.texts))
                if missing:
                    self.bad(f"prompts.{name}", f"no text in {', '.join(LANGUAGES[m] for m in missing)}, "
                             f"which callers of flow {flow.name!r} can choose")

    def _str(self, table: dict, key: str, where: str, required: bool = False) -> str:
        v = table.get(key)
        if v is None:
            if required:
                self.bad(where, f"{key} is missing")
            return ""
        if not isinstance(v, str) or not v:
            self.bad(where, f"{key} must be a non-empty string, not {v!r}")
            return ""
        return v

    def _prompts(self, table: dict) -> dict[str, Prompt]:
        out = {}
        for name, body in table.items():
            where = f"prompts.{name}"
            if not isinstance(body, dict):
                self.bad(where, "a prompt is a table of texts by language (en = '...') or wav = 'file.wav'")
                continue
            wav = None
            texts = {}
            for key, value in body.items():
                if key == "wav":
                    wav = (self.path.parent / str(value)).resolve()
                    if not wav.is_file():
                        self.bad(where, f"WAV file {wav} does not exist")
                elif key in LANGUAGES:
                    if not isinstance(value, str) or not value.strip():
                        self.bad(where, f"the {LANGUAGES[key]} text must be a non-empty string")
                    texts[key] = value
                else:
                    self.bad(where, f"unknown key {key!r}: use a language ({', '.join(LANGUAGES)}) or wav")
            if wav is None and not texts:
                self.bad(where, "no text and no wav: the prompt would be silent")
            out[name] = Prompt(name, texts, wav)
        return out

    def _flow(self, name: str, body: dict, prompts: dict[str, Prompt]) -> Flow | None:
        where = f"flows.{name}"
        if not isinstance(body, dict):
            self.bad(where, "a flow is a table with start and nodes")
            return None
        start = body.get("start")
        raw_nodes = body.get("nodes", {})
        if not raw_nodes:
            self.bad(where, "the flow has no nodes")
            return None
        nodes: dict[str, FlowNode] = {}
        for nname, nbody in raw_nodes.items():
            nwhere = f"{where}.nodes.{nname}"
            if not isinstance(nbody, dict) or "type" not in nbody:
                self.bad(nwhere, f"a node needs a type: one of {', '.join(NODE_TYPES)}")
                continue
            ntype = nbody["type"]
            spec = NODE_TYPES.get(ntype)
            if spec is None:
                self.bad(nwhere, f"unknown node type {ntype!r}: use one of {', '.join(NODE_TYPES)}")
                continue
            fields = {k: v for k, v in nbody.items() if k != "type"}
            for key in fields:
                if key not in spec:
                    self.bad(nwhere, f"{ntype} nodes have no setting {key!r} (they take: {', '.join(spec)})")
            for key, (kind, required) in spec.items():
                if key not in fields:
                    if required:
                        self.bad(nwhere, f"{key} is missing")
                    continue
                self._check_value(nwhere, key, kind, fields[key], raw_nodes, prompts)
            nodes[nname] = FlowNode(nname, ntype, fields)
        if start not in raw_nodes:
            self.bad(where, f"start {start!r} is not a node of this flow" if start else "start is missing")
            return Flow(name, str(start), nodes)
        self._graph(where, start, nodes)
        return Flow(name, start, nodes)

    def _check_value(self, where: str, key: str, kind: str, value: Any, nodes: dict, prompts: dict) -> None:
        def node_ref(v: Any, what: str) -> None:
            if not isinstance(v, str) or v not in nodes:
                self.bad(where, f"{what} goes to {v!r}, which is not a node of this flow")

        def prompt_ref(v: Any, what: str) -> None:
            if not isinstance(v, str) or v not in prompts:
                self.bad(where, f"{what} uses prompt {v!r}, which is not defined under [prompts]")

        if kind == "node":
            node_ref(value, key)
        elif kind == "prompt":
            prompt_ref(value, key)
        elif kind == "prompts":
            if not isinstance(value, list) or not value:
                self.bad(where, f"{key} must be a list of prompt names")
            else:
                for v in value:
                    prompt_ref(v, key)
        elif kind == "int":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                self.bad(where, f"{key} must be a whole number, not {value!r}")
        elif kind == "str":
            if not isinstance(value, str) or not value:
                self.bad(where, f"{key} must be a non-empty string")
            elif key == "terminator" and value not in DIGIT_KEYS:
                self.bad(where, f"terminator {value!r} is not a key: use one of 0-9 * #")
        elif kind in ("keymap", "langmap"):
            if not isinstance(value, dict) or not value:
                self.bad(where, f"{key} must be a table of key = target")
                return
            for k, v in value.items():
                if k not in DIGIT_KEYS:
                    self.bad(where, f"option {k!r} is not a phone key (0-9, * or #)")
                if kind == "keymap":
                    node_ref(v, f"option {k!r}")
                elif v not in LANGUAGES:
                    self.bad(where, f"option {k!r} selects language {v!r}: use one of {', '.join(LANGUAGES)}")
        elif kind == "hours":
            if not isinstance(value, dict):
                self.bad(where, "hours must be a table like mon = '09:00-17:00'")
                return
            for day, span in value.items():
                if day not in DAYS:
                    self.bad(where, f"hours: {day!r} is not a day ({', '.join(DAYS)})")
                elif not isinstance(span, str) or not _HOURS_RE.match(span):
                    self.bad(where, f"hours.{day}: {span!r} is not a range like '09:00-17:30'")
        elif kind == "dates":
            if not isinstance(value, list) or not all(isinstance(d, str) and _DATE_RE.match(d) for d in value):
                self.bad(where, f"{key} must be a list of dates like '2026-10-01'")

    @staticmethod
    def _edges(node: FlowNode) -> list[str]:
        out = []
        for key, (kind, _req) in NODE_TYPES[node.type].items():
            v = node.fields.get(key)
            if kind == "node" and isinstance(v, str):
                out.append(v)
            elif kind == "keymap" and isinstance(v, dict):
                out += [t for t in v.values() if isinstance(t, str)]
        return out

    def _graph(self, where: str, start: str, nodes: dict[str, FlowNode]) -> None:
        edges = {n: [t for t in self._edges(node) if t in nodes] for n, node in nodes.items()}
        seen, todo = set(), [start]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo += edges.get(n, [])
        for n in nodes:
            if n not in seen:
                self.bad(f"{where}.nodes.{n}", f"no call can reach this node from start {start!r}: "
                         "link it from another node or remove it")
        # nodes from which an exit (hangup / transfer) can be reached
        can_exit = {n for n, node in nodes.items() if node.type in EXITS}
        changed = True
        while changed:
            changed = False
            for n, targets in edges.items():
                if n not in can_exit and any(t in can_exit for t in targets):
                    can_exit.add(n)
                    changed = True
        for n in sorted(seen - can_exit):
            self.bad(f"{where}.nodes.{n}", "a loop with no exit: every path from this node comes back "
                     "without reaching a hangup or transfer node; give it a way out")
