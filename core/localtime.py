"""Local time: stores live in mainland China, so "today", opening hours, quiet hours and daily
caps are Asia/Shanghai wall time; the database stores aware UTC (``core.db.TZDateTime``)."""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l

LOCAL_TZ = ZoneInfo("Asia/Shanghai")

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
WEEKDAY_LABELS = (_l("周一"), _l("周二"), _l("周三"), _l("周四"), _l("周五"), _l("周六"), _l("周日"))


def local(dt: datetime) -> datetime:
    return dt.astimezone(LOCAL_TZ)


def local_time(dt: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An aware timestamp as local wall time ('' for None); also the templates' ``local_time``."""
    return local(dt).strftime(fmt) if dt else ""


def local_midnight(d: date) -> datetime:
    """The start of local day ``d`` as an aware UTC datetime."""
    return datetime.combine(d, time(0), tzinfo=LOCAL_TZ).astimezone(timezone.utc)


def hhmm(minutes: int | None) -> str:
    """Minutes after local midnight as 'HH:MM' ('' for None)."""
    if minutes is None:
        return ""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def as_utc(now: datetime | None) -> datetime:
    """A service's "now": callers (tests, jobs) may pass one, which must be aware; None is
    the current time. A naive datetime is a bug, not a guess."""
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("naive datetime")
    return now.astimezone(timezone.utc)
