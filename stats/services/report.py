"""A dashboard's questions over the rollups plus the tallies still waiting (seconds old), so
numbers are current without reading the raw tables: totals and the change against the period
before, a time series, breakdowns (circle, merchant, store, template, campaign, channel).

Who sees what is a ``Scope`` built once per request from the user (``scope_for``): the admin
all, a manager the circles of their regions (and the campaigns owned there or by merchants with
a store there: a campaign's pushes belong to no store), an owner their merchant. Every query
goes through ``facts``, which applies it: no page can forget.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta

from sqlalchemy import and_, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from accounts.models import Role, User
from campaigns.models import Campaign
from core.errors import Forbidden
from core.tally import METRICS, Tally
from coupons.models import CouponTemplate
from merchants.models import Channel, Merchant, Region, Store
from merchants.services.regions import circle_ids_within
from stats.models import DailyStat, StoreDayStat, StoreMonthStat
from stats.services.rollup import KEY, attributed

BREAKDOWNS = ("circle", "merchant", "store", "template", "campaign", "channel")
MAX_DAYS = 731  # a custom range longer than two years is refused (one query, but a huge series)


@dataclass(frozen=True)
class Scope:
    circle_ids: frozenset[int] | None = None  # None: every circle
    campaign_ids: frozenset[int] | None = None  # store-less rows (pushes) visible; None: all
    merchant_id: int | None = None


@dataclass(frozen=True)
class Query:
    start: date
    end: date  # inclusive
    circle_id: int | None = None
    merchant_id: int | None = None
    store_id: int | None = None
    campaign_id: int | None = None
    channel_id: int | None = None
    cuisine: str | None = None
    store_ids: tuple[int, ...] | None = field(default=None, compare=False)  # resolved cuisine

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Query:
        """The period just before: the calendar month before a calendar month, else the same
        number of days."""
        if self.start.day == 1 and _month_end(self.start) == self.end:
            end = self.start - timedelta(days=1)
            return replace(self, start=end.replace(day=1), end=end)
        return replace(self, start=self.start - timedelta(days=self.days), end=self.start - timedelta(days=1))


def _month_end(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def scope_for(session: Session, user: User) -> Scope:
    if user.role == Role.admin:
        return Scope()
    if user.role == Role.manager:
        region_ids = [r.id for r in user.regions]
        circles = frozenset(circle_ids_within(session, region_ids))
        within = set(region_ids) | set(session.scalars(select(Region.id).where(Region.parent_id.in_(region_ids or [-1]))))
        merchants = select(Store.merchant_id).where(Store.circle_id.in_(circles or {-1}))
        campaigns = frozenset(session.scalars(select(Campaign.id).where(or_(
            Campaign.region_id.in_(within or {-1}), Campaign.merchant_id.in_(merchants)))))
        return Scope(circle_ids=circles, campaign_ids=campaigns)
    if user.role == Role.owner and user.merchant_id:
        return Scope(merchant_id=user.merchant_id)
    raise Forbidden()


def _pending():
    """Tallies not rolled up yet, with the attributes the roll-up would give them."""
    t = Tally.__table__
    joined, merchant_id, circle_id = attributed(t)
    return select(*[t.c[k] for k in KEY], merchant_id.label("merchant_id"), circle_id.label("circle_id"),
                  *[t.c[m] for m in METRICS]).select_from(joined)


def _conditions(cols, scope: Scope, q: Query) -> list:
    conds = [cols.local_day >= q.start, cols.local_day <= q.end]
    if scope.circle_ids is not None:
        conds.append(or_(cols.circle_id.in_(scope.circle_ids or {-1}),
                         and_(cols.store_id == 0, cols.campaign_id.in_(scope.campaign_ids or {-1}))))
    if scope.merchant_id is not None:
        conds.append(cols.merchant_id == scope.merchant_id)
    for name in ("circle_id", "merchant_id", "store_id", "campaign_id", "channel_id"):
        value = getattr(q, name)
        if value is not None:
            conds.append(getattr(cols, name) == value)
    if q.store_ids is not None:
        conds.append(cols.store_id.in_(q.store_ids or (-1,)))
    return conds


FINE = ("template", "campaign", "channel")  # splits only the fine rollup can answer
EPOCH = date(2000, 1, 1)


def _rolled(model, scope: Scope, q: Query):
    """A rollup's rows in scope and in the query, with the fine key's columns (a store rollup
    has no template or code: 0)."""
    d = model.__table__
    if model is DailyStat:
        keys = [d.c[k] for k in KEY]
    else:
        keys = [d.c.local_day, d.c.store_id, literal(0).label("template_id"), d.c.campaign_id,
                literal(0).label("channel_id")]
    return select(*keys, d.c.merchant_id, d.c.circle_id, *[d.c[m] for m in METRICS]).where(*_conditions(d.c, scope, q))


def _waiting(scope: Scope, q: Query):
    pending = _pending().subquery("pending")
    return select(pending).where(*_conditions(pending.c, scope, q))


def _full_months(start: date, end: date) -> tuple[date, date] | None:
    """The first days of the first and last calendar months wholly inside [start, end]."""
    first = start if start.day == 1 else _month_end(start) + timedelta(days=1)
    last = end.replace(day=1) if _month_end(end) == end else end.replace(day=1) - timedelta(days=1)
    last = last.replace(day=1)
    return (first, last) if first <= last else None


def _by_store(scope: Scope, q: Query) -> list:
    """The store rollups' rows for [start, end]: whole months from the monthly one, the days
    around them from the daily one."""
    months = _full_months(q.start, q.end)
    if months is None:
        return [_rolled(StoreDayStat, scope, q)]
    first, last = months
    parts = [_rolled(StoreMonthStat, scope, replace(q, start=first, end=last))]
    if q.start < first:
        parts.append(_rolled(StoreDayStat, scope, replace(q, end=first - timedelta(days=1))))
    if _month_end(last) < q.end:
        parts.append(_rolled(StoreDayStat, scope, replace(q, start=_month_end(last) + timedelta(days=1))))
    return parts


def facts(scope: Scope, q: Query, fine: bool = False, daily: bool = False):
    """Rollup rows and waiting tallies in scope and in the query, as one subquery: from the
    store rollups (whole months from the monthly one, unless ``daily``) unless the question
    splits or filters by coupon, campaign or code (``fine``, or a campaign / code filter),
    which only ``stat_daily`` can answer."""
    if fine or q.campaign_id is not None or q.channel_id is not None:
        parts = [_rolled(DailyStat, scope, q)]
    elif daily:
        parts = [_rolled(StoreDayStat, scope, q)]
    else:
        parts = _by_store(scope, q)
    return union_all(*parts, _waiting(scope, q)).subquery("facts")


def resolve(session: Session, q: Query, scope: Scope | None = None) -> Query:
    """A cuisine filter as the stores serving it (cuisines are a JSON list on the store),
    among the stores the scope and the circle / merchant / store filters leave."""
    if not q.cuisine:
        return q
    stmt = select(Store.id, Store.cuisines)
    if scope is not None and scope.circle_ids is not None:
        stmt = stmt.where(Store.circle_id.in_(scope.circle_ids or {-1}))
    if scope is not None and scope.merchant_id is not None:
        stmt = stmt.where(Store.merchant_id == scope.merchant_id)
    for column, value in ((Store.circle_id, q.circle_id), (Store.merchant_id, q.merchant_id), (Store.id, q.store_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    ids = tuple(sid for sid, cuisines in session.execute(stmt) if q.cuisine in (cuisines or []))
    return replace(q, store_ids=ids)


def _sums(f):
    return [func.coalesce(func.sum(f.c[m]), 0).label(m) for m in METRICS]


def totals(session: Session, scope: Scope, q: Query) -> dict[str, int]:
    f = facts(scope, q)
    return {m: int(v) for m, v in zip(METRICS, session.execute(select(*_sums(f))).one())}


def net_contacts(session: Session, scope: Scope, q: Query) -> int:
    """Contacts gained less lost over all history up to the range's end: the stores' reach —
    whole months from the monthly rollup, the days after the last from the daily one, and the
    waiting tallies."""
    if q.campaign_id is not None or q.channel_id is not None:
        f = facts(scope, replace(q, start=EPOCH), fine=True)
    else:
        f = union_all(*_by_store(scope, replace(q, start=EPOCH)), _waiting(scope, replace(q, start=EPOCH))
                      ).subquery("facts")
    return int(session.scalar(select(func.coalesce(func.sum(f.c.new_contacts - f.c.lost_contacts), 0))))


def series(session: Session, scope: Scope, q: Query, grain: str = "day") -> list[tuple[date, dict[str, int]]]:
    """Per day (or week starting Monday, or month) of the range, zeros included."""
    f = facts(scope, q, daily=True)
    by_day = {day: dict(zip(METRICS, map(int, rest))) for day, *rest in session.execute(
        select(f.c.local_day, *_sums(f)).group_by(f.c.local_day))}
    out: dict[date, dict[str, int]] = {}
    day = q.start
    while day <= q.end:
        key = bucket(day, grain)
        acc = out.setdefault(key, dict.fromkeys(METRICS, 0))
        for m, v in by_day.get(day, {}).items():
            acc[m] += v
        day += timedelta(days=1)
    return list(out.items())


def bucket(day: date, grain: str) -> date:
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    return day


_NAMES = {
    "circle": (Region, Region.name), "merchant": (Merchant, Merchant.name), "store": (Store, Store.name),
    "template": (CouponTemplate, CouponTemplate.name), "campaign": (Campaign, Campaign.name),
    "channel": (Channel, Channel.name),
}


@dataclass
class Row:
    id: int
    name: str
    values: dict[str, int]

    @property
    def net_redeemed(self) -> int:
        return self.values["redeemed"] - self.values["reversed"]


def breakdown(session: Session, scope: Scope, q: Query, by: str, limit: int | None = None) -> list[Row]:
    """Totals per circle / merchant / store / template / campaign / channel, most redeemed
    first (id 0, "none", is left out: a push belongs to no store, a walk-in to no code). One
    store's channels are all listed, idle ones with zeros: a poster that brings nobody is news."""
    if by not in BREAKDOWNS:
        raise ValueError(by)
    f = facts(scope, q, fine=by in FINE)
    col = f.c[f"{by}_id"]
    rows = session.execute(select(col, *_sums(f)).where(col != 0).group_by(col)).all()
    out = _named(session, by, rows)
    if by == "channel" and q.store_id is not None and q.campaign_id is None and q.channel_id is None:
        seen = {row.id for row in out}
        out += [Row(cid, name, dict.fromkeys(METRICS, 0)) for cid, name in session.execute(
            select(Channel.id, Channel.name).where(Channel.store_id == q.store_id)) if cid not in seen]
    return out[:limit] if limit else out


BY_STORE = ("circle", "merchant", "store")  # answered together from one grouping by store
_REDEEMED, _REVERSED, _ISSUED = (1 + METRICS.index(m) for m in ("redeemed", "reversed", "issued"))  # in (id, *sums)


def _named(session: Session, by: str, rows, head: int | None = None, tail: int = 0) -> list[Row]:
    """(id, *metric sums) rows as Rows, most redeemed first, named — all of them, or only the
    first ``head`` and the last ``tail`` (what a page shows; the others keep "#id")."""
    rows = sorted(rows, key=lambda r: (-(r[_REDEEMED] - r[_REVERSED]), -r[_ISSUED], r[0]))
    shown = rows if head is None else rows[:head] + (rows[-tail:] if tail else [])
    model, name_col = _NAMES[by]
    ids = [r[0] for r in shown]
    names = dict(session.execute(select(model.id, name_col).where(model.id.in_(ids))).all()) if ids else {}
    return [Row(int(r[0]), names.get(r[0], f"#{r[0]}"), dict(zip(METRICS, map(int, r[1:])))) for r in rows]


def breakdowns(session: Session, scope: Scope, q: Query, bys, head: int | None = None,
               tail: int = 0) -> dict[str, list[Row]]:
    """``breakdown`` for several splits, the circle / merchant / store ones read in one
    grouped query (a store's row carries its merchant and circle), the rest one each; names
    looked up for the first ``head`` and last ``tail`` rows only, when given."""
    out: dict[str, list[Row]] = {}
    wanted = [by for by in bys if by in BY_STORE]
    if wanted:
        f = facts(scope, q)
        rows = session.execute(select(f.c.store_id, f.c.merchant_id, f.c.circle_id, *_sums(f))
                               .group_by(f.c.store_id, f.c.merchant_id, f.c.circle_id)).all()
        for by in wanted:
            index = {"store": 0, "merchant": 1, "circle": 2}[by]
            acc: dict[int, list[int]] = {}
            for r in rows:
                if r[index]:
                    key = int(r[index])
                    acc[key] = [a + int(v) for a, v in zip(acc[key], r[3:])] if key in acc else [int(v) for v in r[3:]]
            out[by] = _named(session, by, [(k, *v) for k, v in acc.items()], head, tail)
    for by in bys:
        if by not in out:
            out[by] = breakdown(session, scope, q, by)
    return out


def totals_of(series_rows: list[tuple[date, dict[str, int]]]) -> dict[str, int]:
    """The range's totals as the sum of its series (no second read of the same rows)."""
    out = dict.fromkeys(METRICS, 0)
    for _day, values in series_rows:
        for m in METRICS:
            out[m] += values[m]
    return out


def change(now: int, before: int) -> float | None:
    """The relative change against the previous period (None when there was nothing before)."""
    if not before:
        return None
    return (now - before) / abs(before)


def funnel(values: dict[str, int]) -> list[tuple[str, int]]:
    """Scan → contact → coupon → redeemed: contacts added through the codes, coupons handed
    out, redeemed (net of reversals)."""
    return [("new_contacts", values["new_contacts"]), ("issued", values["issued"]),
            ("redeemed", values["redeemed"] - values["reversed"])]


def choices(session: Session, scope: Scope) -> dict:
    """The filter menus: circles, stores and campaigns the viewer may pick."""
    circle_q = select(Region.id, Region.name).where(Region.level == "circle")
    store_q = select(Store.id, Store.name)
    campaign_q = select(Campaign.id, Campaign.name)
    if scope.circle_ids is not None:
        circle_q = circle_q.where(Region.id.in_(scope.circle_ids or {-1}))
        store_q = store_q.where(Store.circle_id.in_(scope.circle_ids or {-1}))
        campaign_q = campaign_q.where(Campaign.id.in_(scope.campaign_ids or {-1}))
    if scope.merchant_id is not None:
        store_q = store_q.where(Store.merchant_id == scope.merchant_id)
        campaign_q = campaign_q.where(Campaign.merchant_id == scope.merchant_id)
    return {
        "circles": session.execute(circle_q.order_by(Region.id)).all(),
        "stores": session.execute(store_q.order_by(Store.id)).all(),
        "campaigns": session.execute(campaign_q.order_by(Campaign.id.desc()).limit(200)).all(),
    }
