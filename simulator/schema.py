"""What the control port accepts, defined once: per op, its fields, their types and ranges.

:func:`parse` turns one request line into a JSON object (bounded in size and nesting, UTF-8,
no number the validator cannot name); :func:`validate` checks it against :data:`OPS` and gives
the op and its arguments with every default filled in. Nothing reaches the card or its lines
before it has passed both, so a bad request gets an answer that names the field and its range,
and neither the connection nor the card notices. ``docs/simulator.md`` lists the same bounds.
"""

from __future__ import annotations

import abc
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from drivers.dsp.callerid import STANDARDS as CID_MODES
from drivers.dsp.dtmf import DIGITS

from .pstn import HANGUP_MODES, RING_CADENCES

MAX_REQUEST_BYTES = 128 * 1024  # one request line, newline included
MAX_DEPTH = 4  # nesting of objects and lists (the deepest request needs 2)
MAX_TEXT = 5000  # characters to speak: minutes of speech (Mandarin ~3 characters a second)
MAX_AUDIO_MS = 600_000  # audio one request may send or listen to: 10 minutes
MAX_QUEUED_MS = 1_200_000  # audio waiting to be sent on one line (sends with wait: false add up)
MAX_WAIT_MS = 3_600_000  # the longest a request may wait for something
MAX_WAV_BYTES = 256 << 20  # a WAV to play, or the prompts of a listen: 10 min at 48 kHz stereo float is 230 MB
MAX_PROMPTS = 128  # prompts one listen may spot (the demo branch has 18 in 3 languages)
MAX_PATH = 1024
MAX_DIGITS = 1000
MAX_NUMBER_DIGITS = 20  # a JSON integer longer than this is refused before Python converts it
RING_ON_MS = (100, 3000)  # the card needs 40 ms of ring voltage to see a ring
RING_OFF_MS = (200, 6000)  # the card takes a gap over 6.5 s for the caller giving up


class RequestError(ValueError):
    """A request the control port refuses; ``field`` names what was wrong (``request``: all of it)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field


@dataclass(frozen=True)
class Context:
    channels: int  # lines of the card: line numbers are 1..channels


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # a field left out stays out of the arguments (e.g. ``impair``: unchanged)


@dataclass(frozen=True)
class Huge:
    """A JSON integer too long to convert (Python refuses over 4300 digits, and slowly)."""

    digits: int


def _show(v: Any) -> str:
    if isinstance(v, Huge):
        return f"a {v.digits}-digit number"
    try:
        s = json.dumps(v, ensure_ascii=False, default=str)
    except ValueError:
        s = repr(v)
    return s if len(s) <= 60 else s[:50] + f"... ({len(s)} characters)"


def _n(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# -- field types ------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Field(abc.ABC):
    default: Any = MISSING  # MISSING: a field left out stays out (or, if required, is refused)
    required: bool = False
    note: str = ""  # what the default, or the field, means (for the listing)

    @abc.abstractmethod
    def describe(self) -> str:
        """What a valid value is, for errors and the listing."""

    @abc.abstractmethod
    def check(self, v: Any, name: str, ctx: Context) -> Any:
        """``v`` as the op uses it, or raise :class:`RequestError` naming ``name``."""

    def refuse(self, v: Any, name: str) -> RequestError:
        return RequestError(name, f"must be {self.describe()}, not {_show(v)}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True, kw_only=True)
class Num(Field):
    lo: float
    hi: float
    unit: str = ""

    def describe(self) -> str:
        return f"a number from {_n(self.lo)} to {_n(self.hi)}{self.unit}"

    def check(self, v, name, ctx):
        if not _number(v) or not math.isfinite(v) or not self.lo <= v <= self.hi:
            raise self.refuse(v, name)
        return float(v)


@dataclass(frozen=True, kw_only=True)
class Int(Field):
    lo: int
    hi: int
    unit: str = ""

    def describe(self) -> str:
        return f"a whole number from {self.lo} to {self.hi}{self.unit}"

    def check(self, v, name, ctx):
        if not _number(v) or not math.isfinite(v) or v != int(v) or not self.lo <= v <= self.hi:
            raise self.refuse(v, name)
        return int(v)


@dataclass(frozen=True, kw_only=True)
class LineNo(Field):
    default: Any = 1

    def describe(self, ctx: Context | None = None) -> str:
        return f"a line number from 1 to {ctx.channels if ctx else 'the number of lines of the card'}"

    def check(self, v, name, ctx):
        if not _number(v) or not math.isfinite(v) or v != int(v) or not 1 <= v <= ctx.channels:
            raise RequestError(name, f"must be {self.describe(ctx)}, not {_show(v)}")
        return int(v)


@dataclass(frozen=True, kw_only=True)
class Bool(Field):
    def describe(self) -> str:
        return "true or false"

    def check(self, v, name, ctx):
        if not isinstance(v, bool):
            raise self.refuse(v, name)
        return v


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, kw_only=True)
class Text(Field):
    lo: int = 0
    hi: int
    pattern: str | None = None  # the whole text must match
    what: str | None = None  # says what the pattern allows

    def describe(self) -> str:
        if self.what:
            return self.what
        return f"{self.lo} to {self.hi} characters of text"

    def check(self, v, name, ctx):
        if not isinstance(v, str) or not self.lo <= len(v) <= self.hi:
            raise self.refuse(v, name)
        if self.pattern is not None and not re.fullmatch(self.pattern, v):
            raise self.refuse(v, name)
        if _CONTROL.search(v):
            raise RequestError(name, f"must not hold control characters, as {_show(v)} does")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(name, "must be Unicode text (it holds a lone surrogate)") from None
        return v


@dataclass(frozen=True, kw_only=True)
class AbsPath(Text):
    hi: int = MAX_PATH

    def describe(self) -> str:
        return f"an absolute file path (up to {self.hi} characters)"

    def check(self, v, name, ctx):
        super().check(v, name, ctx)
        if not v.startswith("/"):
            raise self.refuse(v, name)
        return v


@dataclass(frozen=True, kw_only=True)
class Choice(Field):
    options: tuple[str, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)

    def check(self, v, name, ctx):
        if not isinstance(v, str) or v not in self.options:
            raise self.refuse(v, name)
        return v


@dataclass(frozen=True, kw_only=True)
class Nullable(Field):
    inner: Field

    def describe(self) -> str:
        return f"null or {self.inner.describe()}"

    def check(self, v, name, ctx):
        return None if v is None else self.inner.check(v, name, ctx)


@dataclass(frozen=True, kw_only=True)
class Cadence(Field):
    """A ring cadence by name, or ``[on_ms, off_ms]``; None: the card's country."""

    default: Any = None

    def describe(self) -> str:
        names = ", ".join(repr(n) for n in RING_CADENCES)
        return (f"{names} or [on_ms, off_ms] with on_ms {RING_ON_MS[0]}..{RING_ON_MS[1]} "
                f"and off_ms {RING_OFF_MS[0]}..{RING_OFF_MS[1]}")

    def check(self, v, name, ctx):
        if v is None:
            return None
        if isinstance(v, str) and v in RING_CADENCES:
            return RING_CADENCES[v]
        if not isinstance(v, list) or len(v) != 2:
            raise self.refuse(v, name)
        on = Int(lo=RING_ON_MS[0], hi=RING_ON_MS[1])
        off = Int(lo=RING_OFF_MS[0], hi=RING_OFF_MS[1])
        try:
            return on.check(v[0], name, ctx), off.check(v[1], name, ctx)
        except RequestError:
            raise self.refuse(v, name) from None


@dataclass(frozen=True, kw_only=True)
class Obj(Field):
    """A JSON object with known fields, each checked (and defaulted) as a request's are; null: None."""

    fields: dict[str, Field]

    def describe(self) -> str:
        return "an object with " + ", ".join(self.fields)

    def check(self, v, name, ctx):
        if v is None:
            return None
        if not isinstance(v, dict):
            raise self.refuse(v, name)
        return _fields(self.fields, v, ctx, prefix=f"{name}.")


@dataclass(frozen=True, kw_only=True)
class Map(Field):
    """A JSON object from names to values, at most ``most`` of them."""

    key: Text
    value: Field
    most: int
    default: Any = None  # {}

    def describe(self) -> str:
        return f"an object of up to {self.most} {{name: {self.value.describe()}}}"

    def check(self, v, name, ctx):
        if v is None:
            return {}
        if not isinstance(v, dict) or len(v) > self.most:
            raise self.refuse(v, name)
        out = {}
        for k, x in v.items():
            try:
                self.key.check(k, name, ctx)
            except RequestError:
                raise RequestError(name, f"has a name that is not {self.key.describe()}: {_show(k)}") from None
            out[k] = self.value.check(x, f"{name}[{k!r}]", ctx)
        return out


def _fields(spec: dict[str, Field], given: dict, ctx: Context, prefix: str = "") -> dict:
    unknown = [k for k in given if k not in spec]
    if unknown:
        known = ", ".join(spec) or "none"
        raise RequestError(f"{prefix}{unknown[0]}", f"is not a field here (the fields are: {known})")
    out = {}
    for k, f in spec.items():
        if k in given:
            out[k] = f.check(given[k], prefix + k, ctx)
        elif f.required:
            raise RequestError(prefix + k, f"is missing: {f.describe()}")
        elif f.default is not MISSING:
            out[k] = f.check(f.default, prefix + k, ctx)  # a fresh value, and proof it is in range
    return out


@dataclass(frozen=True, kw_only=True)
class _Id(Field):
    def describe(self) -> str:
        return "a whole number or a text of up to 64 characters"

    def check(self, v, name, ctx):
        if v is None:
            return None
        try:
            if isinstance(v, str):
                return Text(hi=64).check(v, name, ctx)
            return Int(lo=-(2**53), hi=2**53).check(v, name, ctx)
        except RequestError:
            raise self.refuse(v, name) from None


REQUEST_ID = _Id()


# -- the ops ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    fields: dict[str, Field]
    finish: Callable[[dict], None] | None = None  # checks across fields; may fill in derived ones


LINE = LineNo()
WAIT = {"wait": Bool(default=True), "timeout_ms": Num(lo=0, hi=MAX_WAIT_MS, unit=" ms", default=600_000)}
OFFSET = Num(lo=-0.1, hi=0.1)  # relative frequency error: ±10 % is far past any receiver's limit


def _dtmf(args: dict) -> None:
    for k in ("row_offset", "col_offset"):
        if args[k] is None:
            args[k] = args["freq_offset"]
    del args["freq_offset"]
    ms = len(args["digits"]) * (args["on_ms"] + args["off_ms"])
    if ms > MAX_AUDIO_MS:
        raise RequestError("digits", f"would last {ms / 1000:g} s at on_ms + off_ms each; "
                                     f"send at most {MAX_AUDIO_MS / 1000:g} s in one request")


def _cut(args: dict) -> None:
    at, n = args["at"], args["n"]
    if at in ("flash_op", "image_byte") and n is None:
        raise RequestError("n", f"is missing: cut at {at} needs n ({CUT_N[at]})")
    if at in ("reboot", "trial", "none") and n is not None:
        raise RequestError("n", f"must be left out for cut at {at} (it takes no number)")
    if at == "flash_op" and n < 1:
        raise RequestError("n", f"must be at least 1 for cut at flash_op ({CUT_N[at]}), not {n}")


CUT_N = {"flash_op": "the Nth flash erase or write from now, 1 = the next",
         "image_byte": "the image offset whose byte the cut strikes, 0 = the header's first"}


def _listen(args: dict) -> None:
    until = args["until"]
    if until is not None and until not in args["prompts"]:
        raise RequestError("until", f"must be one of the prompts given, not {_show(until)}")


OPS: dict[str, Op] = {
    "status": Op({}),
    "ring": Op({
        "line": LINE,
        "cid": Obj(fields={
            "number": Text(hi=MAX_NUMBER_DIGITS, pattern=r"[0-9]*", what=f"up to {MAX_NUMBER_DIGITS} digits 0-9",
                           default=""),
            "name": Text(hi=50, default=""),
            "datetime": Text(hi=8, pattern=r"([0-9]{8})?", what="MMDDHHMM (8 digits) or empty", default=""),
            "mode": Choice(options=tuple(CID_MODES), default="bell202"),
        }, default=None, note="null: no caller ID"),
        "cadence": Cadence(note="null: the card's country"),
        "max_rings": Int(lo=0, hi=100, default=0),
        "wait_answer": Bool(default=True),
        "timeout_ms": Num(lo=0, hi=MAX_WAIT_MS, unit=" ms", default=30_000),
    }),
    "dtmf": Op({
        "line": LINE,
        "digits": Text(lo=1, hi=MAX_DIGITS, pattern=f"[{re.escape(DIGITS + DIGITS.lower())}]*",
                       what=f"1 to {MAX_DIGITS} DTMF digits (0-9 * # A-D)", required=True),
        "on_ms": Int(lo=10, hi=10_000, unit=" ms", default=80),
        "off_ms": Int(lo=0, hi=10_000, unit=" ms", default=80),
        "level_dbm0": Num(lo=-60, hi=3, unit=" dBm0", default=-10.0),
        "twist_db": Num(lo=-20, hi=20, unit=" dB", default=0.0),
        "freq_offset": replace(OFFSET, default=0.0),
        "row_offset": Nullable(inner=OFFSET, default=None, note="null: freq_offset"),
        "col_offset": Nullable(inner=OFFSET, default=None, note="null: freq_offset"),
        **WAIT,
    }, _dtmf),
    "speak": Op({
        "line": LINE,
        "text": Text(lo=1, hi=MAX_TEXT, required=True),
        "voice": Text(lo=1, hi=32, pattern=r"[A-Za-z0-9][A-Za-z0-9_+-]*",
                      what="an espeak-ng voice name (en, cmn, yue, en-us, ...)", default="en"),
        **WAIT,
    }),
    "play": Op({"line": LINE, "wav": AbsPath(lo=2, required=True), **WAIT}),
    "silence": Op({"line": LINE, "ms": Int(lo=0, hi=MAX_AUDIO_MS, unit=" ms", default=1000), **WAIT}),
    "impair": Op({
        "line": LINE,
        "noise_dbm0": Nullable(inner=Num(lo=-90, hi=0, unit=" dBm0"), note="null: no noise; left out: unchanged"),
        "seed": Int(lo=0, hi=2**31 - 1, default=1234),
        "loss_db": Num(lo=0, hi=60, unit=" dB", note="left out: unchanged"),
        "echo_db": Nullable(inner=Num(lo=0, hi=100, unit=" dB"), note="null: no echo; left out: unchanged"),
    }),
    "listen": Op({
        "line": LINE,
        "ms": Num(lo=0, hi=MAX_AUDIO_MS, unit=" ms", default=1000.0),
        "prompts": Map(key=Text(lo=1, hi=64), value=AbsPath(lo=2), most=MAX_PROMPTS, note="null: none"),
        "until": Nullable(inner=Text(lo=1, hi=64), default=None, note="one of the prompts' names"),
    }, _listen),
    "hangup": Op({"line": LINE, "mode": Choice(options=HANGUP_MODES, default="loop_break")}),
    "wait_onhook": Op({"line": LINE, "timeout_ms": Num(lo=0, hi=MAX_WAIT_MS, unit=" ms", default=10_000)}),
    "fault": Op({  # a Python loop per bit error: past 1 % the link is dead and the simulator busy
        "ber": Num(lo=0, hi=0.01, note="both ways"),
        **{k: Num(lo=0, hi=0.01) for k in ("ber_up", "ber_down")},
        **{k: Num(lo=0, hi=0.5) for k in ("drop_up", "drop_down")},
    }),
    "reset_card": Op({}),
    "power": Op({"on": Bool(required=True, note="false: cut the power now; true: power the card up")}),
    "cut": Op({
        "at": Choice(options=("flash_op", "image_byte", "reboot", "trial", "none"), required=True,
                     note="none: disarm"),
        "n": Nullable(inner=Int(lo=0, hi=2**31 - 1), default=None, note="flash_op: " + CUT_N["flash_op"]
                      + "; image_byte: " + CUT_N["image_byte"]),
    }, _cut),
}



# -- parsing and validating ---------------------------------------------------------------------------
_TOKENS = re.compile(r'[][{}"\\]')


def nesting(text: str, most: int = MAX_DEPTH) -> int:
    """How deep ``text`` nests objects and lists (strings skipped); stops counting past ``most``."""
    depth = peak = 0
    in_string = False
    skip = -1
    for m in _TOKENS.finditer(text):
        i, c = m.start(), m.group()
        if i <= skip:
            continue  # an escaped character
        if in_string:
            if c == "\\":
                skip = i + 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            peak = max(peak, depth)
            if peak > most:
                break
        elif c in "]}":
            depth -= 1
    return peak


def _int(s: str) -> int | Huge:
    digits = len(s.lstrip("-"))
    return Huge(digits) if digits > MAX_NUMBER_DIGITS else int(s)


def parse(raw: bytes) -> dict:
    """One request line as a JSON object, or :class:`RequestError` naming ``request``."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise RequestError("request", f"is longer than {MAX_REQUEST_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError("request", f"is not UTF-8 (byte {exc.start} is {raw[exc.start]:#04x})") from None
    if nesting(text) > MAX_DEPTH:
        raise RequestError("request", f"nests objects and lists more than {MAX_DEPTH} deep")
    try:
        # NaN and Infinity become floats the fields refuse by name, as 1e999 (inf) does
        obj = json.loads(text, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise RequestError("request", f"is not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise RequestError("request", f'must be a JSON object {{"op": ...}}, not {_show(obj)}')
    return obj


def request_id(req: dict) -> Any:
    """The request's ``id`` to echo (MISSING if none); :class:`RequestError` if it is not one."""
    if "id" not in req:
        return MISSING
    return REQUEST_ID.check(req["id"], "id", Context(channels=0))


def validate(req: dict, ctx: Context) -> tuple[str, dict]:
    """The op and its arguments, defaults filled in; :class:`RequestError` names the first bad field."""
    op = req.get("op", MISSING)
    if op is MISSING:
        raise RequestError("op", f"is missing: one of {', '.join(OPS)}")
    if not isinstance(op, str) or op not in OPS:
        raise RequestError("op", f"must be one of {', '.join(OPS)}, not {_show(op)}")
    spec = OPS[op]
    args = _fields(spec.fields, {k: v for k, v in req.items() if k not in ("op", "id")}, ctx)
    if spec.finish is not None:
        spec.finish(args)
    return op, args


def takes_line(op: str) -> bool:
    return op in OPS and "line" in OPS[op].fields


def _line(name: str, f: Field) -> str:
    d = f.describe() if not isinstance(f, LineNo) else f.describe(None)
    dflt = "; required" if f.required else "" if f.default is MISSING else f"; default {_show(f.default)}"
    note = f"; {f.note}" if f.note else ""
    return f"  {name}: {d}{dflt}{note}"


def bounds() -> str:
    """Every op's fields and what each accepts (for ``simctl ops`` and the docs)."""
    out = [f"every request: one JSON object a line, at most {MAX_REQUEST_BYTES} bytes, nested at most "
           f"{MAX_DEPTH} deep",
           f"  id: {REQUEST_ID.describe()}, echoed in the answer"]
    for name, op in OPS.items():
        out.append(name + ("" if op.fields else "  (no fields)"))
        for k, f in op.fields.items():
            out.append(_line(k, f))
            if isinstance(f, Obj):
                out.extend(_line(f"{k}.{sub}", g) for sub, g in f.fields.items())
    return "\n".join(out)
