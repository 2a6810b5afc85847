"""A diner's privacy requests: everything we hold about them (export) and forgetting them
(erase). Behind ``linli resident export|erase``.

What we hold about a diner: the resident row (WeCom's name, avatar, unionid and
external_userid; their "quiet me" and taste-survey answers), relationships with members and
stores, taste signals, tags, coupons and their redemptions, channel scans, handover items and
the raw WeCom events that named them. No phone number is collected anywhere: WeCom does not
give customers' numbers to apps, and no form of ours asks for one (the only mobile number in
the schema is a merchant's business contact, ``merchants.contact_mobile``).

Erasing keeps the rows merchants need for their accounts (coupons, redemptions, scan counts)
but cuts them loose from the person: identifiers become the tombstone ``erased:<id>``,
personal fields are blanked, taste signals and tags are deleted. Erasing twice is a no-op.
Erasing also revokes the diner's ways into the mobile pages: every welcome-card coupon link,
any open session and any unspent sign-in token are checked against ``erased_at`` (and the
coupon's holder) on each use (``residents.identity``), so none works afterwards.
WeCom's own copy (the contact in the member's WeCom, tags set there) is WeCom's to delete:
the member removes the customer in the WeCom app.
"""
from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import String, cast, delete, or_, select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.inbox.models import WeComEvent
from coupons.models import Coupon, CouponTemplate, Redemption
from merchants.models import Channel, ChannelAdd, Member, Store
from residents.models import (
    ContactRelationship,
    CorpTag,
    GroupMember,
    RelationshipStatus,
    Resident,
    ResidentTag,
    ResidentTaste,
    TasteSignal,
    TransferItem,
)
from residents.services import count_contact, holder_ref, refresh_reachable

CLOSE_REASON_ERASED = "erased"


def tombstone(resident_id: int) -> str:
    return f"erased:{resident_id}"


def find_resident(session: Session, ref: str) -> Resident | None:
    """By external_userid (or its tombstone ``erased:<id>``), else by numeric id."""
    ref = (ref or "").strip()
    if not ref:
        return None
    resident = session.scalar(select(Resident).where(Resident.external_userid == ref))
    if resident is None and ref.isdigit():
        resident = session.get(Resident, int(ref))
    return resident


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _row(obj, *names: str) -> dict[str, Any]:
    return {name: _plain(getattr(obj, name)) for name in names}


def _coupons_of(session: Session, resident: Resident) -> list[Coupon]:
    refs = {resident.external_userid, holder_ref(resident.id)}
    return list(
        session.scalars(
            select(Coupon)
            .where(or_(Coupon.resident_id == resident.id, Coupon.holder_ref.in_(refs)))
            .order_by(Coupon.id)
        )
    )


def _events_naming(session: Session, *values: str | None) -> list[WeComEvent]:
    """Stored WeCom events whose payload carries one of ``values`` (ids are long and
    distinctive, so a text match on the JSON is precise enough; the payload is checked too)."""
    values = tuple(v for v in values if v)
    if not values:
        return []
    text = cast(WeComEvent.payload, String)
    rows = session.scalars(select(WeComEvent).where(or_(*(text.contains(v) for v in values))).order_by(WeComEvent.id))
    return [e for e in rows if _mentions(e.payload, values)]


def _mentions(value: Any, ids: tuple[str, ...]) -> bool:
    if isinstance(value, dict):
        return any(_mentions(v, ids) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, ids) for v in value)
    return isinstance(value, str) and value in ids


def _scrub(value: Any, ids: tuple[str, ...], tomb: str) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, ids, tomb) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, ids, tomb) for v in value]
    return tomb if isinstance(value, str) and value in ids else value


def export_resident(session: Session, resident_id: int) -> dict[str, Any]:
    """Everything we hold about one resident, as JSON-ready data. LookupError if unknown."""
    resident = session.get(Resident, resident_id)
    if resident is None:
        raise LookupError(resident_id)
    rels = session.execute(
        select(ContactRelationship, Member.userid, Member.name, Store.name, Channel.name)
        .join(Member, Member.id == ContactRelationship.member_id)
        .outerjoin(Store, Store.id == ContactRelationship.store_id)
        .outerjoin(Channel, Channel.id == ContactRelationship.channel_id)
        .where(ContactRelationship.resident_id == resident.id)
        .order_by(ContactRelationship.id)
    ).all()
    signals = session.scalars(
        select(TasteSignal).where(TasteSignal.resident_id == resident.id).order_by(TasteSignal.id)
    )
    tags = session.execute(
        select(ResidentTag, CorpTag, Member.userid)
        .join(CorpTag, CorpTag.id == ResidentTag.corp_tag_id)
        .join(Member, Member.id == ResidentTag.member_id)
        .where(ResidentTag.resident_id == resident.id)
        .order_by(ResidentTag.id)
    ).all()
    coupons = _coupons_of(session, resident)
    coupon_ids = [c.id for c in coupons]
    templates = dict(
        session.execute(
            select(CouponTemplate.id, CouponTemplate.name).where(
                CouponTemplate.id.in_({c.template_id for c in coupons})
            )
        ).all()
    )
    redemptions = list(
        session.scalars(select(Redemption).where(Redemption.coupon_id.in_(coupon_ids)).order_by(Redemption.id))
    ) if coupon_ids else []
    store_ids = {r.store_id for r in redemptions} | {c.redeemed_store_id for c in coupons if c.redeemed_store_id}
    store_names = dict(session.execute(select(Store.id, Store.name).where(Store.id.in_(store_ids))).all())
    scans = session.execute(
        select(ChannelAdd, Channel.name, Store.name)
        .join(Channel, Channel.id == ChannelAdd.channel_id)
        .join(Store, Store.id == Channel.store_id)
        .where(ChannelAdd.external_userid == resident.external_userid)
        .order_by(ChannelAdd.id)
    ).all()
    items = session.scalars(
        select(TransferItem)
        .where(or_(TransferItem.resident_id == resident.id, TransferItem.external_userid == resident.external_userid))
        .order_by(TransferItem.id)
    )
    return {
        "resident": _row(
            resident, "id", "external_userid", "unionid", "name", "avatar", "opted_out", "monthly_cap",
            "spice_level", "budget_fen", "created_at", "updated_at", "erased_at",
        ),
        "phone_numbers": "none collected",
        "relationships": [
            {
                **_row(rel, "id", "status", "added_at", "closed_at", "close_reason"),
                "member": {"userid": userid, "name": member_name},
                "store": {"id": rel.store_id, "name": store_name} if rel.store_id else None,
                "channel": {"id": rel.channel_id, "name": channel_name} if rel.channel_id else None,
            }
            for rel, userid, member_name, store_name, channel_name in rels
        ],
        "taste_signals": [_row(s, "cuisine", "source", "ref", "weight", "observed_at") for s in signals],
        "tags": [
            {
                "tag": tag.key, "group": tag.group_name, "name": tag.name, "member": userid,
                **_row(rt, "wanted", "synced_at"),
            }
            for rt, tag, userid in tags
        ],
        "coupons": [
            {
                **_row(c, "id", "short_code", "status", "issued_at", "valid_from", "valid_until", "redeemed_at",
                       "bill_fen", "discount_fen"),
                "template": templates.get(c.template_id, ""),
                "redeemed_store": store_names.get(c.redeemed_store_id) if c.redeemed_store_id else None,
            }
            for c in coupons
        ],
        "redemptions": [
            {
                **_row(r, "id", "coupon_id", "bill_fen", "discount_fen", "redeemed_at", "reversed"),
                "store": store_names.get(r.store_id, ""),
            }
            for r in redemptions
        ],
        "channel_scans": [
            {"store": store_name, "channel": channel_name, "member": add.member_userid, "added_at": _plain(add.added_at)}
            for add, channel_name, store_name in scans
        ],
        "handovers": [_row(i, "transfer_id", "status", "updated_at") for i in items],
        "wecom_events": [
            _row(e, "id", "event", "change_type", "received_at")
            for e in _events_naming(session, resident.external_userid, resident.unionid)
        ],
    }


def erase_resident(session: Session, resident_id: int) -> dict[str, Any]:
    """Forget a resident; what merchants must keep stays, detached. Idempotent: an erased
    resident answers ``already_erased`` and nothing changes. LookupError if unknown."""
    resident = session.get(Resident, resident_id, with_for_update=True, populate_existing=True)
    if resident is None:
        raise LookupError(resident_id)
    if resident.erased_at is not None:
        return {"resident_id": resident.id, "already_erased": True, "erased_at": _plain(resident.erased_at)}
    tomb = tombstone(resident.id)
    old_ids = tuple(v for v in (resident.external_userid, resident.unionid) if v)
    now = utcnow()

    coupons = _coupons_of(session, resident)
    taken: set[tuple[int, int]] = set()
    for coupon in coupons:
        # one holder per (template, seq); the diner may hold a template under two refs
        key = (coupon.template_id, coupon.holder_seq)
        coupon.holder_ref = tomb if key not in taken else f"{tomb}:{coupon.id}"
        coupon.resident_id = None
        taken.add(key)

    signals = session.execute(delete(TasteSignal).where(TasteSignal.resident_id == resident.id)).rowcount
    session.execute(delete(ResidentTaste).where(ResidentTaste.resident_id == resident.id))
    # group memberships name the diner's external_userid; the next group sync re-reads WeCom
    session.execute(delete(GroupMember).where(GroupMember.resident_id == resident.id))
    tags = session.execute(delete(ResidentTag).where(ResidentTag.resident_id == resident.id)).rowcount

    closed = 0
    for rel in session.scalars(
        select(ContactRelationship).where(
            ContactRelationship.resident_id == resident.id, ContactRelationship.status == RelationshipStatus.open
        )
    ):
        rel.status, rel.closed_at, rel.close_reason = RelationshipStatus.closed, now, CLOSE_REASON_ERASED
        count_contact(session, rel, now, lost_contacts=1)
        closed += 1
    refresh_reachable(session, resident.id)

    scans = 0
    for add in session.scalars(select(ChannelAdd).where(ChannelAdd.external_userid == resident.external_userid)):
        add.external_userid = tomb
        scans += 1
    for item in session.scalars(select(TransferItem).where(TransferItem.external_userid == resident.external_userid)):
        item.external_userid = tomb

    events = _events_naming(session, *old_ids)
    for event in events:
        event.payload = _scrub(event.payload or {}, old_ids, tomb)  # a new object: JSON is not mutation-tracked

    resident.external_userid = tomb
    resident.unionid = None
    resident.name = ""
    resident.avatar = ""
    resident.spice_level = None
    resident.budget_fen = None
    resident.monthly_cap = None
    resident.opted_out = True  # never pushed to again, whatever else changes
    resident.erased_at = now
    session.flush()
    return {
        "resident_id": resident.id,
        "already_erased": False,
        "erased_at": _plain(now),
        "tombstone": tomb,
        "taste_signals_deleted": signals,
        "tags_deleted": tags,
        "relationships_closed": closed,
        "coupons_detached": len(coupons),
        "channel_scans_detached": scans,
        "wecom_events_scrubbed": len(events),
    }
