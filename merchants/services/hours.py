"""Opening hours: parsing what the owner types, and the one "is the store open now?" rule
(channel codes' auto-accept and enrolment both ask it)."""
from __future__ import annotations

import re
from datetime import datetime, time

from flask_babel import lazy_gettext as _l

from core.localtime import WEEKDAYS, hhmm, local
from merchants.errors import ServiceError

_RANGE_RE = re.compile(r"^(\d{1,2}):(\d{2})\s*[-–~至]\s*(\d{1,2}):(\d{2})$")


def _minutes(hour: str, minute: str) -> int:
    h, m = int(hour), int(minute)
    if m > 59 or h > 24 or (h == 24 and m):
        raise ValueError
    return h * 60 + m


def parse_hour_ranges(text: str) -> list[list[str]]:
    """"11:00-14:00,17:00-21:30" → [["11:00","14:00"],["17:00","21:30"]] (sorted, no
    overlaps, each start before its end; "24:00" closes at midnight)."""
    spans: list[tuple[int, int]] = []
    for part in re.split(r"[,，;；\s]+", (text or "").strip()):
        if not part:
            continue
        match = _RANGE_RE.match(part)
        try:
            if not match:
                raise ValueError
            start, end = _minutes(*match.group(1, 2)), _minutes(*match.group(3, 4))
        except ValueError:
            raise ServiceError(_l("营业时间格式应为 11:00-14:00,17:00-21:30。"), "hours") from None
        if start >= end:
            raise ServiceError(_l("营业时间的开始须早于结束（跨午夜请拆成两段）。"), "hours")
        spans.append((start, end))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        if start < end:
            raise ServiceError(_l("营业时间段不能重叠。"), "hours")
    return [[hhmm(s), hhmm(e)] for s, e in spans]


def build_opening_hours(groups: list[tuple[list[str], str]]) -> dict[str, list[list[str]]]:
    """Weekday groups with one range text each → ``{"mon": [["11:00","14:00"], ...], ...}``.
    A day named twice is refused; no groups at all means "always open" (``{}``)."""
    hours: dict[str, list[list[str]]] = {}
    for days, ranges_text in groups:
        days = [d for d in days if d]
        if not days and not (ranges_text or "").strip():
            continue
        if not days:
            raise ServiceError(_l("请选择这段营业时间适用的星期。"), "hours")
        ranges = parse_hour_ranges(ranges_text)
        if not ranges:
            raise ServiceError(_l("请填写营业时间。"), "hours")
        for day in days:
            if day not in WEEKDAYS:
                raise ServiceError(_l("星期不正确。"), "hours")
            if day in hours:
                raise ServiceError(_l("同一天只能出现在一组营业时间里。"), "hours")
            hours[day] = ranges
    return {d: hours[d] for d in WEEKDAYS if d in hours}


def _hm(text: str) -> time:
    h, m = text.split(":")
    h, m = int(h), int(m)
    return time.max if (h, m) == (24, 0) else time(h, m)


def is_open(opening_hours: dict | None, now: datetime) -> bool:
    """Whether ``now`` (aware) falls in the store's hours, local time (empty hours = always
    open).

    Ranges such as ["17:00", "02:00"] run past midnight: the early-morning part belongs to
    the previous day's entry.
    """
    if not opening_hours:
        return True
    here = local(now)
    t = here.time()
    today = WEEKDAYS[here.weekday()]
    yesterday = WEEKDAYS[(here.weekday() - 1) % 7]
    for start, end in opening_hours.get(today, []):
        s, e = _hm(start), _hm(end)
        if (s <= t < e) if s < e else (t >= s):
            return True
    for start, end in opening_hours.get(yesterday, []):
        s, e = _hm(start), _hm(end)
        if e < s and t < e:
            return True
    return False


is_open_at = is_open  # the enrolment side's name for the same rule
