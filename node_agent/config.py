"""The node's configuration (TOML): node identity, lines, prompts, and IVR flows as data.

``load(path)`` returns a :class:`NodeConfig` or raises :class:`ConfigError` listing *every*
problem, each naming the file, the place (``flows.main.nodes.menu``) and what is wrong:
unknown keys and types, a menu key leading nowhere, an unknown prompt, a node no call can reach,
a loop with no way out, a WAV prompt that is missing, a number out of its range. Whatever the
file holds, ``load`` raises nothing but :class:`ConfigError`.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hal
from central_link.protocol import NODE_ID_RE
from central_link.tls import TlsConfigError, client_context

from .schedule import DAYS, parse_holiday, parse_span

LANGUAGES = {"en": "English", "cmn": "Mandarin", "yue": "Cantonese"}
DIGIT_KEYS = set("0123456789*#")
MAX_FILE_BYTES = 4 * 1024 * 1024  # a branch's configuration is kilobytes; this is a wrong file
MAX_PROMPT_CHARS = 2000  # minutes of speech; a longer "prompt" is a pasted document
MAX_NAME_CHARS = 64
MAX_LINES = 8
_LINE_KEY_RE = re.compile(r"[1-9][0-9]*")  # ASCII digits only: '١' or '²' must not pass for 1 or 2
_IDENT_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")  # store_as, record kind: they name files and values
# whole-number settings: (lowest, highest) that make sense
BOUNDS: dict[str, tuple[int, int]] = {
    "timeout_ms": (100, 300_000), "first_digit_timeout_ms": (100, 300_000),
    "inter_digit_timeout_ms": (100, 300_000), "retries": (1, 10), "min_digits": (1, 32),
    "max_digits": (1, 32), "max_ms": (1_000, 600_000),
}

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
class Forwarding:
    """How a call waits for an HQ agent at the branch (the ``[hq]`` settings after the uplink's).
    Prompt settings name prompts of ``[prompts]``; ``position_prompt``'s texts say ``{n}`` where the
    caller's place in line goes."""
    hold_prompt: str | None = None  # played while the caller waits, every hold_every_s
    hold_every_s: float = 20.0
    position_prompt: str | None = None  # "You are number {n} in line.", every announce_every_s
    announce_every_s: float = 30.0
    callback_key: str | None = None  # pressed while waiting: leave a callback number instead
    callback_prompt: str | None = None  # asks for the number (with callback_key)
    callback_confirm_prompt: str | None = None  # "we will call you back" (with callback_key)
    max_wait_s: float = 600.0  # then the caller leaves the queue for the transfer's fallback
    queue_timeout_s: float = 3.0  # HQ's answer to queue_call, else the fallback
    connect_timeout_s: float = 10.0  # an answered call's media must connect within this
    ice: Any = None  # central_link.media.ice.IceConfig from [hq.ice]; None: no server, any address
    flatten_dtmf: bool = True  # keys the caller presses while talking never reach the agent (docs/node.md)
    verify_on_fail: str = "hangup"  # a capture's three failures: "hangup" (goodbye, as the IVR) or "agent"


FORWARDING_SECONDS: dict[str, tuple[float, float]] = {  # setting: (lowest, highest)
    "hold_every_s": (1, 3600), "announce_every_s": (5, 3600), "max_wait_s": (10, 86400),
    "queue_timeout_s": (0.5, 60), "connect_timeout_s": (1, 120)}
FORWARDING_PROMPTS = ("hold_prompt", "position_prompt", "callback_prompt", "callback_confirm_prompt")
VERIFY_ON_FAIL = ("hangup", "agent")  # node_agent.verify.ON_FAIL
HQ_KEYS = ("url", "cert", "key", "ca", "callback_key", "ice", "flatten_dtmf", "verify_on_fail", *FORWARDING_PROMPTS,
           *FORWARDING_SECONDS)


@dataclass(frozen=True)
class HqConfig:
    """The ``[hq]`` section: where the hub is and the node's certificate for it, and how calls
    transferred to an agent wait for one."""
    url: str
    cert: Path
    key: Path
    ca: Path
    forwarding: Forwarding = field(default_factory=Forwarding)


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
    hq: HqConfig | None = None  # None: no uplink (the node works alone)


def load(path: str | Path) -> NodeConfig:
    path = Path(path)
    try:
        if path.is_dir():
            raise ConfigError(path, ["this is a directory: give the configuration file itself "
                                     "(-c FILE or $BRANCHNODE_CONFIG)"])
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(path, [f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: "
                                     "this is not a branch configuration"])
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(path, ["the file does not exist: give the configuration with -c FILE "
                                 "or $BRANCHNODE_CONFIG"]) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read it: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(path, [f"line {line}: not UTF-8 (byte 0x{exc.object[exc.start]:02x}): "
                                 "save the file as UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    except RecursionError:
        raise ConfigError(path, ["not valid TOML: nested too deeply"]) from None
    return _Checker(path, raw).run()


def _show(value: Any, limit: int = 40) -> str:
    """A value for an error message: its repr, cut short (a 300 kB value must not flood the screen)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _name(key: str) -> str:
    """A table key as it appears in a place (``flows.main``); an odd key is quoted."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _show(key)


def _bad_chars(text: str, allow: str = "") -> str | None:
    """The first control / unassigned character in ``text`` (a NUL in a prompt, a newline in a name)."""
    for ch in text:
        if ch not in allow and unicodedata.category(ch) in ("Cc", "Cs", "Cn"):
            return f"U+{ord(ch):04X}"
    return None


def _table(value: Any) -> bool:
    return isinstance(value, dict)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    def __init__(self, path: Path, raw: dict) -> None:
        self.path = path
        self.raw = raw
        self.problems: list[str] = []

    def bad(self, where: str, what: str) -> None:
        self.problems.append(f"[{where}] {what}")

    def section(self, key: str, what: str) -> dict:
        value = self.raw.get(key, {})
        if not _table(value):
            self.bad(key, f"must be a table ([{key}] …) of {what}, not {_show(value)}")
            return {}
        return value

    def run(self) -> NodeConfig:
        raw = self.raw
        for key in raw:
            if key not in ("node", "lines", "prompts", "flows", "hq"):
                self.bad(_name(key), "unknown section: the sections are [node], [lines], [prompts], [flows] "
                         "and [hq]")
        node = self.section("node", "settings")
        node_id = self._str(node, "id", "node", required=True)
        card = self._card(node)
        country = self._str(node, "country", "node") or "cn"
        if country not in ("cn", "na"):
            self.bad("node", f"country {_show(country)} is not known: use 'cn' or 'na'")
        language = self._str(node, "language", "node") or "cmn"
        if language not in LANGUAGES:
            self.bad("node", f"language {_show(language)} is not known: use one of {', '.join(LANGUAGES)}")
        mdf = node.get("max_daily_failures", 5)
        if not _whole(mdf) or not 1 <= mdf <= 1000:
            self.bad("node", f"max_daily_failures must be a whole number from 1 to 1000, not {_show(mdf)}")
        aor = node.get("answer_on_ring", 2)
        if not _whole(aor) or not 1 <= aor <= 10:
            self.bad("node", f"answer_on_ring must be 1 to 10, not {_show(aor)} (2 lets caller ID arrive first)")
        for key in node:
            if key == "hq":
                self.bad("node", "hq is not a [node] setting: the uplink has its own section, [hq], with url, cert, "
                         "key and ca")
            elif key not in ("id", "card", "data_dir", "country", "language", "max_daily_failures",
                             "answer_on_ring"):
                self.bad("node", f"unknown setting {_show(key)}")
        data_dir = (self.path.parent / (self._str(node, "data_dir", "node", limit=4096) or "data")).resolve()
        prompts = self._prompts(self.section("prompts", "prompts"))
        flows = {name: self._flow(name, body, prompts) for name, body in self.section("flows", "flows").items()}
        if not flows:
            self.bad("flows", "no flow is defined: add [flows.NAME] with a start node")
        lines = self._lines(self.section("lines", "lines"), flows)
        self._languages(language if language in LANGUAGES else "cmn", flows, prompts)
        hq = self._hq(node_id, prompts) if "hq" in raw else None
        if self.problems:
            raise ConfigError(self.path, self.problems)
        return NodeConfig(self.path, node_id, card, data_dir, country, language, mdf, lines, prompts,
                          {k: v for k, v in flows.items() if v is not None}, aor, hq)

    def _hq(self, node_id: str, prompts: dict[str, Prompt]) -> HqConfig | None:
        """The uplink to HQ: a wss:// URL on a host and port, and the node's certificate files."""
        table = self.section("hq", "the uplink's settings (url, cert, key, ca)")
        for key in table:
            if key not in HQ_KEYS:
                self.bad("hq", f"unknown setting {_show(key)} (the uplink takes url, cert, key and ca; waiting "
                         f"for an agent: {', '.join(HQ_KEYS[4:])})")
        forwarding = self._forwarding(table, prompts)
        url = self._str(table, "url", "hq", required=True, limit=4096)
        if url:
            try:
                parts = urlsplit(url)
                host, port = parts.hostname, parts.port
            except ValueError:
                parts, host, port = None, None, None
            if parts is None or parts.scheme != "wss" or not host or port is None:
                self.bad("hq", f"url {_show(url)} must be wss://HOST:PORT/node (mutual TLS, a port given)")
        files = {}
        for key, what in (("cert", "the node's certificate"), ("key", "its private key"), ("ca", "the CA certificate")):
            rel = self._str(table, key, "hq", required=True, limit=4096)
            if rel:
                files[key] = (self.path.parent / rel).resolve()
                if not files[key].is_file():
                    self.bad("hq", f"{key}: {files[key]} ({what}) does not exist: make it with `nodectl certs`")
        if node_id and not NODE_ID_RE.fullmatch(node_id):
            self.bad("node", f"id {_show(node_id)} cannot name a certificate (the hub knows a node by it): use "
                     "letters, digits, '.', '_' or '-'")
        if len(files) < 3 or not url:
            return None
        if all(p.is_file() for p in files.values()):
            try:  # the files load as the uplink will load them: a wrong file is named now, not at run time
                client_context(files["cert"], files["key"], files["ca"])
            except TlsConfigError as exc:
                self.bad("hq", str(exc))
        return HqConfig(url, files["cert"], files["key"], files["ca"], forwarding)

    def _forwarding(self, table: dict, prompts: dict[str, Prompt]) -> Forwarding:
        d = Forwarding()
        values: dict[str, Any] = {}
        for key, (lo, hi) in FORWARDING_SECONDS.items():
            v = table.get(key, getattr(d, key))
            if not isinstance(v, int | float) or isinstance(v, bool) or not lo <= v <= hi:
                self.bad("hq", f"{key} must be a number of seconds from {lo:g} to {hi:g}, not {_show(v)}")
                continue
            values[key] = float(v)
        for key in FORWARDING_PROMPTS:
            v = table.get(key)
            if v is None:
                continue
            if not isinstance(v, str) or v not in prompts:
                self.bad("hq", f"{key} uses prompt {_show(v)}, which is not defined under [prompts]")
                continue
            values[key] = v
        position = values.get("position_prompt")
        if position is not None:
            p = prompts[position]
            if p.wav is not None or any("{n}" not in t for t in p.texts.values()):
                self.bad(f"prompts.{_name(position)}", "the position_prompt of [hq] is spoken with the caller's "
                         "place in line: give it a text in each language with {n} where the number goes, "
                         "like en = \"You are number {n} in line.\" (not a wav)")
        key = table.get("callback_key")
        if key is not None:
            if not isinstance(key, str) or key not in DIGIT_KEYS:
                self.bad("hq", f"callback_key {_show(key)} is not a phone key: use one of 0-9 * #")
            elif not ("callback_prompt" in values and "callback_confirm_prompt" in values):
                self.bad("hq", "callback_key needs callback_prompt (asks for the number) and "
                         "callback_confirm_prompt (says it was taken)")
            else:
                values["callback_key"] = key
        elif "callback_prompt" in values or "callback_confirm_prompt" in values:
            self.bad("hq", "callback_prompt and callback_confirm_prompt are used only with callback_key: "
                     "set the key the caller presses, or remove them")
        flatten = table.get("flatten_dtmf", True)
        if not isinstance(flatten, bool):
            self.bad("hq", f"flatten_dtmf must be true or false, not {_show(flatten)}")
        else:
            values["flatten_dtmf"] = flatten
        on_fail = table.get("verify_on_fail", "hangup")
        if on_fail not in VERIFY_ON_FAIL:
            self.bad("hq", f"verify_on_fail {_show(on_fail)} is not one of {', '.join(VERIFY_ON_FAIL)}: \"hangup\" "
                     "ends the call after a failed verification (as the IVR does), \"agent\" leaves the caller "
                     "with the agent")
        else:
            values["verify_on_fail"] = on_fail
        ice = table.get("ice")
        if ice is not None and not _table(ice):
            self.bad("hq.ice", "must be a table: servers, networks, relay_only")
        elif ice is not None:
            from central_link.media.ice import IceConfig, IceConfigError  # aiortc: only for a node that sets ICE

            try:
                values["ice"] = IceConfig.from_dict(ice, "[hq.ice]")
            except IceConfigError as exc:
                self.problems.append(str(exc))
        return Forwarding(**values)

    def _card(self, node: dict) -> str:
        card = self._str(node, "card", "node", required=True)
        problem = card_problem(card) if card else None
        if problem:
            self.bad("node", problem)
        return card

    def _lines(self, table: dict, flows: dict) -> dict[int, LineConfig]:
        out = {}
        for key, body in table.items():
            where = f"lines.{_name(key)}"
            if not _LINE_KEY_RE.fullmatch(key) or not 1 <= int(key) <= MAX_LINES:
                self.bad(where, f"lines are numbered 1 to {MAX_LINES} (plain digits, no leading zero)")
                continue
            if not _table(body):
                self.bad(where, "a line is a table: number = '...', flow = '...'")
                continue
            number = self._str(body, "number", where, required=True)
            flow = self._str(body, "flow", where, required=True)
            if flow and flow not in flows:
                self.bad(where, f"flow {_show(flow)} is not defined under [flows]")
            for k in body:
                if k not in ("number", "flow"):
                    self.bad(where, f"unknown setting {_show(k)} (a line takes number and flow)")
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
                if node.type == "language" and _table(node.get("options")):
                    langs |= {v for v in node["options"].values() if isinstance(v, str) and v in LANGUAGES}
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
                    self.bad(f"prompts.{_name(name)}", f"no text in {', '.join(LANGUAGES[m] for m in missing)}, "
                             f"which callers of flow {_show(flow.name)} can choose")

    def _str(self, table: dict, key: str, where: str, required: bool = False, limit: int = MAX_NAME_CHARS) -> str:
        v = table.get(key)
        if v is None:
            if required:
                self.bad(where, f"{key} is missing")
            return ""
        if not isinstance(v, str) or not v.strip():
            self.bad(where, f"{key} must be a non-empty string, not {_show(v)}")
            return ""
        if len(v) > limit:
            self.bad(where, f"{key} is {len(v)} characters long: at most {limit}")
            return ""
        bad = _bad_chars(v)
        if bad:
            self.bad(where, f"{key} contains the control character {bad}: remove it")
            return ""
        return v

    def _prompts(self, table: dict) -> dict[str, Prompt]:
        out = {}
        for name, body in table.items():
            where = f"prompts.{_name(name)}"
            if not _table(body):
                self.bad(where, "a prompt is a table of texts by language (en = '...') or wav = 'file.wav'")
                continue
            wav = None
            texts = {}
            for key, value in body.items():
                if key == "wav":
                    rel = self._str(body, "wav", where, limit=4096)
                    if rel:
                        wav = (self.path.parent / rel).resolve()
                        if not wav.is_file():
                            self.bad(where, f"WAV file {wav} does not exist")
                elif key in LANGUAGES:
                    if not isinstance(value, str) or not value.strip():
                        self.bad(where, f"the {LANGUAGES[key]} text must be a non-empty string")
                    elif len(value) > MAX_PROMPT_CHARS:
                        self.bad(where, f"the {LANGUAGES[key]} text is {len(value)} characters long: a prompt "
                                 f"has at most {MAX_PROMPT_CHARS}; split it, or record it as a WAV file")
                    elif bad := _bad_chars(value, allow="\n\t"):
                        self.bad(where, f"the {LANGUAGES[key]} text contains the control character {bad}: "
                                 "remove it")
                    else:
                        texts[key] = value
                else:
                    self.bad(where, f"unknown key {_show(key)}: use a language ({', '.join(LANGUAGES)}) or wav")
            if wav is None and not texts and not any(k in body for k in ("wav", *LANGUAGES)):
                self.bad(where, "no text and no wav: the prompt would be silent")
            out[name] = Prompt(name, texts, wav)
        return out

    def _flow(self, name: str, body: Any, prompts: dict[str, Prompt]) -> Flow | None:
        where = f"flows.{_name(name)}"
        if not _table(body):
            self.bad(where, "a flow is a table with start and nodes")
            return None
        for key in body:
            if key not in ("start", "nodes"):
                self.bad(where, f"unknown setting {_show(key)} (a flow takes start and nodes)")
        start = body.get("start")
        raw_nodes = body.get("nodes", {})
        if not _table(raw_nodes):
            self.bad(where, f"nodes must be a table of nodes ([{where}.nodes.NAME]), not {_show(raw_nodes)}")
            return None
        if not raw_nodes:
            self.bad(where, "the flow has no nodes")
            return None
        nodes: dict[str, FlowNode] = {}
        for nname, nbody in raw_nodes.items():
            nwhere = f"{where}.nodes.{_name(nname)}"
            if not _table(nbody) or "type" not in nbody:
                self.bad(nwhere, f"a node is a table with a type: one of {', '.join(NODE_TYPES)}")
                continue
            ntype = nbody["type"]
            spec = NODE_TYPES.get(ntype) if isinstance(ntype, str) else None
            if spec is None:
                self.bad(nwhere, f"unknown node type {_show(ntype)}: use one of {', '.join(NODE_TYPES)}")
                continue
            fields = {k: v for k, v in nbody.items() if k != "type"}
            for key in fields:
                if key not in spec:
                    self.bad(nwhere, f"{ntype} nodes have no setting {_show(key)} (they take: {', '.join(spec)})")
            for key, (kind, required) in spec.items():
                if key not in fields:
                    if required:
                        self.bad(nwhere, f"{key} is missing")
                    continue
                self._check_value(nwhere, key, kind, fields[key], raw_nodes, prompts)
            if ntype == "collect":
                lo, hi = fields.get("min_digits", 1), fields.get("max_digits", 20)
                if _whole(lo) and _whole(hi) and lo > hi:
                    self.bad(nwhere, f"min_digits ({lo}) is more than max_digits ({hi}): no entry could pass")
            nodes[nname] = FlowNode(nname, ntype, fields)
        if not isinstance(start, str) or start not in raw_nodes:
            self.bad(where, f"start {_show(start)} is not a node of this flow" if start is not None
                     else "start is missing")
            return Flow(name, str(start), nodes)
        self._graph(where, start, nodes)
        return Flow(name, start, nodes)

    def _check_value(self, where: str, key: str, kind: str, value: Any, nodes: dict, prompts: dict) -> None:
        def node_ref(v: Any, what: str) -> None:
            if not isinstance(v, str) or v not in nodes:
                self.bad(where, f"{what} goes to {_show(v)}, which is not a node of this flow")

        def prompt_ref(v: Any, what: str) -> None:
            if not isinstance(v, str) or v not in prompts:
                self.bad(where, f"{what} uses prompt {_show(v)}, which is not defined under [prompts]")

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
            lo, hi = BOUNDS.get(key, (0, 2**31 - 1))
            if not _whole(value) or not lo <= value <= hi:
                self.bad(where, f"{key} must be a whole number from {lo} to {hi}, not {_show(value)}")
        elif kind == "str":
            if not isinstance(value, str) or not value:
                self.bad(where, f"{key} must be a non-empty string, not {_show(value)}")
            elif key == "terminator" and value not in DIGIT_KEYS:
                self.bad(where, f"terminator {_show(value)} is not a key: use one of 0-9 * #")
            elif key in ("store_as", "kind") and not _IDENT_RE.fullmatch(value):
                self.bad(where, f"{key} {_show(value)} must be a lower-case name (a-z, 0-9, _; at most 32): "
                         "it names the stored value or file")
            elif len(value) > MAX_NAME_CHARS or _bad_chars(value):
                self.bad(where, f"{key} must be at most {MAX_NAME_CHARS} printable characters")
        elif kind in ("keymap", "langmap"):
            if not _table(value) or not value:
                self.bad(where, f"{key} must be a table of key = target")
                return
            for k, v in value.items():
                if k not in DIGIT_KEYS:
                    self.bad(where, f"option {_show(k)} is not a phone key (0-9, * or #)")
                if kind == "keymap":
                    node_ref(v, f"option {_show(k)}")
                elif not isinstance(v, str) or v not in LANGUAGES:
                    self.bad(where, f"option {_show(k)} selects language {_show(v)}: use one of {', '.join(LANGUAGES)}")
        elif kind == "hours":
            if not _table(value):
                self.bad(where, "hours must be a table like mon = '09:00-17:00'")
                return
            if not value:
                self.bad(where, "hours names no day: the branch would never be open (give at least one day)")
            for day, span in value.items():
                if day not in DAYS:
                    self.bad(where, f"hours: {_show(day)} is not a day ({', '.join(DAYS)})")
                elif not isinstance(span, str):
                    self.bad(where, f"hours.{day}: {_show(span)} is not a range like '09:00-17:30'")
                else:
                    try:
                        parse_span(span)
                    except ValueError as exc:
                        self.bad(where, f"hours.{day}: {exc}")
        elif kind == "dates":
            if not isinstance(value, list):
                self.bad(where, f"{key} must be a list of dates like '2026-10-01'")
                return
            for d in value:
                try:
                    if not isinstance(d, str):
                        raise ValueError(f"{_show(d)} is not a date like '2026-10-01'")
                    parse_holiday(d)
                except ValueError as exc:
                    self.bad(where, f"{key}: {exc}")

    @staticmethod
    def _edges(node: FlowNode) -> list[str]:
        out = []
        for key, (kind, _req) in NODE_TYPES[node.type].items():
            v = node.fields.get(key)
            if kind == "node" and isinstance(v, str):
                out.append(v)
            elif kind == "keymap" and _table(v):
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
                self.bad(f"{where}.nodes.{_name(n)}", f"no call can reach this node from start {_show(start)}: "
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
            self.bad(f"{where}.nodes.{_name(n)}", "a loop with no exit: every path from this node comes back "
                     "without reaching a hangup or transfer node; give it a way out")


def card_problem(url: str) -> str | None:
    """What is wrong with a card URL (for the configuration and ``nodectl run --card``), or None."""
    try:
        hal.open(url)  # builds the board object only: the HAL's own rule for which URLs it serves
    except ValueError as exc:
        return f"card: {exc}"
    if url.startswith(("socket://", "rfc2217://")):
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if not host or port is None or not 1 <= port <= 65535:
            return f"card {_show(url)}: a network card URL needs a host and a port 1-65535, like socket://127.0.0.1:7000"
    return None
