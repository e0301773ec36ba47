"""What a line tells the node. Every event names its line (1-based, as printed on the box)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LineEvent:
    line: int


@dataclass(frozen=True)
class Ring(LineEvent):
    count: int  # rings so far in this call


@dataclass(frozen=True)
class RingEnded(LineEvent):
    count: int
    duration_ms: int


@dataclass(frozen=True)
class CallerIdReceived(LineEvent):
    number: str
    name: str
    datetime: str
    mode: str


@dataclass(frozen=True)
class RingingStopped(LineEvent):
    """The caller gave up before the call was answered (a missed call)."""

    rings: int


@dataclass(frozen=True)
class Answered(LineEvent):
    pass


@dataclass(frozen=True)
class DigitReceived(LineEvent):
    digit: str
    duration_ms: int
    level_dbm0: int


@dataclass(frozen=True)
class HungUp(LineEvent):
    """The far end went away: ``loop_drop`` (loop current gone) or ``busy_tone`` (heard on the line)."""

    reason: str


@dataclass(frozen=True)
class OnHook(LineEvent):
    """We hung up (the card confirmed the hook relay released)."""


@dataclass(frozen=True)
class PolarityReversed(LineEvent):
    polarity: int


@dataclass(frozen=True)
class DialDone(LineEvent):
    digits: int


@dataclass(frozen=True)
class FlashDone(LineEvent):
    ms: int


@dataclass(frozen=True)
class LineDown(LineEvent):
    """The line stopped working mid-call or while idle (card reset, link lost). Any call is gone."""

    reason: str


@dataclass(frozen=True)
class LineUp(LineEvent):
    """The line is usable (again), idle and on-hook."""
