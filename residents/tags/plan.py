"""Planning: which corp tags a resident's contacts should carry — the preferred cuisines of
the taste profile and the business circles of the stores behind the open relationships —
written as ``ResidentTag`` rows (pending until the sync job reaches WeCom)."""
from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from merchants.models import Store
from residents import taste
from residents.models import (
    ContactRelationship,
    RelationshipStatus,
    Resident,
    ResidentTag,
)
from residents.tags.corp import circle_key, corp_tag_rows, cuisine_key


def desired_tags(session: Session, resident_id: int) -> tuple[set[int], set[str]]:
    """(members with an open relationship, tag keys every one of them should carry): the
    preferred cuisines and the circles of the stores behind the open relationships. An
    erased resident carries none."""
    rels = session.execute(
        select(ContactRelationship.member_id, ContactRelationship.store_id).where(
            ContactRelationship.resident_id == resident_id,
            ContactRelationship.status == RelationshipStatus.open,
        )
    ).all()
    members = {member_id for member_id, _ in rels}
    resident = session.get(Resident, resident_id)
    if resident is None or resident.erased_at is not None:
        return members, set()
    keys = {cuisine_key(code) for code in taste.preferred_cuisines(session, resident_id)}
    store_ids = {store_id for _, store_id in rels if store_id is not None}
    if store_ids:
        circles = session.scalars(select(Store.circle_id).where(Store.id.in_(store_ids)).distinct())
        keys |= {circle_key(circle_id) for circle_id in circles}
    return members, keys


def plan_resident_tags(session: Session, resident_id: int) -> bool:
    """Bring the resident's rows in line with ``desired_tags``: new tags wanted, dropped
    ones unwanted (both pending), rows of members no longer in contact deleted (WeCom
    forgets tags with the contact). True when some row waits for WeCom."""
    members, keys = desired_tags(session, resident_id)
    wanted_ids = {row.id for row in corp_tag_rows(session, keys).values()}
    have: dict[int, set[int]] = defaultdict(set)
    for row in session.scalars(select(ResidentTag).where(ResidentTag.resident_id == resident_id)):
        if row.member_id not in members:
            session.delete(row)
            continue
        have[row.member_id].add(row.corp_tag_id)
        want = row.corp_tag_id in wanted_ids
        if row.wanted != want:
            row.wanted, row.synced_at, row.attempts, row.last_error = want, None, 0, None
    for member_id in members:
        for corp_tag_id in sorted(wanted_ids - have[member_id]):
            try:
                with session.begin_nested():
                    session.add(ResidentTag(resident_id=resident_id, member_id=member_id, corp_tag_id=corp_tag_id))
                    session.flush()
            except IntegrityError:  # a racing plan added it
                pass
    session.flush()
    return _has_pending(session, resident_id)


def _has_pending(session: Session, resident_id: int) -> bool:
    return (
        session.scalar(
            select(ResidentTag.id)
            .where(ResidentTag.resident_id == resident_id, ResidentTag.synced_at.is_(None))
            .limit(1)
        )
        is not None
    )
