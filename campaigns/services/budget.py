"""The budget: how many pushes a resident (or a group) may still receive, counted in SQL
over the send ledger (``deliveries``: one message, a digest, to one resident) by calendar period in Asia/Shanghai.

Three caps apply at once, and a push planned by any campaign counts against all of them from
the moment it is planned (so campaigns planned one after another cannot both take the last
slot): WeCom's receive quota (``WECOM_PUSH_QUOTA_RULE``, the same rules as the simulator's),
our marketing cap (``CAMPAIGN_MONTHLY_CAP`` per resident per calendar month) and the diner's
own "quiet me" cap (``residents.monthly_cap``). WeCom's status-3 answers (over quota) count too.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import and_, case, func, select

from campaigns.models import COUNTING, Delivery, Push
from core.localtime import local

QUOTA_RULES = ("days/month", "7/week", "1/day", "4/month")
DEFAULT_QUOTA_RULE = "days/month"
DEFAULT_MONTHLY_CAP = 4


@dataclass(frozen=True)
class Period:
    start: date  # first day
    end: date  # first day after
    limit: int


def quota_period(rule: str, day: date) -> Period:
    """WeCom's receive quota period containing ``day`` (a local date) and its limit."""
    if rule not in QUOTA_RULES:
        raise ValueError(f"quota rule must be one of {', '.join(QUOTA_RULES)}")
    if rule == "1/day":
        return Period(day, day + timedelta(days=1), 1)
    if rule == "7/week":
        start = day - timedelta(days=day.weekday())
        return Period(start, start + timedelta(days=7), 7)
    month = month_period(day, 0)
    days = (month.end - month.start).days
    return Period(month.start, month.end, days if rule == "days/month" else 4)


def month_period(day: date, limit: int) -> Period:
    start = day.replace(day=1)
    return Period(start, start + timedelta(days=calendar.monthrange(start.year, start.month)[1]), limit)


@dataclass(frozen=True)
class Caps:
    """Every cap in force on one local day."""

    day: date
    wecom: Period
    marketing: Period  # a calendar month; its limit is ours

    @property
    def since(self) -> date:
        return min(self.wecom.start, self.marketing.start)


def caps_on(day: date) -> Caps:
    cfg = current_app.config
    rule = cfg.get("WECOM_PUSH_QUOTA_RULE", DEFAULT_QUOTA_RULE)
    return Caps(day, quota_period(rule, day), month_period(day, int(cfg.get("CAMPAIGN_MONTHLY_CAP", DEFAULT_MONTHLY_CAP))))


def local_day(at: datetime) -> date:
    return local(at).date()


def usage_subquery(caps: Caps, *, exclude_campaign_id: int | None = None, resident_ids=None, id_range=None):
    """Per resident: counting messages in WeCom's period (``wecom_used``) and in the calendar
    month (``month_used``); without the one carrying ``exclude_campaign_id``'s card when given
    (a campaign's own message never caps it); only for ``resident_ids`` (a subquery) or
    residents with ids in ``id_range`` (low, high], so a small audience or one planner batch
    reads only its own."""
    d = Delivery
    conditions = [
        d.resident_id.is_not(None),
        d.status.in_(COUNTING),
        d.local_day >= caps.since,
        d.local_day < max(caps.wecom.end, caps.marketing.end),
    ]
    if exclude_campaign_id is not None:
        own = select(Push.delivery_id).where(Push.campaign_id == exclude_campaign_id, Push.delivery_id.is_not(None))
        if id_range is not None:  # a batch hashes its own residents' pushes, not the campaign's all
            own = own.where(Push.resident_id > id_range[0], Push.resident_id <= id_range[1])
        conditions.append(~d.id.in_(own))
    if resident_ids is not None:
        conditions.append(d.resident_id.in_(resident_ids))
    if id_range is not None:
        conditions.extend([d.resident_id > id_range[0], d.resident_id <= id_range[1]])

    def within(period: Period):
        return func.sum(case((and_(d.local_day >= period.start, d.local_day < period.end), 1), else_=0))

    return (
        select(
            d.resident_id.label("resident_id"),
            within(caps.wecom).label("wecom_used"),
            within(caps.marketing).label("month_used"),
        )
        .where(*conditions)
        .group_by(d.resident_id)
        .subquery("usage")
    )


def over_cap_clause(usage, monthly_cap_column, caps: Caps):
    """SQL: the resident has no slot left under one of the three caps."""
    wecom_used = func.coalesce(usage.c.wecom_used, 0)
    month_used = func.coalesce(usage.c.month_used, 0)
    return (
        (wecom_used >= caps.wecom.limit)
        | (month_used >= caps.marketing.limit)
        | (monthly_cap_column.is_not(None) & (month_used >= monthly_cap_column))
    )


def slots_clause(usage, monthly_cap_column, caps: Caps):
    """SQL: how many more messages the resident may receive (0 or less: capped)."""
    wecom_left = caps.wecom.limit - func.coalesce(usage.c.wecom_used, 0)
    month_left = caps.marketing.limit - func.coalesce(usage.c.month_used, 0)
    own_left = func.coalesce(monthly_cap_column, caps.marketing.limit) - func.coalesce(usage.c.month_used, 0)
    return case(
        (and_(wecom_left <= month_left, wecom_left <= own_left), wecom_left),
        (month_left <= own_left, month_left),
        else_=own_left,
    )


def remaining_slots(session, resident_id: int, monthly_cap: int | None, day: date) -> int:
    """How many more pushes this resident may get on ``day`` (for one diner's page)."""
    caps = caps_on(day)
    usage = usage_subquery(caps)
    row = session.execute(select(usage.c.wecom_used, usage.c.month_used).where(usage.c.resident_id == resident_id)).first()
    wecom_used, month_used = (row or (0, 0))
    left = min(caps.wecom.limit - (wecom_used or 0), caps.marketing.limit - (month_used or 0))
    if monthly_cap is not None:
        left = min(left, monthly_cap - (month_used or 0))
    return max(0, left)
