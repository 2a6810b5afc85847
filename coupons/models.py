"""Coupon models: templates a merchant defines, coupons issued to diners, redemptions at the till.

Money is integer fen everywhere. ``CouponTemplate.value`` depends on ``kind``:

- ``amount_off`` (满减): fen off when the bill reaches ``min_spend_fen`` (> 0);
- ``percent_off`` (折扣): the percentage the diner *pays*, 1..99 (85 = 八五折 = 15% off),
  the discount is capped at ``cap_fen`` (required);
- ``voucher`` (代金券): face value in fen, usable against any bill (optionally a minimum spend).

Local rules (weekdays, hours, date ranges) are read in ``LOCAL_TZ`` (Asia/Shanghai); stored
timestamps are aware UTC. Nothing is deleted: a reversal is a row of its own and the
redemption it undoes is flagged ``reversed``.
"""
from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    Enum,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow


class CouponKind(str, enum.Enum):
    amount_off = "amount_off"  # 满减
    percent_off = "percent_off"  # 折扣
    voucher = "voucher"  # 代金券


class FundedBy(str, enum.Enum):
    merchant = "merchant"
    platform = "platform"


class TemplateStatus(str, enum.Enum):
    draft = "draft"
    active = "active"
    paused = "paused"
    ended = "ended"


class CouponSource(str, enum.Enum):
    """How a coupon reached the diner (the statistics' "claimed" counts the diner's own claims)."""

    welcome = "welcome"  # the store's welcome coupon, on adding its staff
    store = "store"  # claimed on the store page
    campaign = "campaign"  # claimed from a campaign's card
    other = "other"  # issued by the operator, a script, or before sources were kept


CLAIMED_SOURCES = (CouponSource.store, CouponSource.campaign)


class CouponStatus(str, enum.Enum):
    issued = "issued"
    redeemed = "redeemed"
    expired = "expired"
    void = "void"


ALL_WEEKDAYS = 0b1111111  # bit 0 = Monday … bit 6 = Sunday (datetime.weekday())


def _enum(cls):
    return Enum(cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


coupon_template_stores = Table(
    "coupon_template_stores",
    Base.metadata,
    Column("template_id", ForeignKey("coupon_templates.id", ondelete="CASCADE"), primary_key=True),
    Column("store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class CouponTemplate(Base):
    """What a merchant offers. No stores listed means every store of the merchant."""

    __tablename__ = "coupon_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[CouponKind] = mapped_column(_enum(CouponKind))
    value: Mapped[int]  # fen, or payable percent for percent_off (see module docstring)
    cap_fen: Mapped[int | None]  # max discount (percent_off)
    min_spend_fen: Mapped[int] = mapped_column(default=0)
    # validity: a local date range, or N days from the moment of issue
    valid_from: Mapped[date | None]
    valid_until: Mapped[date | None]  # inclusive
    valid_days: Mapped[int | None]
    weekdays_mask: Mapped[int] = mapped_column(default=ALL_WEEKDAYS)
    # usable hours, minutes after local midnight, [start, end); both None = all day
    hours_start: Mapped[int | None]
    hours_end: Mapped[int | None]
    total_stock: Mapped[int | None]  # None = unlimited
    issued_count: Mapped[int] = mapped_column(default=0)
    per_diner_limit: Mapped[int] = mapped_column(default=1)
    funded_by: Mapped[FundedBy] = mapped_column(_enum(FundedBy), default=FundedBy.merchant)
    status: Mapped[TemplateStatus] = mapped_column(
        _enum(TemplateStatus), default=TemplateStatus.draft, index=True
    )
    description: Mapped[str] = mapped_column(Text, default="")
    # the merchant lets diners claim it themselves on the store page (/m/s/<id>)
    claimable: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    stores = relationship("Store", secondary=coupon_template_stores, order_by="Store.id")

    __table_args__ = (
        CheckConstraint("value > 0", name="value_positive"),
        CheckConstraint("kind <> 'percent_off' OR (value BETWEEN 1 AND 99)", name="percent_range"),
        CheckConstraint("kind <> 'percent_off' OR cap_fen IS NOT NULL", name="percent_needs_cap"),
        CheckConstraint("cap_fen IS NULL OR cap_fen > 0", name="cap_positive"),
        CheckConstraint("min_spend_fen >= 0", name="min_spend_nonneg"),
        CheckConstraint(
            "kind <> 'amount_off' OR min_spend_fen >= value", name="amount_off_min_spend"
        ),
        CheckConstraint(
            "(valid_days IS NOT NULL AND valid_days > 0 AND valid_from IS NULL AND valid_until IS NULL)"
            " OR (valid_days IS NULL AND valid_from IS NOT NULL AND valid_until IS NOT NULL"
            " AND valid_until >= valid_from)",
            name="validity",
        ),
        CheckConstraint("weekdays_mask BETWEEN 1 AND 127", name="weekdays"),
        CheckConstraint(
            "(hours_start IS NULL AND hours_end IS NULL) OR (hours_start >= 0"
            " AND hours_end <= 1440 AND hours_start < hours_end)",
            name="hours",
        ),
        CheckConstraint("total_stock IS NULL OR total_stock > 0", name="stock_positive"),
        CheckConstraint(
            "issued_count >= 0 AND (total_stock IS NULL OR issued_count <= total_stock)",
            name="issued_within_stock",
        ),
        CheckConstraint("per_diner_limit >= 1", name="per_diner_limit"),
    )


class Coupon(Base):
    """One coupon in a diner's hands. ``holder_ref`` is the diner key (a WeCom external userid
    or ``r:<resident id>``); ``resident_id`` is wired by the residents work (issue 4).
    ``holder_seq`` numbers a diner's coupons of one template so the per-diner limit is a
    unique constraint, not a count that races."""

    __tablename__ = "coupons"

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("coupon_templates.id"), index=True)
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"), index=True)
    holder_ref: Mapped[str] = mapped_column(String(128), index=True)
    holder_seq: Mapped[int] = mapped_column(default=1)
    short_code: Mapped[str] = mapped_column(String(16), unique=True)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # rebuilds read by day
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]  # exclusive
    status: Mapped[CouponStatus] = mapped_column(
        _enum(CouponStatus), default=CouponStatus.issued, index=True
    )
    redeemed_at: Mapped[datetime | None]
    redeemed_store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    bill_fen: Mapped[int | None]
    discount_fen: Mapped[int | None]
    # Where it came from, for the statistics: the store, contact-me code and campaign it is
    # credited to (a redemption is credited to the campaign and code that brought the coupon).
    source: Mapped[CouponSource] = mapped_column(
        _enum(CouponSource), default=CouponSource.other, server_default=CouponSource.other.value
    )
    origin_store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id", ondelete="SET NULL"))
    origin_channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    origin_campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))

    template: Mapped[CouponTemplate] = relationship()

    __table_args__ = (
        UniqueConstraint("template_id", "holder_ref", "holder_seq"),
        CheckConstraint("holder_seq >= 1", name="holder_seq"),
        CheckConstraint("valid_until > valid_from", name="validity"),
        CheckConstraint(
            "status <> 'redeemed' OR (redeemed_at IS NOT NULL AND bill_fen IS NOT NULL"
            " AND discount_fen IS NOT NULL)",
            name="redeemed_fields",
        ),
        CheckConstraint("bill_fen IS NULL OR bill_fen > 0", name="bill_positive"),
        CheckConstraint(
            "discount_fen IS NULL OR (discount_fen >= 0 AND discount_fen <= bill_fen)",
            name="discount_within_bill",
        ),
    )


class Redemption(Base):
    """A coupon used at the till. At most one live (not reversed) redemption per coupon, by a
    partial unique index; a reversed one stays as history and the coupon may be used again."""

    __tablename__ = "redemptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    coupon_id: Mapped[int] = mapped_column(ForeignKey("coupons.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    cashier_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: the POS, by API key
    bill_fen: Mapped[int]
    discount_fen: Mapped[int]
    redeemed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    reversed: Mapped[bool] = mapped_column(default=False)

    coupon: Mapped[Coupon] = relationship()

    __table_args__ = (
        Index(
            "uq_redemptions_live_coupon",
            "coupon_id",
            unique=True,
            sqlite_where=text("NOT reversed"),
            postgresql_where=text("NOT reversed"),
        ),
        CheckConstraint("bill_fen > 0", name="bill_positive"),
        CheckConstraint("discount_fen >= 0 AND discount_fen <= bill_fen", name="discount_within_bill"),
    )


class RedemptionReversal(Base):
    """An owner undoing a redemption (within 10 minutes); one per redemption."""

    __tablename__ = "redemption_reversals"

    id: Mapped[int] = mapped_column(primary_key=True)
    redemption_id: Mapped[int] = mapped_column(ForeignKey("redemptions.id"), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: the POS, by API key
    reason: Mapped[str] = mapped_column(String(255), default="")
    reversed_at: Mapped[datetime] = mapped_column(default=utcnow)
