"""Business hours of a ``schedule`` node: is the branch open at a given moment?

A day's span is ``"HH:MM-HH:MM"``. One whose end is not after its start runs past midnight: a night
shift ``fri = "22:00-06:00"`` is open from Friday 22:00 to Saturday 06:00. ``"00:00-24:00"`` is the
whole day. A holiday closes the spans that *start* on it (a night shift begun the evening before
still ends as planned).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN_RE = re.compile(r"((?:[01]\d|2[0-3]):[0-5]\d)-((?:[01]\d|2[0-3]):[0-5]\d|24:00)")


@dataclass(frozen=True)
class Span:
    start: int  # minutes after midnight
    end: int  # minutes after midnight (1440 = midnight at the end); <= start: past midnight

    @property
    def overnight(self) -> bool:
        return self.end <= self.start


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def parse_span(text: str) -> Span:
    """``"09:00-17:30"`` -> Span; ValueError saying what is wrong."""
    m = _SPAN_RE.fullmatch(text)
    if not m:
        raise ValueError(f"{text!r} is not a range like '09:00-17:30' (24-hour clock; '22:00-06:00' runs "
                         "past midnight; '00:00-24:00' is the whole day)")
    span = Span(_minutes(m.group(1)), _minutes(m.group(2)))
    if span.start == span.end:
        raise ValueError(f"{text!r} is empty (it starts when it ends): for the whole day write '00:00-24:00'")
    return span


def parse_holiday(text: str) -> date:
    """``"2026-10-01"`` -> date; ValueError saying what is wrong."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(f"{text!r} is not a date like '2026-10-01'")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date of the calendar (month 01-12, a day the month has)") from None


def is_open(hours: dict[str, str], holidays: list[str], now: datetime) -> bool:
    """Whether a schedule with these (checked) hours and holidays is open at ``now``."""
    minute = now.hour * 60 + now.minute
    off = set(holidays)
    today, yesterday = now.date(), now.date() - timedelta(days=1)
    span = hours.get(DAYS[today.weekday()])
    if span and today.isoformat() not in off:
        s = parse_span(span)
        if s.start <= minute < (1440 if s.overnight else s.end):
            return True
    span = hours.get(DAYS[yesterday.weekday()])
    if span and yesterday.isoformat() not in off:
        s = parse_span(span)
        if s.overnight and minute < s.end:
            return True
    return False
