"""Keeping the rollups: tallies move into ``stat_daily`` (and its per-store day and month
rollups) exactly once; a rebuild recounts days from the raw tables.

Exactly once, whatever kills the job: a batch of tallies is added to the rollups and deleted
in one transaction. On PostgreSQL one statement does both (``WITH moved AS (DELETE …
RETURNING …) INSERT … SELECT … FROM moved … ON CONFLICT DO UPDATE``), so the rows counted are
the rows deleted even while new tallies commit around it; on SQLite the transaction begins by
writing the cursor row, which takes the database's single write lock before anything is read.
The cursor row (``UPDATE stat_cursor`` first, on both) also serialises roll-ups with rebuilds.

A rebuild recounts days ≥ D from the raw rows in one snapshot (REPEATABLE READ on
PostgreSQL): it deletes those days' rollups and the tallies it can see for them, whose raw rows
are exactly the ones it counts; a tally committed after its snapshot belongs to a raw row it did
not see, and is rolled up later. What it cannot recount: a contact removed and added again keeps
only its last add and close in ``contact_relationships``, so a rebuild counts it once where the
tallies counted the add twice and the loss once (the net is the same).
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, case, cast, delete, func, literal, literal_column, select, true, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from campaigns.models import Campaign, Delivery, DeliveryStatus, Push
from core.db import utcnow
from core.localtime import local_midnight
from core.tally import METRICS, Tally
from coupons.models import CLAIMED_SOURCES, Coupon, CouponTemplate, Redemption, RedemptionReversal
from merchants.models import Store
from residents.models import ContactRelationship, RelationshipStatus
from residents.services import REASON_TRANSFER
from stats.models import DailyStat, StatCursor, StoreDayStat, StoreMonthStat

BATCH = 50_000  # tallies per roll-up transaction
KEY = ("local_day", "store_id", "template_id", "campaign_id", "channel_id")
COLUMNS = (*KEY, "merchant_id", "circle_id", *METRICS)
STORE_KEY = ("local_day", "store_id", "campaign_id", "merchant_id")  # the store rollups' (see stats.models)


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_cursor(session: Session) -> None:
    """The transaction's first statement: a write to the cursor row (its row lock on
    PostgreSQL, the write lock on SQLite), creating the row the first time."""
    bump = update(StatCursor).where(StatCursor.id == 1).values(runs=StatCursor.runs + 1)
    if session.execute(bump).rowcount == 1:
        return
    ins = (postgresql.insert if _is_pg(session) else sqlite.insert)(StatCursor)
    session.execute(ins.values(id=1, rolled=0, runs=0, created_at=utcnow()).on_conflict_do_nothing())
    session.execute(bump)


def has_cursor(session: Session) -> bool:
    return session.get(StatCursor, 1) is not None


def attributed(src):
    """``src`` (rows with the key) joined to what names its merchant and circle: the store's;
    for a row with no store, the campaign's merchant, else the coupon template's (a coupon
    handed out with no store or campaign is still its merchant's). Returns the join and the
    two columns; the roll-up and the pages' waiting tallies share it."""
    s, c, t = Store.__table__, Campaign.__table__, CouponTemplate.__table__
    joined = (src.outerjoin(s, s.c.id == src.c.store_id).outerjoin(c, c.c.id == src.c.campaign_id)
              .outerjoin(t, t.c.id == src.c.template_id))
    return joined, func.coalesce(s.c.merchant_id, c.c.merchant_id, t.c.merchant_id, 0), func.coalesce(s.c.circle_id, 0)


def _with_attributes(src):
    """Group ``src`` (key + metrics) by the key, with its merchant and circle alongside."""
    joined, merchant_id, circle_id = attributed(src)
    return (
        select(
            *[src.c[k] for k in KEY],
            func.max(merchant_id).label("merchant_id"),
            func.max(circle_id).label("circle_id"),
            *[func.sum(src.c[m]).label(m) for m in METRICS],
        )
        .select_from(joined)
        .where(true())  # SQLite: an upsert's SELECT needs a WHERE (its parser's ON ambiguity)
        .group_by(*[src.c[k] for k in KEY])
    )


def _upsert(session: Session, rows, table=DailyStat.__table__, key=KEY):
    columns = [*key, *[c for c in ("merchant_id", "circle_id") if c not in key], *METRICS]
    ins = (postgresql.insert if _is_pg(session) else sqlite.insert)(table).from_select(columns, rows)
    return ins.on_conflict_do_update(
        index_elements=list(key), set_={m: table.c[m] + ins.excluded[m] for m in METRICS}
    )


def _month(session: Session, day):
    """A local day column as its month's first day."""
    if _is_pg(session):
        return cast(func.date_trunc(literal_column("'month'"), day), Date)
    return func.date(day, "start of month")


def _by_store(session: Session, fine, monthly: bool = False):
    """Rows with the fine key (and merchant, circle) summed per store and day (or month); a
    store-less row keeps its campaign, the rest campaign 0."""
    day = _month(session, fine.c.local_day) if monthly else fine.c.local_day
    campaign = case((fine.c.store_id == 0, fine.c.campaign_id), else_=0)
    return (
        select(day.label("local_day"), fine.c.store_id, campaign.label("campaign_id"), fine.c.merchant_id,
               func.max(fine.c.circle_id).label("circle_id"), *[func.sum(fine.c[m]).label(m) for m in METRICS])
        .where(true())  # SQLite: see _with_attributes
        .group_by(day, fine.c.store_id, campaign, fine.c.merchant_id)
    )


def _upsert_by_store(session: Session, fine) -> list:
    """The two store rollups' upserts from ``fine`` (a subquery or CTE of fine-keyed rows)."""
    return [_upsert(session, _by_store(session, fine, monthly), table, STORE_KEY)
            for table, monthly in ((StoreDayStat.__table__, False), (StoreMonthStat.__table__, True))]


def roll_up(session: Session, batch: int = BATCH, now: datetime | None = None) -> int:
    """Move up to ``batch`` tallies (oldest first) into the rollups; returns how many moved.
    The caller owns the transaction (one per batch)."""
    lock_cursor(session)
    t = Tally.__table__
    hi = session.scalar(select(t.c.id).order_by(t.c.id).offset(batch - 1).limit(1))
    if hi is None:
        hi = session.scalar(select(func.max(t.c.id)))
        if hi is None:
            return 0
    if _is_pg(session):
        # one statement: the rows counted are the rows deleted (every CTE runs, the count reads one)
        moved = delete(t).where(t.c.id <= hi).returning(*[t.c[k] for k in (*KEY, *METRICS)]).cte("moved")
        fine = _with_attributes(moved).cte("fine")
        count = select(func.count()).select_from(moved).add_cte(_upsert(session, select(fine)).cte("added"))
        for n, upsert in enumerate(_upsert_by_store(session, fine)):
            count = count.add_cte(upsert.cte(f"by_store_{n}"))
        n = session.scalar(count)
    else:
        pending = select(t).where(t.c.id <= hi).subquery()
        fine = _with_attributes(pending).subquery("fine")
        for statement in (_upsert(session, select(fine).where(true())), *_upsert_by_store(session, fine)):
            session.execute(statement)
        n = session.execute(delete(t).where(t.c.id <= hi)).rowcount
    session.execute(update(StatCursor).where(StatCursor.id == 1).values(
        rolled=StatCursor.rolled + n, rolled_at=now or utcnow()))
    return n


# --------------------------------------------------------------------------- rebuild


def _day(session: Session, column):
    """A UTC timestamp column as its Asia/Shanghai day (no daylight saving there: +8 h)."""
    if _is_pg(session):
        # the zone inline, not a bound parameter: GROUP BY must repeat the SELECT's expression
        return cast(func.timezone(literal_column("'Asia/Shanghai'"), column), Date)
    return func.date(column, "+8 hours")


def _zero(**given):
    """Metric columns for one raw source: the given expressions, 0 elsewhere."""
    return [given.get(m, literal(0)).label(m) for m in METRICS]


def _redemptions(session: Session, at, joined, after, sign: int):
    """Redemptions (sign 1) or their reversals (sign -1, on the reversal's day): credited to
    the till's store and the coupon's campaign and code, amounts taken back by a reversal."""
    rd, cp = Redemption.__table__, Coupon.__table__
    counted = {"redeemed": func.count()} if sign > 0 else {"reversed": func.count()}
    return (
        select(_day(session, at).label("local_day"), rd.c.store_id.label("store_id"),
               cp.c.template_id.label("template_id"), func.coalesce(cp.c.origin_campaign_id, 0).label("campaign_id"),
               func.coalesce(cp.c.origin_channel_id, 0).label("channel_id"),
               *_zero(**counted, discount_fen=sign * func.sum(rd.c.discount_fen),
                      bill_fen=sign * func.sum(rd.c.bill_fen)))
        .select_from(joined)
        .where(after(at))
        .group_by(_day(session, at), rd.c.store_id, cp.c.template_id, cp.c.origin_campaign_id,
                  cp.c.origin_channel_id)
    )


def _raw(session: Session, since: datetime | None, since_day: date | None):
    """Every raw fact from ``since`` on, as (key, metrics) rows, one SELECT per source."""
    def after(col):
        return col >= since if since is not None else true()

    zero = literal(0)
    cp, rd, rv = Coupon.__table__, Redemption.__table__, RedemptionReversal.__table__
    rel, push, dl = ContactRelationship.__table__, Push.__table__, Delivery.__table__
    claimed = func.sum(case((cp.c.source.in_([s.value for s in CLAIMED_SOURCES]), 1), else_=0))
    parts = [
        select(_day(session, cp.c.issued_at).label("local_day"),
               func.coalesce(cp.c.origin_store_id, 0).label("store_id"), cp.c.template_id.label("template_id"),
               func.coalesce(cp.c.origin_campaign_id, 0).label("campaign_id"),
               func.coalesce(cp.c.origin_channel_id, 0).label("channel_id"),
               *_zero(issued=func.count(), claimed=claimed))
        .where(after(cp.c.issued_at))
        .group_by(_day(session, cp.c.issued_at), cp.c.origin_store_id, cp.c.template_id, cp.c.origin_campaign_id,
                  cp.c.origin_channel_id),
        _redemptions(session, rd.c.redeemed_at, rd.join(cp, cp.c.id == rd.c.coupon_id), after, 1),
        _redemptions(session, rv.c.reversed_at,
                     rv.join(rd, rd.c.id == rv.c.redemption_id).join(cp, cp.c.id == rd.c.coupon_id), after, -1),
        select(_day(session, rel.c.added_at).label("local_day"), func.coalesce(rel.c.store_id, 0).label("store_id"),
               zero.label("template_id"), zero.label("campaign_id"),
               func.coalesce(rel.c.channel_id, 0).label("channel_id"), *_zero(new_contacts=func.count()))
        .where(after(rel.c.added_at), rel.c.opened_by == "add")
        .group_by(_day(session, rel.c.added_at), rel.c.store_id, rel.c.channel_id),
        select(_day(session, rel.c.closed_at).label("local_day"), func.coalesce(rel.c.store_id, 0).label("store_id"),
               zero.label("template_id"), zero.label("campaign_id"),
               func.coalesce(rel.c.channel_id, 0).label("channel_id"), *_zero(lost_contacts=func.count()))
        .where(after(rel.c.closed_at), rel.c.status == RelationshipStatus.closed.value,
               func.coalesce(rel.c.close_reason, "") != REASON_TRANSFER)
        .group_by(_day(session, rel.c.closed_at), rel.c.store_id, rel.c.channel_id),
        select(_day(session, push.c.created_at).label("local_day"), zero.label("store_id"), zero.label("template_id"),
               push.c.campaign_id.label("campaign_id"), zero.label("channel_id"), *_zero(pushes_planned=func.count()))
        .where(after(push.c.created_at), push.c.delivery_id.is_not(None))
        .group_by(_day(session, push.c.created_at), push.c.campaign_id),
    ]
    for status, metric in ((DeliveryStatus.sent, "pushes_delivered"), (DeliveryStatus.over_quota, "pushes_over_quota")):
        parts.append(
            select(dl.c.local_day.label("local_day"), zero.label("store_id"), zero.label("template_id"),
                   push.c.campaign_id.label("campaign_id"), zero.label("channel_id"), *_zero(**{metric: func.count()}))
            .select_from(push.join(dl, dl.c.id == push.c.delivery_id))
            .where(dl.c.status == status.value, dl.c.local_day >= since_day if since_day else true())
            .group_by(dl.c.local_day, push.c.campaign_id)
        )
    return union_all(*parts).subquery("raw")


_IN_ORDER = [literal_column("local_day"), literal_column("circle_id"), literal_column("store_id")]  # output columns


def rebuild(session: Session, from_day: date | None = None, now: datetime | None = None) -> None:
    """Recount every day from ``from_day`` (None: all history) from the raw tables. Call at
    the start of a transaction: on PostgreSQL it must be REPEATABLE READ (``rebuild_in``)."""
    lock_cursor(session)
    day_filter = DailyStat.local_day >= from_day if from_day else true()
    session.execute(delete(DailyStat).where(day_filter))
    session.execute(delete(Tally).where(Tally.local_day >= from_day if from_day else true()))
    since = local_midnight(from_day) if from_day else None
    raw = _raw(session, since, from_day)
    # days before from_day can appear in no source (every source is filtered by its own day);
    # written in day and circle order, so a region's days are on few pages (as the live
    # roll-up leaves them: it appends each day's rows as the day goes)
    session.execute(_upsert(session, _with_attributes(raw).order_by(*_IN_ORDER)))
    # the store rollups again from the fine rows: days from from_day, whole months from its month
    first = from_day.replace(day=1) if from_day else None
    for model, since_day in ((StoreDayStat, from_day), (StoreMonthStat, first)):
        session.execute(delete(model).where(model.local_day >= since_day if since_day else true()))
    d = DailyStat.__table__
    day_rows = select(d).where(d.c.local_day >= from_day if from_day else true()).subquery("fine_days")
    month_rows = select(d).where(d.c.local_day >= first if first else true()).subquery("fine_months")
    session.execute(_upsert(session, _by_store(session, day_rows).order_by(*_IN_ORDER), StoreDayStat.__table__,
                            STORE_KEY))
    session.execute(_upsert(session, _by_store(session, month_rows, monthly=True).order_by(*_IN_ORDER),
                            StoreMonthStat.__table__, STORE_KEY))
    session.execute(update(StatCursor).where(StatCursor.id == 1).values(
        rebuilt_from=from_day, rebuilt_at=now or utcnow()))


def rebuild_in(session_factory, from_day: date | None = None, attempts: int = 5) -> None:
    """Run ``rebuild`` in its own REPEATABLE READ transaction (PostgreSQL), retrying when a
    roll-up committed under its snapshot (a serialization failure)."""
    for attempt in range(attempts):
        session = session_factory()
        try:
            if _is_pg(session):
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            rebuild(session, from_day)
            session.commit()
            return
        except OperationalError:
            session.rollback()
            if attempt == attempts - 1:
                raise
        finally:
            session.close()
