"""Input bounds: the ranges every id, number and date typed or put in a URL must fall in.

PostgreSQL's ``integer`` is 32-bit: an id beyond it is not "not found" there but a
``NumericValueOutOfRange`` error, and SQLite refuses Python ints beyond 64 bits; dates far
from today overflow ``date + timedelta``. So ids are 1..2147483647 (``core.converters``
makes every ``<int:...>`` route and query-string id 404 or ignore anything else), form
numbers carry an ``IntRange`` and form dates a ``DateRange`` from here, with Chinese
messages.
"""
from __future__ import annotations

from datetime import date

from flask_babel import lazy_gettext as _l
from wtforms.validators import ValidationError

MIN_ID = 1
MAX_INT = 2_147_483_647  # PostgreSQL ``integer``
MIN_DATE = date(2000, 1, 1)
MAX_DATE = date(2099, 12, 31)


def is_id(value: object) -> bool:
    """An int a primary key can hold (bools are not ids)."""
    return isinstance(value, int) and not isinstance(value, bool) and MIN_ID <= value <= MAX_INT


def parse_id(text: str | int | None) -> int:
    """A query-string id (``request.args.get("x", type=parse_id)``): ValueError outside
    1..2147483647 or when not digits, so Werkzeug falls back to the default."""
    value = int(str(text).strip())  # ValueError on junk
    if not is_id(value):
        raise ValueError("id out of range")
    return value


def in_date_range(value: date | None) -> bool:
    return value is None or MIN_DATE <= value <= MAX_DATE


class IntRange:
    """WTForms' ``NumberRange`` for integer fields, safe for any int: ``NumberRange`` calls
    ``math.isnan`` on the value, which raises OverflowError for an int beyond a float (400
    nines typed into a number box was a 500)."""

    def __init__(self, low: int, high: int, message=None) -> None:
        self.low, self.high = low, high
        self.message = message or _l("请填写 %(low)d 到 %(high)d 之间的整数", low=low, high=high)
        self.field_flags = {"min": low, "max": high}

    def __call__(self, form, field) -> None:
        data = field.data
        if data is None:
            return
        if isinstance(data, int) and not isinstance(data, bool) and self.low <= data <= self.high:
            return
        raise ValidationError(self.message)


def int_range(low: int, high: int, message=None) -> IntRange:
    """An ``IntRange`` (Chinese message naming the range unless one is given)."""
    return IntRange(low, high, message)


class DateRange:
    """A WTForms validator: the date lies in ``MIN_DATE``..``MAX_DATE`` (2000–2099)."""

    def __init__(self, low: date = MIN_DATE, high: date = MAX_DATE, message=None) -> None:
        self.low, self.high, self.message = low, high, message

    def __call__(self, form, field) -> None:
        value = field.data
        if value is not None and not self.low <= value <= self.high:
            raise ValidationError(
                self.message
                or _l("日期须在 %(low)s 到 %(high)s 之间", low=self.low.isoformat(), high=self.high.isoformat())
            )
