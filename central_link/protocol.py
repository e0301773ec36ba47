"""The node <-> HQ messages: versioned JSON, one schema (the dataclasses below), one text frame each.

Every message is an object ``{"v": VERSION, "type": NAME, ...fields}``. :func:`parse` turns a frame
into its dataclass or raises :class:`ProtocolError` whose ``code`` and ``detail`` say what was wrong
(the receiver answers it with an :class:`Error` and keeps the connection). ``to_json`` is the
inverse; ``parse(m.to_json()) == m`` for every message. ``docs/central-link.md`` has the table of
messages, who sends each and what answers it (a test holds the two together).
"""

from __future__ import annotations

import json
import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar, Union

VERSION = 1
MAX_FRAME = 256 * 1024  # a call record is a kilobyte; a bigger frame is answered with an error, unread
MAX_WS_MESSAGE = 4 * 1024 * 1024  # past this the WebSocket layer itself closes the connection (1009)
NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # also the certificate's CN
# what a node's outbox holds (node_agent's Store.enqueue kinds)
OUTBOX_KINDS = ("call_record", "auth_event", "alarm", "alarm_cleared", "recording", "callback")
ERROR_CODES = ("malformed", "unknown_version", "unknown_type", "bad_field", "unexpected")


class ProtocolError(ValueError):
    """A frame that is not a valid message: ``code`` (one of ERROR_CODES) and what was wrong."""

    def __init__(self, code: str, detail: str, about: str = "") -> None:
        self.code, self.detail, self.about = code, detail, about
        super().__init__(f"{code}: {detail}")


@dataclass(frozen=True)
class Message:
    TYPE: ClassVar[str] = ""
    SENDER: ClassVar[str] = ""  # "node", "hq" or "both" (docs/central-link.md)
    ANSWER: ClassVar[str] = ""  # the message type that answers it ('' none; an error answers a bad one)

    def to_json(self) -> str:
        return json.dumps({"v": VERSION, "type": self.TYPE, **asdict(self)}, ensure_ascii=False,
                          separators=(",", ":"))


@dataclass(frozen=True)
class LineState:
    """One line of the node and what it is doing (``idle``, ``ringing``, ``ivr`` …, as the node names it)."""
    line: int
    number: str
    state: str


@dataclass(frozen=True)
class Hello(Message):
    """The node's first message on a connection: who it is, what it runs, its lines."""
    TYPE: ClassVar[str] = "hello"
    SENDER: ClassVar[str] = "node"
    ANSWER: ClassVar[str] = "welcome"
    node: str
    software: str
    firmware: str
    lines: list[LineState] = field(default_factory=list)


@dataclass(frozen=True)
class Welcome(Message):
    """HQ took the hello: the node is registered; send heartbeats this often."""
    TYPE: ClassVar[str] = "welcome"
    SENDER: ClassVar[str] = "hq"
    hub: str
    heartbeat_s: float


@dataclass(frozen=True)
class Heartbeat(Message):
    """The node is alive; its lines as they are now (the registry keeps them)."""
    TYPE: ClassVar[str] = "heartbeat"
    SENDER: ClassVar[str] = "node"
    ANSWER: ClassVar[str] = "heartbeat_ack"
    seq: int
    lines: list[LineState] = field(default_factory=list)


@dataclass(frozen=True)
class HeartbeatAck(Message):
    """HQ is alive: the answer to the heartbeat ``seq``."""
    TYPE: ClassVar[str] = "heartbeat_ack"
    SENDER: ClassVar[str] = "hq"
    seq: int


@dataclass(frozen=True)
class OutboxItem(Message):
    """One item of the node's outbox; ``key`` is its idempotency key (the same item always has it)."""
    TYPE: ClassVar[str] = "outbox"
    SENDER: ClassVar[str] = "node"
    ANSWER: ClassVar[str] = "ack"
    key: str
    kind: str
    payload: dict[str, Any]

    def check(self) -> None:
        if self.kind not in OUTBOX_KINDS:
            raise ProtocolError("bad_field", f"kind {_show(self.kind)} is not one of {', '.join(OUTBOX_KINDS)}",
                                "outbox")
        if not self.key or len(self.key) > 200:
            raise ProtocolError("bad_field", "key must be 1 to 200 characters", "outbox")


@dataclass(frozen=True)
class Ack(Message):
    """HQ has applied (now or before) the outbox item ``key``: the node may drop it."""
    TYPE: ClassVar[str] = "ack"
    SENDER: ClassVar[str] = "hq"
    key: str


@dataclass(frozen=True)
class Error(Message):
    """What was wrong with a message received (``about``: its type, or '' when it had none)."""
    TYPE: ClassVar[str] = "error"
    SENDER: ClassVar[str] = "both"
    code: str
    detail: str
    about: str = ""

    @classmethod
    def of(cls, exc: ProtocolError) -> Error:
        return cls(exc.code, exc.detail, exc.about)


MESSAGES: dict[str, type[Message]] = {m.TYPE: m for m in (Hello, Welcome, Heartbeat, HeartbeatAck, OutboxItem,
                                                          Ack, Error)}


def parse(frame: str | bytes) -> Message:
    """One frame -> its message; anything else raises ProtocolError naming what is wrong."""
    if len(frame) > MAX_FRAME:
        raise ProtocolError("malformed", f"frame of {len(frame)} bytes: at most {MAX_FRAME}")
    try:
        raw = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("malformed", f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(raw, dict):
        raise ProtocolError("malformed", f"a message is a JSON object, not {type(raw).__name__}")
    kind = raw.get("type")
    about = kind if isinstance(kind, str) and _SAFE_RE.fullmatch(kind) else ""
    v = raw.get("v")
    if type(v) is not int or v != VERSION:  # 1.0 and true are not the version 1
        raise ProtocolError("unknown_version", f"version {_show(v)} is not spoken here: this end speaks {VERSION}",
                            about)
    cls = MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError("unknown_type", f"type {_show(kind)} is not one of {', '.join(MESSAGES)}", about)
    body = {k: v for k, v in raw.items() if k not in ("v", "type")}
    msg = _build(cls, body, kind)
    if isinstance(msg, OutboxItem):
        msg.check()
    return msg


def _build(cls: type, body: Any, where: str) -> Any:
    if not isinstance(body, dict):
        raise ProtocolError("bad_field", f"{where} must be an object, not {_show(body)}", where.split(".")[0])
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    extra = sorted(set(body) - names)
    if extra:
        raise ProtocolError("bad_field", f"{where}: unknown field {_show(extra[0])}", where.split(".")[0])
    args = {}
    for f in fields(cls):
        if f.name not in body:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ProtocolError("bad_field", f"{where}: {f.name} is missing", where.split(".")[0])
            continue
        args[f.name] = _value(hints[f.name], body[f.name], f"{where}.{f.name}")
    return cls(**args)


def _value(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    top = where.split(".")[0]
    if origin in (Union, types.UnionType):
        raise TypeError("no optional fields in this schema")  # keep every field's type one thing
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ProtocolError("bad_field", f"{where} must be a list, not {_show(value)}", top)
        return [_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError("bad_field", f"{where} must be an object, not {_show(value)}", top)
        return value
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return _build(hint, value, where)
    ok = {str: isinstance(value, str), float: isinstance(value, int | float) and not isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool)}[hint]
    if not ok:
        raise ProtocolError("bad_field", f"{where} must be {hint.__name__}, not {_show(value)}", top)
    return float(value) if hint is float else value


def _show(value: Any) -> str:
    """A received value as an error names it. Only what cannot be a secret is echoed (null, true /
    false, a small version number, a short name that is not all digits); anything else is described,
    so that no digits a caller keyed could ever travel back in an error or land in a log."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int) and 0 <= value < 1000:
        return str(value)
    if isinstance(value, str) and _SAFE_RE.fullmatch(value) and not value.isdigit():
        return json.dumps(value)
    if isinstance(value, str):
        return f"a string of {len(value)} character{'s' if len(value) != 1 else ''}"
    return {int: "a number", float: "a number", list: "a list", dict: "an object"}.get(type(value), "a value")


_SAFE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
