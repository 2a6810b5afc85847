"""Campaigns, their state history, the planner's decisions and the send ledger.

``pushes`` has one row per (campaign, resident): a unique key, not a check in Python, keeps
two planners (or a replayed job) from deciding — and so sending — one campaign to a diner
twice (Mautic's duplicate sends, #9880, come from an exclusion query with no key behind it).
A matched push points at its ``delivery``: one message to one resident, carrying the cards of
every campaign planned with it (a digest). Deliveries are what every cap counts, by the local
day (Asia/Shanghai) they count for, so calendar caps are ranges over an index. Deliveries sit
in ``send_chunks``, one per WeCom task, written before WeCom is called."""
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
    # The planning round that decided its audience (campaigns due at one tick plan together).
    round_id: Mapped[int | None] = mapped_column(ForeignKey("plan_rounds.id", ondelete="SET NULL"), index=True)
    # Send errors so far; the campaign pauses itself at CAMPAIGN_MAX_SEND_ERRORS.
    send_errors: Mapped[int] = mapped_column(Integer, default=0)
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


class Decision(str, enum.Enum):
    """What the planner decided for one (campaign, resident): the diner's and the portal's "why"."""

    matched = "matched"  # a card in the resident's digest
    outbid = "outbid"  # wanted, but other campaigns' cards were more interesting (or fairer)
    capped = "capped"  # no slot left under WeCom's quota, our monthly cap or the diner's own
    opted_out = "opted_out"  # "quiet me": off
    unreachable = "unreachable"  # no open relationship with any member
    erased = "erased"


class Push(Base):
    """One campaign's decision about one resident (private chat) or one group, and the message
    (``delivery``) that carries its card when it was matched."""

    __tablename__ = "pushes"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"))
    chat_id: Mapped[str | None] = mapped_column(String(64))  # a customer group
    decision: Mapped[Decision] = mapped_column(_enum(Decision), default=Decision.matched)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="SET NULL"), index=True)
    score: Mapped[float] = mapped_column(Float, default=0.0)  # predicted interest when planned
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("(resident_id IS NULL) <> (chat_id IS NULL)", name="one_target"),
        UniqueConstraint("campaign_id", "resident_id", name="uq_pushes_campaign_resident"),
        UniqueConstraint("campaign_id", "chat_id", name="uq_pushes_campaign_chat"),
        Index("ix_pushes_resident", "resident_id"),
    )


class DeliveryStatus(str, enum.Enum):
    planned = "planned"  # counts against every cap from the moment it is planned
    sent = "sent"  # WeCom: delivered (status 1)
    over_quota = "over_quota"  # WeCom refused: the receive quota was used (status 3); counts
    not_contact = "not_contact"  # WeCom: no longer a contact (status 2); does not count
    unsent = "unsent"  # cancelled, expired unconfirmed, or the member left them out; does not count


# Messages in these states use up a slot of every cap (WeCom counts status 3 too).
COUNTING = (DeliveryStatus.planned, DeliveryStatus.sent, DeliveryStatus.over_quota)


class PlanRound(Base):
    """One planning run over the campaigns due at one clock tick: planned together, so their
    cards share digests and compete for the same slots. The audience is walked by resident id
    up to a bound frozen at the start (``upper_id``); ``cursor_id`` is the last id whose
    decisions are stored, so a killed planner resumes where it stopped."""

    __tablename__ = "plan_rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="planning")  # planning | planned
    upper_id: Mapped[int] = mapped_column(Integer, default=0)
    cursor_id: Mapped[int] = mapped_column(Integer, default=0)
    local_day: Mapped[date] = mapped_column(Date)  # the day its messages count for
    min_calls: Mapped[int] = mapped_column(Integer, default=0)  # Σ ⌈recipients / 10,000⌉
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ChunkState(str, enum.Enum):
    filling = "filling"  # the planner is still adding recipients
    planned = "planned"  # complete, waiting for its turn (window, quiet hours)
    claimed = "claimed"  # a worker holds its lease and may be calling WeCom right now
    submitted = "submitted"  # WeCom created the task (``msgid``); the member must confirm
    confirmed = "confirmed"  # the member sent it and every recipient got it
    partial = "partial"  # sent, but some recipients did not get it (not a contact, over quota)
    failed = "failed"  # WeCom refused it for good (``errcode``)
    cancelled = "cancelled"  # withdrawn before the member confirmed (or never handed over)


OPEN_CHUNK_STATES = (ChunkState.filling, ChunkState.planned, ChunkState.claimed)
FINAL_CHUNK_STATES = (ChunkState.confirmed, ChunkState.partial, ChunkState.failed, ChunkState.cancelled)


class SendChunk(Base):
    """One ``add_msg_template`` task: one sending member, one card set (the campaigns whose
    cards the message carries), at most 10,000 diners or 2,000 groups (its deliveries).

    The row exists before WeCom is called and records every step after: claimed (with a lease
    and a claim token), submitted (the ``msgid``), then what the member and WeCom did. The
    ``token`` is in every card's link, so a worker that died between the call and storing the
    msgid finds its task again in ``get_groupmsg_list_v2`` by content instead of calling twice."""

    __tablename__ = "send_chunks"

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("plan_rounds.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    card_set: Mapped[str] = mapped_column(String(120))  # campaign ids, best first: "12,7"
    chat_type: Mapped[str] = mapped_column(String(8), default="single")  # single (diners) | group (chat_id_list)
    number: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[ChunkState] = mapped_column(_enum(ChunkState), default=ChunkState.filling)
    token: Mapped[str] = mapped_column(String(32), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims so far
    calls: Mapped[int] = mapped_column(Integer, default=0)  # add_msg_template calls made for it
    claim_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None]
    first_claimed_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    msgid: Mapped[str | None] = mapped_column(String(128), index=True)
    submitted_at: Mapped[datetime | None]
    tracked_at: Mapped[datetime | None]
    reminders: Mapped[list] = mapped_column(JSON, default=list)  # when we reminded (epoch seconds)
    errcode: Mapped[int | None]
    error: Mapped[str] = mapped_column(String(300), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("round_id", "member_id", "chat_type", "card_set", "number", name="uq_send_chunks_key"),
        Index("ix_send_chunks_state", "state"),
    )


class Delivery(Base):
    """One message (a digest of one or more cards) to one resident or one group, in one chunk:
    the ledger every cap counts, and WeCom's per-recipient answer once the member has sent."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    chunk_id: Mapped[int] = mapped_column(ForeignKey("send_chunks.id", ondelete="CASCADE"), index=True)
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"))
    chat_id: Mapped[str | None] = mapped_column(String(64))
    local_day: Mapped[date] = mapped_column(Date)  # the Asia/Shanghai day it counts for
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus), default=DeliveryStatus.planned)
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("(resident_id IS NULL) <> (chat_id IS NULL)", name="one_target"),
        UniqueConstraint("chunk_id", "resident_id", name="uq_deliveries_chunk_resident"),
        Index("ix_deliveries_resident_day", "resident_id", "local_day"),
        Index("ix_deliveries_chat_day", "chat_id", "local_day"),
    )


class CampaignClaim(Base):
    """A coupon a diner claimed on a campaign's claim page (``/m/o/<campaign>``): which
    campaign it came from and the send chunk's ``token`` from the card's link (``?k=``),
    kept for attribution only. One row per coupon."""

    __tablename__ = "campaign_claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    coupon_id: Mapped[int] = mapped_column(ForeignKey("coupons.id"), unique=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("coupon_templates.id"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    token: Mapped[str] = mapped_column(String(40), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
