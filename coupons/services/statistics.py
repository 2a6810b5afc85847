"""Store statistics: issued and redeemed per template, per local day, and the desk's latest
redemptions. Grouped queries only: a dashboard costs the same whatever the history."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.localtime import as_utc, local, local_midnight
from coupons.models import Coupon, CouponTemplate, Redemption
from merchants.models import Store


def _local_day(session: Session, column):
    """A UTC timestamp column as its Asia/Shanghai calendar day (text 'YYYY-MM-DD')."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("Asia/Shanghai", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column, "+8 hours")


@dataclass
class TemplateStats:
    template_id: int
    name: str
    status: str
    issued: int
    redeemed: int
    discount_fen: int
    bill_fen: int

    @property
    def rate(self) -> float:
        return self.redeemed / self.issued if self.issued else 0.0


def template_stats(session: Session, merchant_id: int, store_id: int | None = None) -> list[TemplateStats]:
    """Issued and redeemed per template (two grouped queries); redemptions limited to
    ``store_id`` when given. Reversed redemptions don't count."""
    red_filter = [Redemption.reversed.is_(False)]
    if store_id is not None:
        red_filter.append(Redemption.store_id == store_id)
    redeemed = (
        select(
            Coupon.template_id.label("tid"),
            func.count(Redemption.id).label("n"),
            func.coalesce(func.sum(Redemption.discount_fen), 0).label("disc"),
            func.coalesce(func.sum(Redemption.bill_fen), 0).label("bill"),
        )
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        # this merchant's redemptions only: a small shop must not pay for the chain's history
        .where(*red_filter, CouponTemplate.merchant_id == merchant_id)
        .group_by(Coupon.template_id)
        .subquery()
    )
    rows = session.execute(
        select(
            CouponTemplate.id, CouponTemplate.name, CouponTemplate.status, CouponTemplate.issued_count,
            func.coalesce(redeemed.c.n, 0), func.coalesce(redeemed.c.disc, 0),
            func.coalesce(redeemed.c.bill, 0),
        )
        .outerjoin(redeemed, redeemed.c.tid == CouponTemplate.id)
        .where(CouponTemplate.merchant_id == merchant_id)
        .order_by(CouponTemplate.id)
    )
    return [
        TemplateStats(tid, name, getattr(status, "value", status), issued, int(n), int(d), int(b))
        for tid, name, status, issued, n, d, b in rows
    ]


def totals(stats: list[TemplateStats]) -> dict:
    """The dashboard's headline numbers over ``template_stats`` rows."""
    out = {
        "issued": sum(s.issued for s in stats), "redeemed": sum(s.redeemed for s in stats),
        "discount_fen": sum(s.discount_fen for s in stats), "bill_fen": sum(s.bill_fen for s in stats),
    }
    out["rate"] = out["redeemed"] / out["issued"] if out["issued"] else 0.0
    return out


@dataclass
class DayStats:
    day: str
    issued: int = 0
    redeemed: int = 0
    discount_fen: int = 0
    bill_fen: int = 0


def daily_stats(
    session: Session, merchant_id: int, store_id: int | None = None, days: int = 30,
    now: datetime | None = None,
) -> list[DayStats]:
    """Per local day over the last ``days``: coupons issued, redemptions, discount, bills."""
    now = as_utc(now)
    since = local_midnight(local(now).date() - timedelta(days=days - 1))
    issued_day = _local_day(session, Coupon.issued_at)
    issued = session.execute(
        select(issued_day, func.count(Coupon.id))
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        .where(CouponTemplate.merchant_id == merchant_id, Coupon.issued_at >= since)
        .group_by(issued_day)
    )
    red_day = _local_day(session, Redemption.redeemed_at)
    conds = [CouponTemplate.merchant_id == merchant_id, Redemption.redeemed_at >= since,
             Redemption.reversed.is_(False)]
    if store_id is not None:
        conds.append(Redemption.store_id == store_id)
    redeemed = session.execute(
        select(red_day, func.count(Redemption.id), func.sum(Redemption.discount_fen),
               func.sum(Redemption.bill_fen))
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        .where(*conds)
        .group_by(red_day)
    )
    out: dict[str, DayStats] = {}
    for day, n in issued:
        out.setdefault(day, DayStats(day)).issued = int(n)
    for day, n, disc, bill in redeemed:
        s = out.setdefault(day, DayStats(day))
        s.redeemed, s.discount_fen, s.bill_fen = int(n), int(disc or 0), int(bill or 0)
    return [out[d] for d in sorted(out, reverse=True)]


def recent_redemptions(session: Session, merchant_id: int, store_id: int | None = None, limit: int = 20):
    """Latest redemptions with coupon, template and store in one query (desk history)."""
    stmt = (
        select(Redemption, Coupon, CouponTemplate, Store)
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(CouponTemplate, CouponTemplate.id == Coupon.template_id)
        .join(Store, Store.id == Redemption.store_id)
        .where(CouponTemplate.merchant_id == merchant_id)
        .order_by(Redemption.redeemed_at.desc(), Redemption.id.desc())
        .limit(limit)
    )
    if store_id is not None:
        stmt = stmt.where(Redemption.store_id == store_id)
    return list(session.execute(stmt))
