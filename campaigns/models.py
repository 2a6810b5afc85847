"""Campaigns, their state history and the push ledger that every cap counts.

The ledger has one row per (campaign, resident): a unique key, not a check in Python, keeps
two planners (or a replayed job) from counting or sending one campaign to a diner twice —
Mautic's duplicate sends (#9880) come from an exclusion query with no key behind it. Rows
carry the local day (Asia/Shanghai) they count for, so calendar caps (per day, week, month)
are ranges over an index."""
from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow


def _enum(cls):
    return Enum(cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class CampaignState(str, enum.Enum):
    draft = "draft"
    scheduled = "scheduled"
    planning = "planning"
    sending = "sending"
    tracking = "tracking"
    done = "done"
    paused = "paused"
    cancelled = "cancelled"


class Channels(str, enum.Enum):
    private = "private"  # WeCom private chat (add_msg_template, chat_type single)
    groups = "groups"  # customer groups (chat_type group)
    both = "both"


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Exactly one owner: a merchant (its stores) or a region (a manager's circles, platform-funded).
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # What the diner reads above the cards, and the reason they are sent it.
    message: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(120))
    # The audience rule (campaigns.services.audience.AudienceRule, validated on save).
    audience: Mapped[dict] = mapped_column(JSON, default=dict)
    channels: Mapped[Channels] = mapped_column(_enum(Channels), default=Channels.private)
    send_from: Mapped[datetime]
    send_until: Mapped[datetime]
    # Quiet hours, minutes after local midnight: nothing is handed to WeCom from start to end
    # (start > end wraps past midnight; 21:00–09:00 by default).
    quiet_start: Mapped[int] = mapped_column(Integer, default=21 * 60)
    quiet_end: Mapped[int] = mapped_column(Integer, default=9 * 60)
    state: Mapped[CampaignState] = mapped_column(_enum(CampaignState), default=CampaignState.draft, index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    templates: Mapped[list[CampaignTemplate]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="CampaignTemplate.position"
    )
    transitions: Mapped[list[CampaignTransition]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="CampaignTransition.id"
    )

    __table_args__ = (
        CheckConstraint("(merchant_id IS NULL) <> (region_id IS NULL)", name="one_owner"),
        CheckConstraint("send_until > send_from", name="window"),
        CheckConstraint("quiet_start BETWEEN 0 AND 1439 AND quiet_end BETWEEN 0 AND 1439", name="quiet_hours"),
    )


class CampaignTemplate(Base):
    """A coupon template the campaign hands out (in the order the cards show)."""

    __tablename__ = "campaign_templates"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("coupon_templates.id"), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)

    campaign: Mapped[Campaign] = relationship(back_populates="templates")


class CampaignTransition(Base):
    """Every state change: from, to, who (None: the system) and when."""

    __tablename__ = "campaign_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[CampaignState | None] = mapped_column(_enum(CampaignState))
    to_state: Mapped[CampaignState] = mapped_column(_enum(CampaignState))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    note: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)

    campaign: Mapped[Campaign] = relationship(back_populates="transitions")


class PushStatus(str, enum.Enum):
    planned = "planned"  # counts against every cap from the moment it is planned
    sent = "sent"  # WeCom says delivered (status 1)
    over_quota = "over_quota"  # WeCom refused: the diner's receive quota was used (status 3)
    not_contact = "not_contact"  # WeCom: no longer a contact (status 2); does not count
    released = "released"  # cancelled or never sent; does not count


# Rows in these states use up a slot of every cap (WeCom counted status 3 too).
COUNTING = (PushStatus.planned, PushStatus.sent, PushStatus.over_quota)


class Push(Base):
    """One campaign push to one resident (private chat) or one group: the budget's ledger."""

    __tablename__ = "pushes"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"))
    chat_id: Mapped[str | None] = mapped_column(String(64))  # a customer group
    local_day: Mapped[date] = mapped_column(Date)  # the Asia/Shanghai day the push counts for
    status: Mapped[PushStatus] = mapped_column(_enum(PushStatus), default=PushStatus.planned)
    score: Mapped[float] = mapped_column(Float, default=0.0)  # predicted interest when planned
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("(resident_id IS NULL) <> (chat_id IS NULL)", name="one_target"),
        UniqueConstraint("campaign_id", "resident_id", name="uq_pushes_campaign_resident"),
        UniqueConstraint("campaign_id", "chat_id", name="uq_pushes_campaign_chat"),
        Index("ix_pushes_resident_day", "resident_id", "local_day"),
        Index("ix_pushes_chat_day", "chat_id", "local_day"),
    )
