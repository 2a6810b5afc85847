"""The platform admin's overview: how big the platform is (regions, merchants, stores,
residents) and this calendar month's pushes against the room the caps leave, in a handful of
grouped queries over the live tables (counts of rows, not of events: no rollup needed).

Merchants have no status of their own: a merchant is "approved" when one of its stores is
(it is live on the platform), "pending" when none is but one waits for review, "rejected"
when every store was refused, "no_store" before its first store.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from campaigns.models import COUNTING, Delivery, DeliveryStatus
from campaigns.services import budget
from core.localtime import as_utc, local
from merchants.models import Merchant, Region, RegionLevel, ReviewStatus, Store
from residents.models import Resident
from stats.services import report

MERCHANT_STATES = ("approved", "pending", "rejected", "no_store")


@dataclass(frozen=True)
class Residents:
    total: int
    reachable: int  # an open relationship with some member
    opted_out: int  # "quiet me": no campaign pushes
    erased: int  # privacy erase: personal fields blanked, row kept
    pushable: int  # reachable, not opted out, not erased: who a campaign may reach


@dataclass(frozen=True)
class Pushes:
    """This month's messages to residents (the send ledger: one message, a digest of one or
    more campaign cards, to one resident), by what became of them."""

    by_status: dict[str, int]
    group_messages: int  # messages to customer groups (no resident cap applies)
    cards: dict[str, int]  # campaign cards, as the statistics count them (pushes_*)
    per_resident: int  # the most messages one resident may get this month
    capacity: int  # Σ over pushable residents of their own limit (see ``capacity``)

    @property
    def planned(self) -> int:
        return sum(self.by_status.values())

    @property
    def delivered(self) -> int:
        return self.by_status.get(DeliveryStatus.sent.value, 0)

    @property
    def over_quota(self) -> int:
        return self.by_status.get(DeliveryStatus.over_quota.value, 0)

    @property
    def used(self) -> int:
        """Messages that take a slot of every cap (planned, sent, over WeCom's quota)."""
        return sum(self.by_status.get(s.value, 0) for s in COUNTING)

    @property
    def share(self) -> float | None:
        return self.used / self.capacity if self.capacity else None


@dataclass(frozen=True)
class Overview:
    month_start: date
    month_end: date  # inclusive
    regions: dict[str, int]  # level -> count
    merchants: dict[str, int]  # MERCHANT_STATES -> count
    stores: dict[str, int]  # review status -> count
    residents: Residents
    pushes: Pushes


def per_resident_limit(month_start: date, month_end: date) -> int:
    """The most messages one resident may receive in the month: our marketing cap, or WeCom's
    receive quota summed over its periods touching the month when that is lower (an upper
    bound for weekly quotas, whose edge weeks lie partly in other months)."""
    periods = {budget.caps_on(month_start + timedelta(days=i)).wecom
               for i in range((month_end - month_start).days + 1)}
    marketing = budget.caps_on(month_start).marketing.limit
    return min(marketing, sum(p.limit for p in periods))


def _by(session: Session, column) -> dict[str, int]:
    return {getattr(k, "value", k): int(n) for k, n in session.execute(select(column, func.count()).group_by(column))}


def _merchants(session: Session) -> dict[str, int]:
    m, s = Merchant.__table__, Store.__table__

    def has(status: ReviewStatus):
        return func.max(case((s.c.status == status, 1), else_=0))

    per = (select(m.c.id, has(ReviewStatus.approved).label("approved"), has(ReviewStatus.pending).label("pending"),
                  func.count(s.c.id).label("stores"))
           .select_from(m.outerjoin(s, s.c.merchant_id == m.c.id)).group_by(m.c.id).subquery("per"))
    state = select(case((per.c.approved == 1, "approved"), (per.c.pending == 1, "pending"),
                        (per.c.stores > 0, "rejected"), else_="no_store").label("state")).subquery("states")
    counts = dict(session.execute(select(state.c.state, func.count()).group_by(state.c.state)).all())
    return {k: int(counts.get(k, 0)) for k in MERCHANT_STATES}


def overview(session: Session, now: datetime | None = None) -> Overview:
    """Everything on the admin's overview, for the calendar month (Asia/Shanghai) of ``now``.

    Capacity: every resident a campaign may reach now (reachable, not opted out, not erased)
    times the messages they may still receive in a month (``per_resident_limit``, or their own
    lower "quiet me" cap). It is the month's ceiling, not what is left: ``used`` counts this
    month's messages including those to residents who have since become unreachable."""
    today = local(as_utc(now)).date()
    month = budget.month_period(today, 0)
    start, end = month.start, month.end - timedelta(days=1)
    limit = per_resident_limit(start, end)

    r = Resident
    pushable = (r.reachable.is_(True)) & (r.opted_out.is_(False)) & (r.erased_at.is_(None))
    own = case((r.monthly_cap < limit, r.monthly_cap), else_=limit)  # NULL cap: the platform's
    row = session.execute(select(
        func.count(),
        func.coalesce(func.sum(case((r.reachable.is_(True), 1), else_=0)), 0),
        func.coalesce(func.sum(case((r.opted_out.is_(True), 1), else_=0)), 0),
        func.coalesce(func.sum(case((r.erased_at.is_not(None), 1), else_=0)), 0),
        func.coalesce(func.sum(case((pushable, 1), else_=0)), 0),
        func.coalesce(func.sum(case((pushable, own), else_=0)), 0),
    )).one()
    residents = Residents(*(int(v) for v in row[:5]))

    deliveries = session.execute(
        select(Delivery.status, func.count(Delivery.resident_id), func.count(Delivery.chat_id))
        .where(Delivery.local_day >= start, Delivery.local_day <= end)
        .group_by(Delivery.status)
    ).all()
    cards = report.totals(session, report.Scope(), report.Query(start=start, end=end))
    pushes = Pushes(
        by_status={getattr(s, "value", s): int(n) for s, n, _ in deliveries if n},
        group_messages=sum(int(g) for _, _, g in deliveries),
        cards={k: cards[k] for k in ("pushes_planned", "pushes_delivered", "pushes_over_quota")},
        per_resident=limit, capacity=int(row[5]),
    )
    regions, stores = _by(session, Region.level), _by(session, Store.status)
    return Overview(
        month_start=start, month_end=end,
        regions={level.value: regions.get(level.value, 0) for level in RegionLevel},
        merchants=_merchants(session),
        stores={s.value: stores.get(s.value, 0) for s in ReviewStatus},
        residents=residents, pushes=pushes,
    )
