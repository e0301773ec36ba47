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
    ANSWER: ClassVar[tuple[str, ...]] = ()  # the message types that answer it (an error answers a bad one)

    def check(self) -> None:
        """Values a type alone cannot rule out (a name not allowed, a digit string where none may
        be): raises ProtocolError. Run on every message parsed and every message sent."""

    def to_json(self) -> str:
        self.check()  # a message this end may not send never leaves it
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
    ANSWER: ClassVar[tuple[str, ...]] = ("welcome",)
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
    ANSWER: ClassVar[tuple[str, ...]] = ("heartbeat_ack",)
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
    ANSWER: ClassVar[tuple[str, ...]] = ("ack",)
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


# -- a forwarded call, live (never through the outbox: a waiting caller cannot wait for a replay) ----
# Digits a caller keyed never travel here: a capture's progress is a count. The one exception the
# design asks for is the account id of a caller who is verified (or whose account is locked), for
# the agent's screen; a PIN, or an entry that named no account, has no field at all.
AUTH_STATES = ("none", "verified", "failed")
REFUSALS = ("no_agents", "full", "closed")  # why HQ does not queue a call (docs/central-link.md)
LEAVE_REASONS = ("caller_hangup", "callback", "timeout")
ENDED_BY = ("caller", "agent", "node")
CAPTURE_FIELDS = ("account", "pin")
CAPTURE_STATES = ("started", "prompting", "keying", "checking", "invalid", "done")
OUTCOMES = ("verified", "failed", "locked", "cancelled", "unavailable")
WITH_ACCOUNT = ("verified", "locked")  # the states / outcomes that may name the account
MAX_SDP = 64 * 1024
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,79}")  # call and capture ids (made by the node / HQ)
_AGENT_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")
_ACCOUNT_RE = re.compile(r"[0-9A-Za-z:_-]{1,40}")
_DIGIT_RUN = re.compile(r"\d{4,}")  # the shortest PIN: free text never holds this many digits in a row


def _one_of(value: str, allowed: tuple[str, ...], where: str) -> None:
    if value not in allowed:
        raise ProtocolError("bad_field", f"{where} {_show(value)} is not one of {', '.join(allowed)}",
                            where.split(".")[0])


def _matches(value: str, pattern: re.Pattern, where: str, what: str) -> None:
    if not pattern.fullmatch(value):
        raise ProtocolError("bad_field", f"{where} ({_show(value)}) must be {what}", where.split(".")[0])


def _id(value: str, where: str) -> None:
    _matches(value, _ID_RE, where, "1 to 80 letters, digits, '.', '_', ':' or '-'")


def _free_text(value: str, where: str, limit: int = 200) -> None:
    """A reason in words: short, and never a run of digits (one could be a PIN)."""
    if len(value) > limit or _DIGIT_RUN.search(value):
        raise ProtocolError("bad_field", f"{where} must be at most {limit} characters with no 4 digits in a row "
                            f"(it is {_show(value)})", where.split(".")[0])


def _account(value: str, state: str, where: str) -> None:
    if state not in WITH_ACCOUNT and value:
        raise ProtocolError("bad_field", f"{where} must be empty unless the caller is {' or '.join(WITH_ACCOUNT)}: "
                            "what a caller keyed travels only once it named a real account", where.split(".")[0])
    if value:
        _matches(value, _ACCOUNT_RE, where, "an account id")


@dataclass(frozen=True)
class QueueCall(Message):
    """A caller asked for an agent: queue the call. ``call`` is the node's id of the call; the
    account and its class only when ``auth`` is "verified" (else empty)."""
    TYPE: ClassVar[str] = "queue_call"
    SENDER: ClassVar[str] = "node"
    ANSWER: ClassVar[tuple[str, ...]] = ("queued", "queue_refused")
    call: str
    line: int
    caller: str
    ivr_path: list[str] = field(default_factory=list)
    language: str = ""
    auth: str = "none"
    account: str = ""
    account_class: str = ""

    def check(self) -> None:
        _id(self.call, "queue_call.call")
        _one_of(self.auth, AUTH_STATES, "queue_call.auth")
        _account(self.account, self.auth, "queue_call.account")
        if self.auth != "verified" and self.account_class:
            raise ProtocolError("bad_field", "queue_call.account_class must be empty unless the caller is verified",
                                "queue_call")
        if len(self.caller) > 32 or len(self.ivr_path) > 200 or len(self.language) > 16:
            raise ProtocolError("bad_field", "queue_call: caller (32), ivr_path (200 nodes) or language (16) too long",
                                "queue_call")


@dataclass(frozen=True)
class Queued(Message):
    """HQ queued the call: it is number ``position`` in line (1 = next)."""
    TYPE: ClassVar[str] = "queued"
    SENDER: ClassVar[str] = "hq"
    call: str
    position: int


@dataclass(frozen=True)
class QueueRefused(Message):
    """HQ did not queue the call (``reason``: one of REFUSALS): the node takes the transfer's fallback."""
    TYPE: ClassVar[str] = "queue_refused"
    SENDER: ClassVar[str] = "hq"
    call: str
    reason: str

    def check(self) -> None:
        _one_of(self.reason, REFUSALS, "queue_refused.reason")


@dataclass(frozen=True)
class QueuePosition(Message):
    """The waiting call's place in line changed (0: an agent is being offered it)."""
    TYPE: ClassVar[str] = "queue_position"
    SENDER: ClassVar[str] = "hq"
    call: str
    position: int


@dataclass(frozen=True)
class QueueLeave(Message):
    """The waiting call leaves the queue (``reason``: one of LEAVE_REASONS)."""
    TYPE: ClassVar[str] = "queue_leave"
    SENDER: ClassVar[str] = "node"
    call: str
    reason: str

    def check(self) -> None:
        _one_of(self.reason, LEAVE_REASONS, "queue_leave.reason")


@dataclass(frozen=True)
class Connect(Message):
    """An agent took the call: its browser's WebRTC offer."""
    TYPE: ClassVar[str] = "connect"
    SENDER: ClassVar[str] = "hq"
    ANSWER: ClassVar[tuple[str, ...]] = ("media_answer", "connect_failed")
    call: str
    agent: str
    sdp: str

    def check(self) -> None:
        _id(self.call, "connect.call")
        _matches(self.agent, _AGENT_RE, "connect.agent", "an agent's name")
        if len(self.sdp) > MAX_SDP:
            raise ProtocolError("bad_field", f"connect.sdp is longer than {MAX_SDP} characters", "connect")


@dataclass(frozen=True)
class MediaAnswer(Message):
    """The node's WebRTC answer: the call is talking."""
    TYPE: ClassVar[str] = "media_answer"
    SENDER: ClassVar[str] = "node"
    call: str
    sdp: str

    def check(self) -> None:
        if len(self.sdp) > MAX_SDP:
            raise ProtocolError("bad_field", f"media_answer.sdp is longer than {MAX_SDP} characters", "media_answer")


@dataclass(frozen=True)
class ConnectFailed(Message):
    """The node cannot connect the call (it is gone, or the offer cannot be used): why, in words."""
    TYPE: ClassVar[str] = "connect_failed"
    SENDER: ClassVar[str] = "node"
    call: str
    reason: str

    def check(self) -> None:
        _free_text(self.reason, "connect_failed.reason")


@dataclass(frozen=True)
class HangUp(Message):
    """The agent hung up: the node ends the caller's leg."""
    TYPE: ClassVar[str] = "hang_up"
    SENDER: ClassVar[str] = "hq"
    ANSWER: ClassVar[tuple[str, ...]] = ("call_ended",)
    call: str


@dataclass(frozen=True)
class CallEnded(Message):
    """The call is over at the node (``by``: caller, agent or node; ``reason`` in words)."""
    TYPE: ClassVar[str] = "call_ended"
    SENDER: ClassVar[str] = "node"
    call: str
    by: str
    reason: str = ""

    def check(self) -> None:
        _one_of(self.by, ENDED_BY, "call_ended.by")
        _free_text(self.reason, "call_ended.reason")


@dataclass(frozen=True)
class Verify(Message):
    """Start secure capture ``capture`` of ``fields`` (CAPTURE_FIELDS) on the call."""
    TYPE: ClassVar[str] = "verify"
    SENDER: ClassVar[str] = "hq"
    ANSWER: ClassVar[tuple[str, ...]] = ("verify_progress", "verify_result")
    call: str
    capture: str
    fields: list[str] = field(default_factory=lambda: list(CAPTURE_FIELDS))

    def check(self) -> None:
        _id(self.capture, "verify.capture")
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise ProtocolError("bad_field", "verify.fields must name each field at most once, and at least one",
                                "verify")
        for i, f in enumerate(self.fields):
            _one_of(f, CAPTURE_FIELDS, f"verify.fields[{i}]")


@dataclass(frozen=True)
class VerifyCancel(Message):
    """The agent cancelled the capture: stop it and restore the audio."""
    TYPE: ClassVar[str] = "verify_cancel"
    SENDER: ClassVar[str] = "hq"
    ANSWER: ClassVar[tuple[str, ...]] = ("verify_result",)
    call: str
    capture: str


@dataclass(frozen=True)
class VerifyAgain(Message):
    """The agent asks for one field again."""
    TYPE: ClassVar[str] = "verify_again"
    SENDER: ClassVar[str] = "hq"
    ANSWER: ClassVar[tuple[str, ...]] = ("verify_progress",)
    call: str
    capture: str
    field: str

    def check(self) -> None:
        _one_of(self.field, CAPTURE_FIELDS, "verify_again.field")


@dataclass(frozen=True)
class VerifyProgress(Message):
    """Where a capture is: the field asked for, how many keys the caller pressed in it (a count:
    never the keys), and its state (CAPTURE_STATES)."""
    TYPE: ClassVar[str] = "verify_progress"
    SENDER: ClassVar[str] = "node"
    call: str
    capture: str
    field: str
    keyed: int
    state: str

    def check(self) -> None:
        _one_of(self.field, CAPTURE_FIELDS, "verify_progress.field")
        _one_of(self.state, CAPTURE_STATES, "verify_progress.state")
        if not 0 <= self.keyed <= 64:
            raise ProtocolError("bad_field", "verify_progress.keyed must be a count from 0 to 64", "verify_progress")


@dataclass(frozen=True)
class VerifyResult(Message):
    """How a capture ended (OUTCOMES); the account only when verified or locked."""
    TYPE: ClassVar[str] = "verify_result"
    SENDER: ClassVar[str] = "node"
    call: str
    capture: str
    outcome: str
    account: str = ""

    def check(self) -> None:
        _one_of(self.outcome, OUTCOMES, "verify_result.outcome")
        _account(self.account, self.outcome, "verify_result.account")


LIVE: tuple[type[Message], ...] = (QueueCall, Queued, QueueRefused, QueuePosition, QueueLeave, Connect, MediaAnswer,
                                   ConnectFailed, HangUp, CallEnded, Verify, VerifyCancel, VerifyAgain,
                                   VerifyProgress, VerifyResult)
MESSAGES: dict[str, type[Message]] = {m.TYPE: m for m in (Hello, Welcome, Heartbeat, HeartbeatAck, OutboxItem,
                                                          Ack, Error, *LIVE)}


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
