"""Per-template counts for the coupon pages and the desk's latest redemptions, read from the
raw tables (all time, grouped). The dashboards read the statistics' rollups (``stats``)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coupons.models import Coupon, CouponTemplate, Redemption
from merchants.models import Store


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
