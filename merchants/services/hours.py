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


# A range may run past midnight ("11:00-02:00", a hotpot's late night) when it closes by this
# hour: later than that, "14:00-11:00" is far more likely a slip than a 21-hour day.
LATEST_CLOSE_PAST_MIDNIGHT = 6 * 60
DAY = 24 * 60


def parse_hour_ranges(text: str) -> list[list[str]]:
    """"11:00-14:00,17:00-21:30" → [["11:00","14:00"],["17:00","21:30"]] (sorted, no
    overlaps, each start before its end; "24:00" closes at midnight). A range that closes
    the next morning by 06:00 runs past midnight: "11:00-02:00" stays ["11:00","02:00"]
    (``is_open`` gives its early hours to the day it started), and "22:00-00:00" is
    stored as ["22:00","24:00"]."""
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
        if end == 0 and start > 0:
            end = DAY  # "22:00-00:00" closes at midnight
        if start >= end:
            if start == end or end > LATEST_CLOSE_PAST_MIDNIGHT or start >= DAY:
                raise ServiceError(
                    _l("营业时间的开始须早于结束（跨午夜营业须在次日 06:00 前结束，如 11:00-02:00）。"), "hours"
                )
            end += DAY  # closes the next morning
        spans.append((start, end))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        if start < end:
            raise ServiceError(_l("营业时间段不能重叠。"), "hours")
    return [[hhmm(s), hhmm(e - DAY if e > DAY else e)] for s, e in spans]


def _late_close(ranges: list[list[str]]) -> int:
    """Minutes after midnight that a day's last range runs into the next day (0 if none)."""
    late = 0
    for start, end in ranges:
        s, e = _hm_minutes(start), _hm_minutes(end)
        if e < s:
            late = max(late, e)
    return late


def _hm_minutes(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


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
    for i, day in enumerate(WEEKDAYS):
        late, following = _late_close(hours.get(day, [])), hours.get(WEEKDAYS[(i + 1) % 7], [])
        if late and following and _hm_minutes(following[0][0]) < late:
            raise ServiceError(_l("营业时间段不能重叠（前一天跨午夜的营业与当天的重叠）。"), "hours")
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
