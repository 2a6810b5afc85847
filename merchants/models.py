"""Merchant-side models: regions, merchants, stores, the WeCom members who serve them, and
the stores' channel codes (渠道活码) with the scans they turned into contacts."""
from __future__ import annotations

import enum
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import JSON, CheckConstraint, Enum, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow

# Cuisine taxonomy: code -> Chinese label (English labels live in the translations).
CUISINES: dict[str, str] = {
    "sichuan": "川菜",
    "hunan": "湘菜",
    "cantonese": "粤菜",
    "dongbei": "东北菜",
    "jiangzhe": "江浙菜",
    "xibei": "西北菜",
    "hotpot": "火锅",
    "bbq": "烧烤",
    "japanese": "日料",
    "korean": "韩料",
    "western": "西餐",
    "fastfood": "快餐简餐",
    "noodles": "面馆",
    "dessert": "甜品饮品",
}


class RegionLevel(str, enum.Enum):
    city = "city"
    district = "district"
    circle = "circle"  # 商圈 (business circle)


class Region(Base):
    """City → district → business circle; managers are scoped to regions."""

    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    level: Mapped[RegionLevel] = mapped_column(Enum(RegionLevel, native_enum=False, length=16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"), index=True)

    parent: Mapped[Region | None] = relationship(remote_side=[id])

    __table_args__ = (
        UniqueConstraint("parent_id", "name"),
        # NULLs are distinct in the constraint above, so top-level names get their own index.
        Index(
            "uq_regions_top_name",
            "name",
            unique=True,
            sqlite_where=text("parent_id IS NULL"),
            postgresql_where=text("parent_id IS NULL"),
        ),
    )


class ReviewStatus(str, enum.Enum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)  # 统一社会信用代码
    contact_mobile: Mapped[str] = mapped_column(String(11))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    stores: Mapped[list[Store]] = relationship(back_populates="merchant", order_by="Store.id")


class Store(Base):
    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(255))
    circle_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)
    cuisines: Mapped[list[str]] = mapped_column(JSON, default=list)  # codes from CUISINES
    avg_spend_fen: Mapped[int] = mapped_column(default=0)
    # {"mon": [["11:00","14:00"],["17:00","21:30"]], ...}; empty = always open
    opening_hours: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[ReviewStatus] = mapped_column(
        Enum(ReviewStatus, native_enum=False, length=16), default=ReviewStatus.pending, index=True
    )
    review_reason: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None]
    # An approved store's name/address change waits here for review; ``name``/``address``
    # stay the approved (public) values until a reviewer approves the change.
    pending_name: Mapped[str | None] = mapped_column(String(100))
    pending_address: Mapped[str | None] = mapped_column(String(255))
    change_requested_at: Mapped[datetime | None]
    change_reason: Mapped[str | None] = mapped_column(Text)  # why the last change was rejected
    welcome_text: Mapped[str] = mapped_column(Text, default="")
    welcome_template_id: Mapped[int | None] = mapped_column(
        ForeignKey("coupon_templates.id", use_alter=True, ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    merchant: Mapped[Merchant] = relationship(back_populates="stores")
    circle: Mapped[Region] = relationship()
    # The coupon handed to new contacts. Named by string: coupons sit above merchants, so
    # this floor never imports them; read-only, the welcome settings write the id.
    welcome_template = relationship("CouponTemplate", foreign_keys=[welcome_template_id], viewonly=True)
    staff: Mapped[list[StoreMember]] = relationship(back_populates="store", cascade="all, delete-orphan")

    __table_args__ = (CheckConstraint("avg_spend_fen >= 0", name="avg_spend_nonneg"),)

    @property
    def has_pending_change(self) -> bool:
        return self.pending_name is not None or self.pending_address is not None


class Member(Base):
    """A WeCom corp member (staff account) as last synced from WeCom."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    userid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    # Members outside get_follow_user_list cannot hold customers (no contact-me codes).
    can_hold_customers: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class MemberGrant(Base):
    """A corp member granted to a merchant: only granted members may serve its stores and be
    handed over by it. The operator grants, or the merchant's owner adds its own staff."""

    __tablename__ = "member_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)

    member: Mapped[Member] = relationship()
    merchant: Mapped[Merchant] = relationship()

    __table_args__ = (UniqueConstraint("merchant_id", "member_id"),)


class StoreMember(Base):
    """A WeCom member serving a store; ``backup`` members take overflow past the daily cap."""

    __tablename__ = "store_members"

    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    backup: Mapped[bool] = mapped_column(default=False)
    daily_add_cap: Mapped[int | None]  # None = no cap
    leaving: Mapped[bool] = mapped_column(default=False)

    store: Mapped[Store] = relationship(back_populates="staff")
    member: Mapped[Member] = relationship()

    __table_args__ = (UniqueConstraint("store_id", "member_id"),)


# kind code -> label (lazy: rendered in the reader's language; the posters and the form use these)
CHANNEL_KINDS = {
    "door": _l("门口海报"),
    "table": _l("桌贴"),
    "receipt": _l("小票"),
    "flyer": _l("传单"),
    "other": _l("其他"),
}

STATE_MAX = 30  # WeCom's limit on contact-way ``state``


class Channel(Base):
    """A store's channel code: one WeCom contact way whose ``state`` names store and channel."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(30))
    kind: Mapped[str] = mapped_column(String(16), default="other")
    # Set once WeCom has created the contact way; NULL only inside the creating transaction.
    config_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    qr_code: Mapped[str] = mapped_column(String(512), default="")
    state: Mapped[str | None] = mapped_column(String(STATE_MAX), unique=True)
    # True: friend requests are auto-accepted only within the store's opening hours.
    auto_accept_hours_only: Mapped[bool] = mapped_column(default=False)
    # What we last told WeCom, so jobs call update_contact_way only on a change.
    users: Mapped[list[str]] = mapped_column(JSON, default=list)
    skip_verify: Mapped[bool] = mapped_column(default=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    store: Mapped[Store] = relationship()

    @property
    def kind_label(self) -> str:
        return str(CHANNEL_KINDS.get(self.kind, self.kind))


class ChannelAdd(Base):
    """A scan that became a contact: one row per channel and diner, from the add event."""

    __tablename__ = "channel_adds"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    external_userid: Mapped[str] = mapped_column(String(64))
    member_userid: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("channel_id", "external_userid"),
        Index("ix_channel_adds_member_day", "member_userid", "added_at"),
    )
