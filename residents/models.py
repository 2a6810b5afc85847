"""Diners (residents), their WeCom relationships, taste profile, tags and staff handovers.

A *resident* is one WeChat user as the corp sees them: keyed by ``external_userid`` (stable
per corp) and, when WeCom tells us, ``unionid`` (which the official-account OAuth also
yields, so pages opened from mass messages find the same resident). A *relationship* is
one (resident, serving member, store) edge: WeCom's contact is member↔diner, the store is
our attribution of where the diner scanned. A resident with no open relationship is
unreachable and excluded from pushes.
"""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow


def _enum(cls):
    return Enum(cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class Resident(Base):
    __tablename__ = "residents"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_userid: Mapped[str] = mapped_column(String(128), unique=True)
    unionid: Mapped[str | None] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    avatar: Mapped[str] = mapped_column(String(512), default="")
    # "quiet me": no campaign pushes at all, or at most this many a month (None = no own cap)
    opted_out: Mapped[bool] = mapped_column(default=False)
    monthly_cap: Mapped[int | None]
    # Some member can still message the resident (an open relationship exists). Kept by
    # ``residents.services.refresh_reachable`` wherever relationships open or close, so an
    # audience of a million reads a column instead of probing relationships per row.
    reachable: Mapped[bool] = mapped_column(default=False, server_default=false())
    # taste survey answers (cuisines go to taste_signals)
    spice_level: Mapped[int | None]  # 0 none … 3 very hot
    budget_fen: Mapped[int | None]  # typical spend per person
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    erased_at: Mapped[datetime | None]  # privacy erase: personal fields blanked, rows kept

    relationships: Mapped[list[ContactRelationship]] = relationship(
        back_populates="resident", order_by="ContactRelationship.id"
    )

    __table_args__ = (
        CheckConstraint("monthly_cap IS NULL OR monthly_cap >= 0", name="monthly_cap"),
        CheckConstraint("spice_level IS NULL OR spice_level BETWEEN 0 AND 3", name="spice_level"),
        CheckConstraint("budget_fen IS NULL OR budget_fen >= 0", name="budget"),
    )


class RelationshipStatus(str, enum.Enum):
    open = "open"
    closed = "closed"


class ContactRelationship(Base):
    """Diner ↔ serving member, attributed to the store (and channel) where they scanned."""

    __tablename__ = "contact_relationships"

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), index=True)
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id"), index=True)
    status: Mapped[RelationshipStatus] = mapped_column(
        _enum(RelationshipStatus), default=RelationshipStatus.open, index=True
    )
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    # del_external_contact (member removed diner) / del_follow_user (diner removed member) /
    # transfer (moved to another member)
    close_reason: Mapped[str | None] = mapped_column(String(32))
    # "add" (the diner added the member: a new contact in the statistics) or "transfer"
    # (a handover moved an existing contact here: not new)
    opened_by: Mapped[str] = mapped_column(String(16), default="add", server_default="add")
    # the store's welcome coupon handed out on this add (once per resident and store)
    welcome_coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id", ondelete="SET NULL"))

    resident: Mapped[Resident] = relationship(back_populates="relationships")

    __table_args__ = (UniqueConstraint("resident_id", "member_id", "store_id"),)


class SignalSource(str, enum.Enum):
    scan = "scan"  # scanned a store of that cuisine
    survey = "survey"  # answered the taste survey
    redeem = "redeem"  # redeemed a coupon at a store of that cuisine
    staff_tag = "staff_tag"  # tagged by staff in WeCom


class TasteSignal(Base):
    """One piece of evidence that a resident likes a cuisine. ``ref`` makes each piece of
    evidence count once (``store:12``, ``coupon:34``, ``survey``, ``tag:<id>``), so callback
    retries and repeated scans do not inflate the profile. The weight decays with age when
    the profile is computed; ``observed_at`` is refreshed when the same evidence recurs."""

    __tablename__ = "taste_signals"

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    cuisine: Mapped[str] = mapped_column(String(32))
    source: Mapped[SignalSource] = mapped_column(_enum(SignalSource))
    ref: Mapped[str] = mapped_column(String(64), default="")
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    observed_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("resident_id", "cuisine", "source", "ref"),)


class ResidentTaste(Base):
    """The taste profile kept in SQL, one row per (resident, cuisine), so an audience of a
    million residents filters on it with an index instead of decaying every signal in Python.

    ``score`` is the profile's decayed sum expressed at a fixed epoch (``taste.SCORE_EPOCH``):
    Σ weight · 2^((observed_at − epoch) / half-life). The score on any day is ``score`` ·
    2^(−(day − epoch) / half-life), the same factor for every row, so "profile weight at least
    w today" is ``score >= w · 2^((today − epoch) / half-life)``: one constant per query.
    Written by ``residents.taste`` whenever a resident's signals change."""

    __tablename__ = "resident_tastes"

    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True)
    cuisine: Mapped[str] = mapped_column(String(32), primary_key=True)
    score: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_resident_tastes_cuisine_score", "cuisine", "score"),)


class CorpTag(Base):
    """Our view of a WeCom corp tag we manage: ``key`` is ours (``cuisine:sichuan``,
    ``circle:12``), ``tag_id``/``group_id`` are WeCom's, filled once ``add_corp_tag`` ran."""

    __tablename__ = "corp_tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    group_name: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    tag_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    group_id: Mapped[str | None] = mapped_column(String(64))


class ResidentTag(Base):
    """The local tag relation: the truth about which tags a resident should carry with a
    member. ``synced_at`` is NULL while a write to WeCom is pending (and retried)."""

    __tablename__ = "resident_tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    corp_tag_id: Mapped[int] = mapped_column(ForeignKey("corp_tags.id"), index=True)
    wanted: Mapped[bool] = mapped_column(default=True)  # False = to be removed in WeCom
    synced_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(255))

    corp_tag: Mapped[CorpTag] = relationship()

    __table_args__ = (
        UniqueConstraint("resident_id", "member_id", "corp_tag_id"),
        Index("ix_resident_tags_pending", "synced_at"),
    )


class TransferKind(str, enum.Enum):
    resigned = "resigned"  # 离职继承
    on_job = "on_job"  # 在职继承


class TransferStatus(str, enum.Enum):
    running = "running"
    done = "done"
    failed = "failed"


class MemberTransfer(Base):
    """A leaving member's customers (and groups) handed to a colleague, in batches of 100."""

    __tablename__ = "member_transfers"

    id: Mapped[int] = mapped_column(primary_key=True)
    from_member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    to_member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    # the merchant whose stores' customers move: tenant scope of the transfer pages
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    kind: Mapped[TransferKind] = mapped_column(_enum(TransferKind))
    success_msg: Mapped[str] = mapped_column(String(200), default="")  # on-job transfer_success_msg
    status: Mapped[TransferStatus] = mapped_column(_enum(TransferStatus), default=TransferStatus.running)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    total: Mapped[int] = mapped_column(default=0)
    groups_total: Mapped[int] = mapped_column(default=0)
    groups_done: Mapped[int] = mapped_column(default=0)
    groups_sent_at: Mapped[datetime | None]  # customer groups handed over (or tried)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    items: Mapped[list[TransferItem]] = relationship(back_populates="transfer", order_by="TransferItem.id")


class TransferItemStatus(str, enum.Enum):
    queued = "queued"  # not yet sent to WeCom
    waiting = "waiting"  # accepted by WeCom, takeover pending (transfer_result status 2)
    done = "done"  # transfer_result 1 / transfer_fail never came
    refused = "refused"  # the diner refused (status 3) or WeCom refused the item
    failed = "failed"  # other errors (errcode kept)


class TransferItem(Base):
    __tablename__ = "transfer_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("member_transfers.id", ondelete="CASCADE"), index=True)
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"), index=True)
    external_userid: Mapped[str] = mapped_column(String(128))
    batch: Mapped[int] = mapped_column(default=0)
    status: Mapped[TransferItemStatus] = mapped_column(
        _enum(TransferItemStatus), default=TransferItemStatus.queued, index=True
    )
    errcode: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    transfer: Mapped[MemberTransfer] = relationship(back_populates="items")

    __table_args__ = (UniqueConstraint("transfer_id", "external_userid"),)


class GroupStatus(str, enum.Enum):
    active = "active"
    dismissed = "dismissed"  # the owner dismissed it, or WeCom no longer lists it


class CustomerGroup(Base):
    """A WeCom customer group (客户群), as ``groupchat/get`` last described it. Linked to the
    store its owner serves (when the owner serves exactly one) and that store's circle, so
    group campaigns find a store's or a circle's groups."""

    __tablename__ = "customer_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    owner_userid: Mapped[str] = mapped_column(String(64), default="")
    owner_member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id", ondelete="SET NULL"), index=True)
    circle_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"), index=True)
    status: Mapped[GroupStatus] = mapped_column(_enum(GroupStatus), default=GroupStatus.active)
    customer_count: Mapped[int] = mapped_column(default=0)  # external members (diners)
    created_at: Mapped[datetime | None]  # WeCom's create_time
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[GroupMember]] = relationship(
        back_populates="group", cascade="all, delete-orphan", order_by="GroupMember.id"
    )


class GroupMember(Base):
    """Someone in a customer group: a corp member (``type`` 1) or a diner (2, with the
    resident when we know them)."""

    __tablename__ = "group_members"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("customer_groups.id", ondelete="CASCADE"))
    userid: Mapped[str] = mapped_column(String(64))  # userid or external_userid
    type: Mapped[int] = mapped_column(default=2)
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id", ondelete="SET NULL"), index=True)
    joined_at: Mapped[datetime | None]

    group: Mapped[CustomerGroup] = relationship(back_populates="members")

    __table_args__ = (
        UniqueConstraint("group_id", "userid"),
        CheckConstraint("type IN (1, 2)", name="member_type"),
    )
