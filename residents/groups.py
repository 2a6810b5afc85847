"""Customer groups (客户群) kept in step with WeCom: ``groupchat/list`` and ``groupchat/get``
by a periodic sweep, and ``change_external_chat`` events for the group they name. WeCom is the
truth; a group's row and member list are rewritten from its ``groupchat/get`` answer, so a
replayed event or a second sweep changes nothing.

A group belongs to the store its owner serves when the owner serves exactly one approved
store (group campaigns of that store, and of its circle, reach it); an owner who serves
several stores, or none, leaves the group unlinked."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from merchants.models import Member, ReviewStatus, Store, StoreMember
from residents.models import CustomerGroup, GroupMember, GroupStatus, Resident

CUSTOMER = 2


def _time(seconds) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(seconds), timezone.utc) if seconds else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def owner_store(session: Session, member_id: int | None) -> Store | None:
    """The one approved store the member serves, else None."""
    if member_id is None:
        return None
    stores = session.scalars(
        select(Store).join(StoreMember, StoreMember.store_id == Store.id)
        .where(StoreMember.member_id == member_id, Store.status == ReviewStatus.approved).limit(2)
    ).all()
    return stores[0] if len(stores) == 1 else None


def apply_group(session: Session, detail: dict) -> CustomerGroup:
    """Write one ``groupchat/get`` answer: the group row, its store and circle, its members
    (diners matched to residents by external_userid)."""
    chat_id = str(detail.get("chat_id") or "")
    if not chat_id:
        raise ValueError("groupchat/get answer without chat_id")
    group = session.scalar(select(CustomerGroup).where(CustomerGroup.chat_id == chat_id).with_for_update())
    if group is None:
        group = CustomerGroup(chat_id=chat_id)
        session.add(group)
    owner = str(detail.get("owner") or "")
    group.name = str(detail.get("name") or "")[:128]
    group.owner_userid = owner[:64]
    group.owner_member_id = session.scalar(select(Member.id).where(Member.userid == owner)) if owner else None
    store = owner_store(session, group.owner_member_id)
    group.store_id, group.circle_id = (store.id, store.circle_id) if store else (None, None)
    group.status, group.created_at, group.synced_at = GroupStatus.active, _time(detail.get("create_time")), utcnow()

    listed = {}
    for item in detail.get("member_list") or []:
        userid = str(item.get("userid") or "")[:64]
        if userid:
            listed[userid] = item
    externals = [u for u, item in listed.items() if item.get("type") == CUSTOMER]
    residents = dict(session.execute(
        select(Resident.external_userid, Resident.id).where(Resident.external_userid.in_(externals or [""]))
    ).all())
    current = {m.userid: m for m in group.members}
    for userid in set(current) - set(listed):
        group.members.remove(current[userid])
    for userid, item in listed.items():
        row = current.get(userid)
        if row is None:
            row = GroupMember(userid=userid)
            group.members.append(row)
        row.type = CUSTOMER if item.get("type") == CUSTOMER else 1
        row.resident_id = residents.get(userid)
        row.joined_at = _time(item.get("join_time"))
    group.customer_count = len(externals)
    session.flush()
    return group


def dismiss_group(session: Session, chat_id: str) -> bool:
    group = session.scalar(select(CustomerGroup).where(CustomerGroup.chat_id == chat_id).with_for_update())
    if group is None or group.status == GroupStatus.dismissed:
        return False
    group.status, group.synced_at = GroupStatus.dismissed, utcnow()
    return True


def dismiss_unlisted(session: Session, listed: set[str]) -> int:
    """Groups WeCom no longer lists (dismissed while we were not told) are dismissed here."""
    gone = session.scalars(
        select(CustomerGroup).where(CustomerGroup.status == GroupStatus.active, CustomerGroup.chat_id.not_in(listed or {""}))
    ).all()
    for group in gone:
        group.status, group.synced_at = GroupStatus.dismissed, utcnow()
    return len(gone)
