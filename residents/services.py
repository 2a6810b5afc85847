"""Residents and their WeCom relationships: the rules behind the contact events.

Functions take a ``Session`` and never commit. WeCom delivers an event up to three times and
jobs may run side by side, so every step is idempotent and one diner's add is serialised:
its first write is an ``INSERT … ON CONFLICT`` on the resident's ``external_userid``, then
``SELECT … FOR UPDATE`` on that row (PostgreSQL; SQLite lets one writer in at a time), and
everything else for that diner in the transaction (relationship, signals, welcome coupon)
runs behind that lock. Unique constraints remain the last word.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql import Select

from core import tally
from core.bounds import is_id
from core.db import utcnow
from core.errors import NotFound
from coupons.models import Coupon, CouponSource, CouponStatus, CouponTemplate, TemplateStatus
from coupons.services import IssueError, issue_coupon, normalize_code
from merchants.models import Channel, Member, Store
from merchants.services import parse_state, record_add
from residents import taste
from residents.models import (
    ContactRelationship,
    RelationshipStatus,
    Resident,
    SignalSource,
)
from wecom.client import WeComError

log = logging.getLogger(__name__)

HOLDER_PREFIX = "r:"  # coupons' holder_ref for a resident (coupons/models.py, Coupon)
REASON_MEMBER_DELETED = "del_external_contact"  # the member removed the diner
REASON_DINER_DELETED = "del_follow_user"  # the diner removed the member
REASON_TRANSFER = "transfer"  # WeCom removed it while moving the diner to a colleague


def holder_ref(resident_id: int) -> str:
    return f"{HOLDER_PREFIX}{resident_id}"


def event_time(payload: dict) -> datetime:
    """The event's ``CreateTime`` (WeCom's clock, seconds), or now when absent or junk."""
    try:
        seconds = int(payload.get("CreateTime") or 0)
        return datetime.fromtimestamp(seconds, timezone.utc) if seconds > 0 else utcnow()
    except (TypeError, ValueError, OverflowError, OSError):
        return utcnow()


def _seconds(dt: datetime) -> datetime:
    """Event times are whole seconds (``CreateTime``); compare at that grain."""
    return dt.replace(microsecond=0)


@dataclass(frozen=True)
class ContactProfile:
    """What ``externalcontact/get`` says about the diner; blanks mean "not told"."""

    name: str = ""
    avatar: str = ""
    unionid: str | None = None

    @classmethod
    def from_wecom(cls, data: dict | None) -> ContactProfile:
        contact = (data or {}).get("external_contact") or {}
        return cls(
            name=(contact.get("name") or "")[:64],
            avatar=(contact.get("avatar") or "")[:512],
            unionid=(contact.get("unionid") or None),
        )


def fetch_profile(client, external_userid: str) -> ContactProfile | None:
    """The diner's name, avatar and unionid from ``externalcontact/get``; None when WeCom will
    not say (already deleted again: 84061, a hiccup): the add is recorded all the same."""
    try:
        return ContactProfile.from_wecom(client.customers.get(external_userid))
    except WeComError as exc:
        log.warning("externalcontact/get %s failed: %s", external_userid, exc)
        return None


# --- rows ---------------------------------------------------------------------------------


_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}  # both have ON CONFLICT


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    try:
        return _INSERTS[dialect]
    except KeyError:  # pragma: no cover - we run on these two
        raise RuntimeError(f"unsupported database {dialect}") from None


def upsert_resident(
    session: Session, external_userid: str, profile: ContactProfile | None = None
) -> tuple[Resident, bool]:
    """The resident for ``external_userid``, created if new (True), locked for this transaction.

    Profile fields are refreshed only with what WeCom told us (never blanked), and never for
    an erased resident.
    """
    insert = _insert(session)
    now = utcnow()
    created = session.execute(
        insert(Resident)
        .values(external_userid=external_userid, name="", avatar="", opted_out=False, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["external_userid"])
        .returning(Resident.id)
    ).scalar() is not None
    resident = session.scalar(
        select(Resident)
        .where(Resident.external_userid == external_userid)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if profile is not None and resident.erased_at is None:
        if profile.name and resident.name != profile.name:
            resident.name = profile.name
        if profile.avatar and resident.avatar != profile.avatar:
            resident.avatar = profile.avatar
        if profile.unionid and resident.unionid != profile.unionid:
            resident.unionid = profile.unionid
    return resident, created


def ensure_member(session: Session, userid: str) -> Member:
    """Our row for a WeCom member; a member we have not synced yet is added (they evidently
    may hold customers, since one was just added)."""
    member = session.scalar(select(Member).where(Member.userid == userid))
    if member is None:
        insert = _insert(session)
        session.execute(
            insert(Member)
            .values(userid=userid, name="", can_hold_customers=True, active=True, synced_at=utcnow())
            .on_conflict_do_nothing(index_elements=["userid"])
        )
        member = session.scalar(select(Member).where(Member.userid == userid))
    return member


def resolve_state(session: Session, state: str | None) -> tuple[Store | None, Channel | None]:
    """The store and channel a contact-way ``state`` names; (None, None) for anything else
    (no state, another tool's code, a channel that is not that store's)."""
    parsed = parse_state(state)
    if parsed is None or not all(map(is_id, parsed)):  # ids past PostgreSQL's integer: not ours
        return None, None
    store_id, channel_id = parsed
    channel = session.get(Channel, channel_id)
    if channel is None or channel.store_id != store_id:
        return None, None
    return session.get(Store, store_id), channel


def _relationship_stmt(resident_id: int, member_id: int, store_id: int | None):
    column = ContactRelationship.store_id
    store_match = column.is_(None) if store_id is None else column == store_id
    return select(ContactRelationship).where(
        ContactRelationship.resident_id == resident_id, ContactRelationship.member_id == member_id, store_match
    )


def count_contact(session: Session, rel: ContactRelationship, at: datetime, **counts: int) -> None:
    """A contact gained or lost, for the statistics (its store and contact-me code)."""
    tally.count(session, at, store_id=rel.store_id, channel_id=rel.channel_id, **counts)


def open_relationship(
    session: Session, resident_id: int, member_id: int, store_id: int | None, channel_id: int | None, at: datetime,
    *, opened_by: str = "add",
) -> tuple[ContactRelationship, bool]:
    """The open (resident, member, store) relationship; True when this call opened it
    (created, or reopened a closed one). An add older than the close is stale and ignored.
    An add we cannot attribute to a store (no state: a transfer, a search, a card) for a pair
    already open at some store adds nothing: WeCom has one contact per member and diner."""
    if store_id is None:
        attributed = session.scalar(
            select(ContactRelationship)
            .where(
                ContactRelationship.resident_id == resident_id,
                ContactRelationship.member_id == member_id,
                ContactRelationship.store_id.is_not(None),
                ContactRelationship.status == RelationshipStatus.open,
            )
            .order_by(ContactRelationship.id)
            .limit(1)
        )
        if attributed is not None:
            return attributed, False
    rel = session.scalar(_relationship_stmt(resident_id, member_id, store_id).with_for_update())
    if rel is None:
        try:
            with session.begin_nested():
                rel = ContactRelationship(
                    resident_id=resident_id, member_id=member_id, store_id=store_id, channel_id=channel_id,
                    status=RelationshipStatus.open, added_at=at, opened_by=opened_by,
                )
                session.add(rel)
                session.flush()
            if opened_by == "add":
                count_contact(session, rel, at, new_contacts=1)
            return rel, True
        except IntegrityError:  # a racing job added it first (only reachable without the row lock)
            rel = session.scalar(_relationship_stmt(resident_id, member_id, store_id))
            if rel is None:
                raise
    if rel.status == RelationshipStatus.closed:
        if rel.closed_at is not None and _seconds(at) < _seconds(rel.closed_at):
            log.info("stale add for relationship %s ignored (closed later)", rel.id)
            return rel, False
        rel.status, rel.closed_at, rel.close_reason = RelationshipStatus.open, None, None
        rel.added_at, rel.opened_by = at, opened_by
        rel.channel_id = channel_id or rel.channel_id
        if opened_by == "add":
            count_contact(session, rel, at, new_contacts=1)
        return rel, True
    if rel.channel_id is None and channel_id is not None:
        rel.channel_id = channel_id
    return rel, False


def record_scan_signals(session: Session, resident_id: int, store: Store, at: datetime) -> list[str]:
    """One scan signal per cuisine of the store (``ref=store:<id>``: repeats refresh, not add)."""
    cuisines = taste.store_cuisines(store)
    for cuisine in cuisines:
        taste.record_signal(session, resident_id, cuisine, SignalSource.scan, ref=f"store:{store.id}", at=at)
    return cuisines


def grant_welcome_coupon(
    session: Session, resident_id: int, store: Store, rel: ContactRelationship, now: datetime
) -> tuple[Coupon | None, bool]:
    """The store's welcome coupon for this resident, issued at most once per resident and
    store; (coupon, True) when issued now. Coupons' per-diner limit (``holder_ref``) still
    applies: a diner who already holds the template (another store of the merchant) gets
    that coupon pointed at instead."""
    given = session.scalar(
        select(ContactRelationship.welcome_coupon_id)
        .where(
            ContactRelationship.resident_id == resident_id,
            ContactRelationship.store_id == store.id,
            ContactRelationship.welcome_coupon_id.is_not(None),
        )
        .limit(1)
    )
    if given is not None:
        return session.get(Coupon, given), False
    if store.welcome_template_id is None:
        return None, False
    template = session.get(CouponTemplate, store.welcome_template_id)
    if template is None or template.status != TemplateStatus.active:
        return None, False
    ref = holder_ref(resident_id)
    try:
        coupon = issue_coupon(session, template.id, ref, resident_id=resident_id, now=now,
                              source=CouponSource.welcome, store_id=store.id, channel_id=rel.channel_id)
        issued = True
    except IssueError as exc:
        if exc.code != "limit":
            log.info("no welcome coupon for resident %s at store %s: %s", resident_id, store.id, exc.code)
            return None, False
        coupon = session.scalar(
            select(Coupon)
            .where(Coupon.template_id == template.id, Coupon.holder_ref == ref, Coupon.status == CouponStatus.issued)
            .order_by(Coupon.id.desc())
            .limit(1)
        )
        issued = False
        if coupon is None:
            return None, False
    rel.welcome_coupon_id = coupon.id
    return coupon, issued


# --- events -------------------------------------------------------------------------------


@dataclass
class AddResult:
    resident_id: int
    member_id: int
    store: Store | None
    first_time: bool  # the resident is new to us
    opened: bool  # this event created or reopened the relationship
    state: str | None = None  # the contact way's state (the channel), for the evidence job
    coupon: Coupon | None = None  # the store's welcome coupon (new or given before)
    coupon_issued: bool = False  # issued by this event

    @property
    def store_id(self) -> int | None:
        return self.store.id if self.store is not None else None


def contact_added(
    session: Session,
    *,
    external_userid: str,
    member_userid: str,
    state: str | None,
    profile: ContactProfile | None = None,
    at: datetime | None = None,
) -> AddResult:
    """``add_external_contact``, the part the welcome waits for: resident, relationship and
    the welcome coupon, all idempotent (a replay changes nothing and issues nothing). What
    the add says beyond that (taste, the channel's count) is ``record_add_evidence``, later."""
    at = at or utcnow()
    store, channel = resolve_state(session, state)
    resident, first_time = upsert_resident(session, external_userid, profile)
    member = ensure_member(session, member_userid)
    rel, opened = open_relationship(
        session, resident.id, member.id, store.id if store else None, channel.id if channel else None, at
    )
    if opened:
        refresh_reachable(session, resident.id)
    result = AddResult(
        resident_id=resident.id, member_id=member.id, store=store, first_time=first_time, opened=opened,
        state=state if store is not None else None,
    )
    if store is not None:
        result.coupon, result.coupon_issued = grant_welcome_coupon(session, resident.id, store, rel, utcnow())
    session.flush()
    return result


def record_add_evidence(
    session: Session, resident_id: int, member_id: int, store_id: int, state: str | None, at: datetime
) -> list[str]:
    """After the welcome: a scan signal per cuisine of the store and the channel's count of
    adds. Both are idempotent (a signal per ``store:<id>`` ref, an add per channel and
    diner), so a replayed job changes nothing. Returns the cuisines recorded."""
    resident = session.get(Resident, resident_id)
    store = session.get(Store, store_id)
    member = session.get(Member, member_id)
    if resident is None or resident.erased_at is not None or store is None or member is None:
        return []
    cuisines = record_scan_signals(session, resident_id, store, at)
    record_add(session, state, resident.external_userid, member.userid, at)
    return cuisines


@dataclass(frozen=True)
class Closed:
    resident_id: int
    member_id: int
    relationship_ids: tuple[int, ...]
    reason: str


def close_relationships(
    session: Session, *, external_userid: str, member_userid: str, reason: str, at: datetime | None = None
) -> Closed | None:
    """``del_external_contact`` / ``del_follow_user``: close the diner's open relationships
    with that member (every store). Idempotent; a delete older than the add is ignored."""
    at = at or utcnow()
    resident = session.scalar(
        select(Resident).where(Resident.external_userid == external_userid).with_for_update()
    )
    member = session.scalar(select(Member).where(Member.userid == member_userid))
    if resident is None or member is None:
        return None
    rels = session.scalars(
        select(ContactRelationship)
        .where(
            ContactRelationship.resident_id == resident.id,
            ContactRelationship.member_id == member.id,
            ContactRelationship.status == RelationshipStatus.open,
        )
        .order_by(ContactRelationship.id)
        .with_for_update()
    ).all()
    closed = []
    for rel in rels:
        if _seconds(rel.added_at) > _seconds(at):
            continue  # re-added after this delete happened (events processed out of order)
        rel.status, rel.closed_at, rel.close_reason = RelationshipStatus.closed, at, reason
        if reason != REASON_TRANSFER:
            count_contact(session, rel, at, lost_contacts=1)
        closed.append(rel.id)
    session.flush()
    if closed:
        refresh_reachable(session, resident.id)
    if not closed:
        return None
    return Closed(resident.id, member.id, tuple(closed), reason)


# --- the diner's coupons ------------------------------------------------------------------


def get_coupon_for(session: Session, resident_id: int, short_code: str) -> Coupon:
    """A coupon by code *and* holder, with its template and stores: anyone else's code is
    ``NotFound``, like a made-up one."""
    coupon = session.scalar(
        select(Coupon)
        .where(Coupon.short_code == normalize_code(short_code), Coupon.resident_id == resident_id)
        .options(selectinload(Coupon.template).selectinload(CouponTemplate.stores))
    )
    if coupon is None:
        raise NotFound()
    return coupon


# --- reachability -------------------------------------------------------------------------


def refresh_reachable(session: Session, resident_id: int) -> None:
    """Recompute ``residents.reachable`` from the relationships (call after opening or
    closing any): one UPDATE, idempotent, true whatever happened before."""
    session.flush()
    session.execute(
        update(Resident).where(Resident.id == resident_id).values(reachable=exists().where(
            ContactRelationship.resident_id == resident_id, ContactRelationship.status == RelationshipStatus.open
        )).execution_options(synchronize_session="fetch")
    )


def reachable_clause():
    """SQL: the resident (``Resident.id``) has an open relationship with some member (the
    column ``refresh_reachable`` keeps)."""
    return Resident.reachable.is_(True)


def reachable_residents_query() -> Select:
    """Residents some member can still message (no open relationship = unreachable)."""
    return select(Resident).where(reachable_clause())


def is_reachable(session: Session, resident_id: int) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    ContactRelationship.resident_id == resident_id,
                    ContactRelationship.status == RelationshipStatus.open,
                )
            )
        )
    )


def pushable(stmt: Select | None = None) -> Select:
    """``stmt`` (default ``select(Resident)``) narrowed to residents campaigns may push to:
    reachable, not opted out ("quiet me"), not erased."""
    stmt = select(Resident) if stmt is None else stmt
    return stmt.where(reachable_clause(), Resident.opted_out.is_(False), Resident.erased_at.is_(None))


def is_pushable(session: Session, resident_id: int) -> bool:
    return session.scalar(pushable(select(Resident.id)).where(Resident.id == resident_id)) is not None
