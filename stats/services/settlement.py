"""The monthly settlement statement: per merchant, the coupons redeemed at its tills in one
Asia/Shanghai calendar month, the discounts split by who funds them, and what the platform owes
it for the platform-funded ones.

Read from the rollups plus the tallies still waiting (``report.facts``), so it is current and
goes through the viewer's scope: the admin all merchants, a manager the tills in their
circles (a merchant with stores elsewhere shows only the part in the manager's regions), an
owner their own merchant. A redemption's row carries the till store's merchant, the one the
platform pays. A reversal counts on its own day with the discount and bill taken back
(negative), so every figure is net of reversals, and one made in the next month lowers that
month's statement, not the closed one.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass, fields
from datetime import date

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from coupons.models import CouponTemplate, FundedBy
from merchants.models import Merchant
from stats.services import report


@dataclass
class Line:
    """One merchant's month (amounts in fen; counts and amounts net of reversals)."""

    merchant_id: int
    name: str
    redeemed: int = 0
    platform_redeemed: int = 0  # of which on platform-funded coupons
    merchant_discount_fen: int = 0
    platform_discount_fen: int = 0
    bill_fen: int = 0

    @property
    def discount_fen(self) -> int:
        return self.merchant_discount_fen + self.platform_discount_fen

    @property
    def owed_fen(self) -> int:
        """What the platform pays the merchant: the platform-funded discounts it gave."""
        return self.platform_discount_fen


SUMMED = tuple(f.name for f in fields(Line) if f.name not in ("merchant_id", "name"))


def month_range(month: date) -> tuple[date, date]:
    """The first and last local day of ``month``'s calendar month."""
    first = month.replace(day=1)
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def statement(session: Session, scope: report.Scope, month: date) -> list[Line]:
    """One line per merchant with redemptions (or reversals) in the month, by merchant id:
    one grouped query over the facts joined to the templates, one for the names."""
    start, end = month_range(month)
    f = report.facts(scope, report.Query(start=start, end=end), fine=True)  # split by template
    t = CouponTemplate.__table__
    rows = session.execute(
        select(f.c.merchant_id, t.c.funded_by,
               func.coalesce(func.sum(f.c.redeemed - f.c.reversed), 0),
               func.coalesce(func.sum(f.c.discount_fen), 0),
               func.coalesce(func.sum(f.c.bill_fen), 0))
        .select_from(f.join(t, t.c.id == f.c.template_id))
        .where(f.c.merchant_id != 0, or_(f.c.redeemed != 0, f.c.reversed != 0))
        .group_by(f.c.merchant_id, t.c.funded_by)
    ).all()
    ids = sorted({r[0] for r in rows})
    names = {i: n for i, n in session.execute(select(Merchant.id, Merchant.name).where(Merchant.id.in_(ids)))} if ids else {}
    lines = {i: Line(i, names.get(i, f"#{i}")) for i in ids}
    for merchant_id, funded_by, redeemed, discount, bill in rows:
        line = lines[merchant_id]
        line.redeemed += int(redeemed)
        line.bill_fen += int(bill)
        if FundedBy(funded_by) == FundedBy.platform:
            line.platform_redeemed += int(redeemed)
            line.platform_discount_fen += int(discount)
        else:
            line.merchant_discount_fen += int(discount)
    return [lines[i] for i in ids]


def total(lines: list[Line]) -> Line:
    """The statement's totals line (merchant id 0)."""
    out = Line(0, "")
    for line in lines:
        for name in SUMMED:
            setattr(out, name, getattr(out, name) + getattr(line, name))
    return out
